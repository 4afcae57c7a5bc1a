"""Run the MLOps workflow (or one of its jobs) for an environment: the Workflows stand-in.

    python run_pipeline.py --env prod                  # the full production workflow
    python run_pipeline.py --env prod --job training --as-of 2013-11-01
    python run_pipeline.py --list                      # jobs and their tasks
    python run_pipeline.py --env staging --wipe        # delete staging's tables and models
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import traceback

from lib import config, jobs, registry, spark
from lib.catalog import Lakehouse
from lib.errors import LakehouseError

DEFAULT_JOB = "workflow"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run lakehouse-mlops jobs (conf/jobs.yml).")
    parser.add_argument("--env", help="environment from conf/environments.yml: dev, staging or prod")
    parser.add_argument("--job", default=DEFAULT_JOB, help=f"job to run (default: {DEFAULT_JOB}, the whole workflow)")
    parser.add_argument("--as-of", default="", help="run date YYYY-MM-DD (default: the environment's data.as_of)")
    parser.add_argument("--list", action="store_true", help="list the jobs and their tasks, then exit")
    parser.add_argument("--wipe", action="store_true", help="delete a temporary environment's tables, models and runs")
    parser.add_argument("--verbose", action="store_true", help="show stack traces on errors")
    return parser.parse_args(argv)


def list_jobs(all_jobs: dict[str, jobs.Job]) -> None:
    for job in all_jobs.values():
        print(f"{job.name}: {job.description}")
        for task in job.tasks:
            what = f"job {task.job}" if task.job else task.notebook.relative_to(config.PROJECT_DIR).as_posix()
            after = f"  (after {', '.join(task.depends_on)})" if task.depends_on else ""
            print(f"  - {task.key}: {what}{after}")


def wipe(env: config.EnvConfig) -> None:
    """Delete a temporary environment's catalog, registered models, experiment and run folders."""
    import shutil

    folder = Lakehouse(None, env).drop_catalog()  # refuses a non-temporary environment first
    models = registry.purge(env)
    shutil.rmtree(env.home / "runs" / env.name, ignore_errors=True)
    print(f"wiped {env.name}: {folder}, {len(models)} registered model(s), experiment {env.experiment}")


def summary(env: config.EnvConfig, run_dir) -> None:
    """Where to look after a run: tables, executed notebooks, the Champion and the MLflow UI."""
    registry.configure(env)
    champion = registry.version_of(env.model_name, registry.CHAMPION)
    tables = Lakehouse(None, env).tables()
    print(f"\nTables ({env.warehouse / env.catalog}):")
    for name in tables:
        print(f"  {name}")
    print(f"Executed notebooks: {run_dir}")
    print(f"Champion: {champion.uri if champion else 'none yet'}")
    print(f"MLflow UI: {shlex.quote(sys.executable)} -m mlflow ui --backend-store-uri {shlex.quote(env.tracking_uri)}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        all_jobs = jobs.load_jobs()
        if args.list:
            list_jobs(all_jobs)
            return 0
        if not args.env:
            raise config.ConfigError(f"--env is required: one of {', '.join(config.environment_names())}")
        env = config.load_env(args.env)
        if args.wipe:
            wipe(env)
            return 0
        if args.job not in all_jobs:
            raise config.ConfigError(f"unknown job {args.job!r}: choose one of {', '.join(all_jobs)} (see --list)")
        as_of = config.parse_as_of(args.as_of, env)
        config.load_model_config()  # a bad conf/model.yml fails here, not after training
        spark.check_java()  # fail in a second, not inside the first notebook
        spark.delta_jars()  # resolved here once, not by every notebook kernel at the same time
        run_dir = jobs.new_run_dir(env, args.job)
        print(f"Running job {args.job} in {env.name} as of {as_of} (run folder {run_dir})")
        started = time.monotonic()
        jobs.Runner(env, all_jobs, run_dir).run(args.job, {"env": env.name, "as_of": as_of.isoformat()})
        print(f"Job {args.job} succeeded in {time.monotonic() - started:.0f}s")
        summary(env, run_dir)
        return 0
    except LakehouseError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
