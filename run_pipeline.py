"""Run the MLOps workflow (or one of its jobs) for an environment: the Workflows stand-in.

python run_pipeline.py --env prod                  # the full production workflow
python run_pipeline.py --env prod --job training --as-of 2013-11-01
python run_pipeline.py --list                      # jobs and their tasks
python run_pipeline.py --validate --env prod       # check every config file, run nothing
python run_pipeline.py --env staging --wipe        # delete staging's tables and models
python run_pipeline.py --env prod --job training --hyperparameters conf/examples/weak_model.yml
python run_pipeline.py --env prod --history        # every model version: status, decision, aliases
python run_pipeline.py --env prod --approve 3      # record an approval (deployment.approval: required)
python run_pipeline.py --env prod --rollback       # Champion back to the Previous version
python run_pipeline.py --env prod --serve          # the serving server, in the foreground
python run_pipeline.py --env prod --scheduler      # run scheduled jobs as they come due
python run_pipeline.py --env prod --replay 2013-06-01:2013-12-31 --every 7d   # 2013, week by week
python run_pipeline.py --conf other_project/conf --validate   # another project's config folder (default: conf/)
python run_pipeline.py --init my_project --from data/orders.csv --label units   # a new project from one file
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
import time
import traceback
from pathlib import Path

from lib.bundle import scaffold, validate
from lib.core import config, names
from lib.core.errors import LakehouseError
from lib.monitoring import monitors
from lib.platform import registry
from lib.platform.catalog import Lakehouse
from lib.platform.services import java, kafka_server, postgres
from lib.platform.services import kafka_client as kafka
from lib.platform.spark import builder as spark
from lib.platform.spark import server as spark_server
from lib.platform.spark import session
from lib.platform.workflows import replay, scheduler, spec
from lib.platform.workflows import runner as jobs

DEFAULT_JOB = "workflow"
TRAIN_NOTEBOOK = config.PROJECT_DIR / "notebooks" / "pipelines" / "03_train.ipynb"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run lakehouse-mlops jobs (conf/jobs.yml).")
    parser.add_argument(
        "--conf",
        metavar="DIR",
        help=f"the project's config folder (default: ${config.CONF_ENV_VAR}, else conf/); jobs and kernels inherit it",
    )
    parser.add_argument("--env", help="environment from conf/environments.yml: dev, staging or prod")
    parser.add_argument("--job", default=DEFAULT_JOB, help=f"job to run (default: {DEFAULT_JOB}, the whole workflow)")
    parser.add_argument("--as-of", default="", help="run date YYYY-MM-DD (default: the environment's data.as_of)")
    parser.add_argument("--list", action="store_true", help="list the jobs and their tasks, then exit")
    parser.add_argument(
        "--validate",
        action="store_true",
        help="check every config file (and the jobs' notebooks and parameters), run nothing, then exit",
    )
    parser.add_argument("--wipe", action="store_true", help="delete a temporary environment's tables, models and runs")
    parser.add_argument(
        "--hyperparameters",
        default="",
        help="hyperparameters YAML for the train task (default: the conf folder's model.yml training.hyperparameters_file)",
    )
    parser.add_argument("--history", action="store_true", help="show the model's versions and alias moves, then exit")
    parser.add_argument("--approve", metavar="VERSION", help="record an approval of the Challenger VERSION, then exit")
    parser.add_argument("--rollback", action="store_true", help="swap Champion and Previous, then exit")
    parser.add_argument(
        "--serve", action="store_true", help="run the environment's model serving server in the foreground (Ctrl-C stops it)"
    )
    parser.add_argument(
        "--scheduler",
        action="store_true",
        help="run the jobs whose schedules (conf/jobs.yml) come due, in the foreground (Ctrl-C stops it)",
    )
    parser.add_argument(
        "--clock", help="with --scheduler: a simulated clock starting at this date (jobs run as of their fire date)"
    )
    parser.add_argument("--until", help="with --scheduler --clock: the simulated day to stop at")
    parser.add_argument(
        "--replay",
        metavar="START:END",
        help="replay production through these days on a simulated clock (e.g. 2013-06-01:2013-12-31)",
    )
    parser.add_argument("--every", metavar="Nd", help="with --replay: days per step (e.g. 7d)")
    parser.add_argument(
        "--init", metavar="DIR", help="make a new project's config folder DIR from one CSV or Parquet file (--from), then exit"
    )
    parser.add_argument("--from", dest="from_file", metavar="FILE", help="with --init: the CSV or Parquet file")
    parser.add_argument("--label", help="with --init: the label column (default: a column named label or target)")
    parser.add_argument("--timestamp", help="with --init: the event-time column (default: the one column of dates)")
    parser.add_argument("--id", help="with --init: the id column (default: a unique column named id or *_id, else generated)")
    parser.add_argument("--verbose", action="store_true", help="show stack traces on errors")
    return parser.parse_args(argv)


def init_project(args: argparse.Namespace) -> None:
    """`--init DIR --from FILE`: check the flags that go together, then scaffold (lib/bundle/scaffold.py)."""
    if not args.from_file:
        raise config.ConfigError("--init DIR needs --from FILE (a CSV or Parquet file)")
    scaffold.init(Path(args.init), Path(args.from_file), label=args.label, timestamp=args.timestamp, id_=args.id)


def list_jobs(all_jobs: dict[str, spec.Job]) -> None:
    for job in all_jobs.values():
        print(f"{job.name}: {job.description}")
        for task in job.tasks:
            what = f"job {task.job}" if task.job else task.notebook.relative_to(config.PROJECT_DIR).as_posix()
            run_if = "" if task.run_if == "ALL_SUCCESS" else f"; run_if {task.run_if}"
            after = f"  (after {', '.join(task.depends_on)}{run_if})" if task.depends_on else ""
            print(f"  - {task.key}: {what}{after}")


def wipe(env: config.EnvConfig) -> None:
    """Delete a temporary environment's catalog, registered models, experiment and run folders."""
    import shutil

    from lib.serving import online_store, server, settings  # the serving stack: imported by the commands that serve

    folder = Lakehouse(None, env).drop_catalog()  # refuses a non-temporary environment first
    server.stop(env)  # its endpoints serve models that are about to go
    models = registry.purge(env)
    shutil.rmtree(env.home / "runs" / env.name, ignore_errors=True)
    shutil.rmtree(settings.load(env).folder, ignore_errors=True)
    online_store.store_path(env.home, env.catalog).unlink(missing_ok=True)
    targets = env.publish
    url = None
    if targets.jdbc.enabled:  # the lakehouse's own server is started if it holds data but is down
        url = (
            targets.jdbc.url
            or postgres.running_url(env.home)
            or (postgres.base_url(env.home) if postgres.has_data(env.home) else None)
        )
    if url:
        postgres.drop_database(url, env.catalog)
    topic = None
    if targets.kafka.enabled:  # the lakehouse's own broker is started if it holds topics but is down
        name = env.topic
        try:
            bootstrap = (
                targets.kafka.bootstrap_servers
                or kafka_server.running_servers(env.home)
                or (kafka_server.servers(env.home) if kafka_server.has_data(env.home) else None)
            )
            topic = name if bootstrap and kafka.delete_topic(bootstrap, name) else None
        except LakehouseError as exc:  # the rest is wiped already: say what is left, do not stop here
            print(f"warning: Kafka topic {name} was not deleted: {exc}", file=sys.stderr)
    print(
        f"wiped {env.name}: {folder}, {len(models)} registered model(s), experiment {env.experiment}"
        + (f", PostgreSQL database {env.catalog}" if url else "")
        + (f", Kafka topic {topic}" if topic else "")
    )


def _short(commit: str) -> str:
    return commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")


def show_history(env: config.EnvConfig) -> None:
    """Every version of the environment's model: status, decision, aliases and why they moved."""

    registry.configure(env)
    rows = registry.history(env.model_name)
    if not rows:
        print(f"{env.model_name} has no versions yet: run the training job first")
        return
    print(f"{env.model_name}: {len(rows)} version(s)")
    for row in rows:
        tags = row["tags"]
        aliases = f" [{', '.join(row['aliases'])}]" if row["aliases"] else ""
        print(
            f"v{row['version']}{aliases}  created {row['created']}  {tags.get('algorithm', '?')} "
            f"({tags.get('hyperparameters_file', '?')})  commit {_short(tags.get('git_commit', '?'))}"
        )
        print(
            f"    validation: {tags.get(names.VALIDATION_STATUS, '-')} ({tags.get(names.VALIDATION_MODE, 'enabled')})"
            f"  deployment: {tags.get(names.DECISION, '-')}  approval: {tags.get(names.APPROVAL, '-')}"
        )
        failed = [
            f"{k[len(names.VALIDATION_PREFIX) :]}: {v}"
            for k, v in sorted(tags.items())
            if k.startswith(names.VALIDATION_PREFIX) and v.startswith("FAIL")
        ]
        for line in failed:
            print(f"    failed {line}")
        if names.REASON in tags:
            print(f"    decision: {tags[names.REASON]}")
        moves = []
        for alias, at, removed in names.alias_events(tags):
            _, by_tag, reason_tag = names.alias_tags(alias, removed)
            moves.append((at, "lost" if removed else "got", alias, tags.get(by_tag, "?"), tags.get(reason_tag, "?")))
        for at, verb, alias, by, reason in sorted(moves):
            print(f"    {at} {verb} {alias} by {by}: {reason}")


def approve(env: config.EnvConfig, version: str) -> None:
    from lib.lifecycle import deployment  # MLflow and scikit-learn: seconds to import

    if not version.isdigit():
        raise config.ConfigError(f"--approve takes a version number, got {version!r}")
    registry.configure(env)
    ref = registry.ModelRef(env.model_name, version)
    with registry.alias_lock(ref.name):
        deployment.approve(ref)
    print(f"approved {ref.uri}: run `python run_pipeline.py --env {env.name} --job deployment` to deploy it")


def rollback(env: config.EnvConfig) -> None:
    from lib.lifecycle import deployment  # MLflow and scikit-learn: seconds to import

    registry.configure(env)
    new, old = deployment.rollback(env.model_name)
    print(
        f"rolled back {env.model_name}: Champion is v{new.version} again, v{old.version} is Previous "
        "(--rollback again rolls forward)"
    )
    print(f"to move the serving endpoint too: python run_pipeline.py --env {env.name} --job serving")


def attach_spark(env: config.EnvConfig) -> str | None:
    """Start (or reuse) the lakehouse's Spark server and have every notebook kernel attach to it.

    Returns its URL; None in `spark.mode: local`, where each kernel starts its own JVM.
    """
    if spark_server.settings(env).mode == "local":
        os.environ.pop(spark.REMOTE_ENV_VAR, None)
        os.environ[spark_server.MODE_ENV_VAR] = "local"  # the kernels' choice too
        return None
    url = os.environ.get(spark.REMOTE_ENV_VAR) or spark_server.ensure(env).url
    os.environ[spark.REMOTE_ENV_VAR] = url  # inherited by the kernels
    return url


def summary(env: config.EnvConfig, run_dir, spark_url: str | None) -> None:
    """Where to look after a run: tables, executed notebooks, the aliases and the MLflow UI."""
    registry.configure(env)
    held = registry.aliases(env.model_name)
    tables = Lakehouse(None, env).tables()
    print(f"\nTables ({env.warehouse / env.catalog}):")
    for name in tables:
        print(f"  {name}")
    exports = env.home / "exports" / env.catalog
    if exports.is_dir():
        print(f"Exported files (Parquet, CSV per scored period): {exports}")
    print(f"Executed notebooks: {run_dir}")
    for alias in (names.CHAMPION, names.CHALLENGER, names.PREVIOUS):
        print(f"{alias}: {registry.ModelRef(env.model_name, held[alias]).uri if alias in held else 'none'}")
    print(f"History: python run_pipeline.py --env {env.name} --history")
    for page in sorted((env.home / "dashboards" / env.name).glob("*.html")):
        print(f"Dashboard: {page}")
    from lib.serving import server, settings  # the serving stack: imported by the commands that serve

    cfg = settings.load(env)
    running = server.find(cfg)
    if running is not None:
        print(
            f"Serving: {running.url}/serving-endpoints/{cfg.endpoint}/invocations (token in {cfg.folder / 'token'}; "
            f"stop: {shlex.quote(sys.executable)} -m lib.serving stop --env {env.name})"
        )
    found = spark_server.find(env.home)
    if found is not None and found[0].url == spark_url:
        print(
            f"Spark server: {spark_url} (pid {found[0].pid}, log {found[0].log}; kept for the next run; "
            f"stop: {shlex.quote(sys.executable)} -m lib.platform.spark stop)"
        )
    elif spark_url:
        print(f"Spark: attached to {spark_url} ($SPARK_REMOTE)")
    print(f"MLflow UI: {shlex.quote(sys.executable)} -m mlflow ui --backend-store-uri {shlex.quote(env.tracking_uri)}")


def run_job(
    env: config.EnvConfig,
    all_jobs: dict[str, spec.Job],
    job: str,
    as_of,
    hyperparameters: str = "",
    follow_triggers: bool = True,
    stream=None,
):
    """Run one job (in a new run folder) on the lakehouse's Spark; returns (task values, run folder,
    Spark URL). Raises JobFailedError."""
    ours = not os.environ.get(spark.REMOTE_ENV_VAR)  # else a server someone else runs: not ours to check
    run_dir = jobs.new_run_dir(env, job)
    runner = jobs.Runner(env, all_jobs, run_dir, stream=stream)
    runner.kernels.start()  # the first task's kernel boots while the Spark server starts
    try:
        spark_url = attach_spark(env)
    except BaseException:
        runner.kernels.close()
        raise
    runner.out(f"Running job {job} in {env.name} as of {as_of} on {spark_url or 'in-process Spark'} (run folder {run_dir})")
    params = {
        "env": env.name,
        "as_of": as_of.isoformat(),
        "hyperparameters": hyperparameters,
        "run_id": f"{env.name}/{run_dir.name}",
    }
    if spark_url and ours:
        runner.health = lambda: spark_server.died(env.home, spark_url)
    return runner.run(job, params, follow_triggers=follow_triggers), run_dir, spark_url


def run_scheduler(env: config.EnvConfig, all_jobs: dict[str, spec.Job], args: argparse.Namespace) -> None:
    """Run the jobs of conf/jobs.yml whose schedules come due, in the foreground (Ctrl-C stops it).

    With --clock the clock is simulated: it starts there, jumps to each fire time, runs each
    job as of its fire date, and stops at --until.
    """

    schedules = {name: job.schedule for name, job in all_jobs.items() if job.schedule}
    if args.clock:
        if not args.until:
            raise config.ConfigError("--clock needs --until (a simulated clock runs to a given day)")
        clock = [_day(args.clock, "--clock")]
        until = _day(args.until, "--until")
        state = jobs.new_run_dir(env, "scheduler") / "scheduler.json"  # a simulation remembers nothing

        def sleep(seconds: float) -> None:
            clock[0] += dt.timedelta(seconds=seconds)

        now, wait = (lambda: clock[0]), sleep
    else:
        state, until, now, wait = env.home / "scheduler" / f"{env.name}.json", None, scheduler.utcnow, time.sleep
    default_as_of = config.parse_as_of(args.as_of, env)

    def run_one(name: str, fire: dt.datetime) -> None:
        as_of = fire.date() if args.clock else default_as_of
        try:
            config.check_as_of(as_of, env.data, env.name)
            run_job(env, all_jobs, name, as_of)
            print(f"scheduler: {name} succeeded")
        except LakehouseError as exc:  # reported (and notified by the runner); the scheduler goes on
            print(f"scheduler: {name} failed: {exc}", file=sys.stderr)

    listed = ", ".join(f"{n} [{s.quartz_cron_expression} {s.timezone_id} {s.pause_status}]" for n, s in schedules.items())
    print(
        f"scheduler for {env.name}: {listed or 'no schedules'}"
        + (f"; simulated clock {clock[0]} .. {until}" if args.clock else "; Ctrl-C stops it")
    )
    try:
        runs = scheduler.run(scheduler.Scheduler(schedules, state), run_one, clock=now, sleep=wait, until=until)
    except KeyboardInterrupt:
        print("scheduler: stopped")
        return
    print(f"scheduler: {runs} run(s) made")


def run_replay(env: config.EnvConfig, all_jobs: dict[str, spec.Job], args: argparse.Namespace) -> None:
    """`--replay START:END --every Nd`: production through those days on a simulated clock (lib/platform/workflows/replay.py),
    in a lakehouse of its own under <lakehouse>/replays/, attached to the lakehouse's Spark server."""
    import shutil

    from lib.serving import server, settings  # the serving stack: imported by the commands that serve

    start, end = replay.parse_span(args.replay)
    every = replay.parse_every(args.every or "")
    days = replay.steps(start, end, every, env.data)
    home = env.home / "replays" / f"{env.name}_{start}_{end}_{every}d"
    started = time.monotonic()
    spark_url = attach_spark(env)  # tables are addressed by path: the replay shares the cluster
    os.environ[config.HOME_ENV_VAR] = str(home)  # the replay's own lakehouse, for this process and its kernels
    os.environ[settings.PORT_ENV_VAR] = "0"  # its endpoint on a free port, beside any other
    renv = config.load_env(env.name)
    if home.exists():
        server.stop(renv)
        shutil.rmtree(home)
        print(f"replay: removed the previous replay's lakehouse {home}")
    home.mkdir(parents=True)
    print(
        f"replay: {len(days)} steps of {every} days, {days[0]} .. {days[-1]}, in {renv.name} of {home} "
        f"(Spark {spark_url or 'in-process'}; job logs in {home / 'replay.log'})"
    )
    registry.configure(renv)
    clock = scheduler.Scheduler({n: j.schedule for n, j in all_jobs.items() if j.schedule}, home / "scheduler.json")
    events: list = []
    with open(home / "replay.log", "a") as log:

        def run_one(job: str, as_of):
            return run_job(renv, all_jobs, job, as_of, follow_triggers=False, stream=log)[0]

        try:
            replay.replay(
                renv.model_name, days, run_one, clock, jobs.triggered, lambda job: spec.notebooks(all_jobs, job), events
            )
        finally:
            if events:
                from lib.monitoring import dashboard  # matplotlib: seconds to import

                lakehouse = Lakehouse(session.get_spark("replay", env=renv), renv)
                table = replay.write(lakehouse, renv, events)
                pages = [dashboard.publish(lakehouse, renv, m) for m in monitors.load_monitors().values()]
                print(f"replay: timeline in {table} ({len(events)} rows); dashboard {', '.join(map(str, pages))}")
            server.stop(renv)  # the replay's endpoint; the Spark server stays for the next run
    print(f"replay finished in {(time.monotonic() - started) / 60:.1f} min:")
    for line in replay.summary(events):
        print(f"  {line}")


def _day(text: str, flag: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise config.ConfigError(f"{flag} takes an ISO date or date-time such as 2013-06-01, got {text!r}") from None


def use_conf(args: argparse.Namespace) -> None:
    """Select --conf DIR for this process and all it starts (kernels, servers, the scheduler's jobs),
    before any config is read; --hyperparameters, like DIR, is relative to the working folder."""
    if args.conf:
        folder = os.path.abspath(os.path.expanduser(args.conf))
        if not os.path.isdir(folder):
            raise config.ConfigError(f"--conf {args.conf}: no such folder (give a project's config folder, e.g. conf)")
        os.environ[config.CONF_ENV_VAR] = folder
    elif os.environ.get(config.CONF_ENV_VAR):  # made absolute: kernels run in the project folder
        os.environ[config.CONF_ENV_VAR] = str(config.conf_dir())
    if args.hyperparameters:
        args.hyperparameters = os.path.abspath(os.path.expanduser(args.hyperparameters))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    registry.no_telemetry()  # for this process and the kernels and servers it starts
    try:
        if args.init:
            init_project(args)
            return 0
        if args.from_file or args.label or args.timestamp or args.id:
            raise config.ConfigError("--from, --label, --timestamp and --id go with --init DIR")
        use_conf(args)
        if args.validate:  # like `databricks bundle validate`: one line per file, then `config OK`
            validate.validate(args.env)
            return 0
        if not args.list:  # every run checks all the config first: a typo fails here, in a second or two
            validate.validate(args.env, say=lambda line: None)
        all_jobs = spec.load_jobs()
        if args.list:
            list_jobs(all_jobs)
            return 0
        if not args.env:
            raise config.ConfigError(f"--env is required: one of {', '.join(config.environment_names())}")
        env = config.load_env(args.env)
        from lib.serving import server  # the serving stack: imported by the commands that serve

        for flag, action in (
            (args.wipe, lambda: wipe(env)),
            (args.history, lambda: show_history(env)),
            (args.serve, lambda: server.serve(env)),
            (args.approve, lambda: approve(env, args.approve)),
            (args.rollback, lambda: rollback(env)),
        ):
            if flag:
                action()
                return 0
        if args.every and not args.replay:
            raise config.ConfigError("--every goes with --replay START:END")
        if (args.clock or args.until) and not args.scheduler:
            raise config.ConfigError("--clock and --until go with --scheduler")
        if args.job not in all_jobs:
            raise config.ConfigError(f"unknown job {args.job!r}: choose one of {', '.join(all_jobs)} (see --list)")
        as_of = config.parse_as_of(args.as_of, env)
        model_cfg = config.load_model_config()
        if TRAIN_NOTEBOOK in spec.notebooks(all_jobs, args.job):
            # A bad --hyperparameters file fails here too: unknown names fail when the estimator is built.
            from lib.lifecycle import training  # scikit-learn and MLflow: seconds to import

            training.make_pipeline(model_cfg, config.load_hyperparameters(args.hyperparameters, model_cfg)[1])
        elif args.hyperparameters:
            raise config.ConfigError(f"--hyperparameters applies to jobs that train; job {args.job} does not")
        if not os.environ.get(spark.REMOTE_ENV_VAR):
            java.check_java()  # fail in a second, not inside the first notebook
            spark.spark_jars()  # resolved here once, not by every notebook kernel at the same time
        if args.replay:
            run_replay(env, all_jobs, args)
            return 0
        if args.scheduler:
            run_scheduler(env, all_jobs, args)
            return 0
        started = time.monotonic()
        _, run_dir, spark_url = run_job(env, all_jobs, args.job, as_of, args.hyperparameters)
        print(f"Job {args.job} succeeded in {time.monotonic() - started:.0f}s")
        summary(env, run_dir, spark_url)
        return 0
    except LakehouseError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"Job {args.job} stopped (Ctrl-C)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
