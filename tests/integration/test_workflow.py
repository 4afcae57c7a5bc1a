"""The real workflow through run_pipeline.py, in the staging catalog of a temporary lakehouse.

Real Spark, Delta and MLflow in subprocesses, exactly as a user or CI runs them.
"""

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from lib.core import names
from lib.core.config import PROJECT_DIR, load_env, load_model_config
from lib.core.config.sources import load_sources
from lib.core.names import CHALLENGER, CHAMPION, PREVIOUS
from lib.features import ingest
from lib.features.tables import in_window
from lib.inference import feed, streaming
from lib.platform import registry
from lib.platform.catalog import Lakehouse
from lib.platform.services import kafka_client as kafka
from lib.platform.services import postgres
from lib.platform.spark import server as spark_server
from lib.serving import server, settings
from lib.serving.client import Client


def run(*args, **env):
    import os

    return subprocess.run(
        [sys.executable, "run_pipeline.py", *args],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, **env},
    )


def cli(*args) -> subprocess.CompletedProcess:
    """run_pipeline.py's main() in this process: the registry commands, without paying a new
    interpreter and MLflow import (~3.5 s) each time."""
    import contextlib
    import importlib.util
    import io

    spec = importlib.util.spec_from_file_location("run_pipeline", PROJECT_DIR / "run_pipeline.py")
    run_pipeline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_pipeline)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_pipeline.main(list(args))
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.mark.parametrize(
    "args,message",
    [
        (["--env", "qa"], "unknown environment 'qa': choose one of dev, staging, prod"),
        (["--env", "prod", "--job", "nope"], "unknown job 'nope'"),
        (["--env", "prod", "--as-of", "2013-13-01"], "as-of '2013-13-01' is not a date"),
        (["--env", "prod", "--as-of", "2014-03-01"], "as-of 2014-03-01 is outside the data of environment prod"),
        ([], "--env is required"),
        (["--env", "prod", "--wipe"], "environment prod is not temporary"),
        (["--env", "prod", "--hyperparameters", "conf/missing.yml"], "config file conf/missing.yml is missing"),
        (["--env", "prod", "--approve", "v2"], "--approve takes a version number, got 'v2'"),
        (
            ["--env", "prod", "--job", "monitoring", "--hyperparameters", "conf/examples/weak_model.yml"],
            "--hyperparameters applies to jobs that train; job monitoring does not",
        ),
        (
            ["--env", "prod", "--hyperparameters", "tests/data/misspelt_hyperparameters.yml"],
            "hyperparameters for hist_gradient_boosting: HistGradientBoostingClassifier.__init__() got an unexpected keyword argument 'max_depht'",
        ),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(home, args, message):
    result = run(*args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (home / "warehouse").exists() and not (home / "runs").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--replay", "2013-03-01"], "--replay takes START:END as ISO dates"),
        (["--replay", "2013-03-01:2013-03-08", "--every", "1w"], "--every takes a number of days such as 7d"),
        (["--replay", "2013-01-15:2013-03-08", "--every", "7d"], "--replay starts 2013-01-15, before the first day"),
        (["--every", "7d"], "--every goes with --replay START:END"),
        (["--clock", "2013-03-01"], "--clock and --until go with --scheduler"),
        (["--scheduler", "--clock", "2013-03-01"], "--clock needs --until"),
        (["--scheduler", "--clock", "March", "--until", "2013-03-08"], "--clock takes an ISO date"),
    ],
)
def test_bad_replay_and_scheduler_arguments_are_one_line(home, args, message):
    result = cli("--env", "staging", *args)
    assert result.returncode == 1 and result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (home / "warehouse").exists() and not (home / "replays").exists()


def test_the_scheduler_on_a_simulated_clock_runs_nothing_before_a_fire_time(home):
    # The shipped schedule retrains quarterly (1 Jan, Apr, Jul, Oct): nothing falls in 1-8 March.
    result = cli("--env", "staging", "--scheduler", "--clock", "2013-03-01", "--until", "2013-03-08")
    assert result.returncode == 0, result.stderr
    assert "retraining [0 0 6 1 1/3 ? UTC UNPAUSED]; simulated clock 2013-03-01 00:00:00 .. 2013-03-08" in result.stdout
    assert result.stdout.strip().endswith("scheduler: 0 run(s) made")
    assert not (home / "warehouse").exists()


def test_no_java_is_one_line(home, tmp_path):
    result = run("--env", "staging", JAVA_HOME=str(tmp_path / "no-jdk"), SPARK_REMOTE="")  # it would start a server
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: JAVA_HOME={tmp_path / 'no-jdk'} has no bin/java: point it at a JDK 17 or 21"
    assert not (home / "warehouse").exists()


def test_list_shows_jobs_and_tasks():
    result = run("--list")
    assert result.returncode == 0
    assert "workflow: The production workflow" in result.stdout
    assert "  - validate: notebooks/pipelines/04_validate.ipynb  (after train)" in result.stdout


@pytest.mark.slow
def test_a_failing_task_stops_the_job_and_notifies(home):
    result = run("--env", "staging", "--job", "batch_inference")
    assert result.returncode == 1
    assert result.stderr.startswith("error: task batch_inference failed in cell In [")
    assert "ModelNotFoundError: staging.flights.delay_model has no Champion yet" in result.stderr
    assert "NOTIFY [staging] job batch_inference failed: task batch_inference" in result.stdout
    assert not (home / "warehouse" / "staging" / "flights" / "predictions").exists()


def _workers() -> int:
    """The foreachBatch Python workers running on this machine (one per active query)."""
    return int(subprocess.run(["pgrep", "-fc", "foreach_batch_worker"], capture_output=True, text=True).stdout or 0)


def _wait_rows(lakehouse, table: str, rows: int, process, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout

    def held() -> int:
        try:
            return lakehouse.read(table).count()
        except Exception:  # noqa: BLE001 - not there yet (its folder may precede its first commit)
            return -1

    while held() != rows:
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, f"{table} did not reach {rows} rows in {timeout:.0f} s"
        time.sleep(1)


def _postgres_rows() -> list[tuple[str, int]] | None:
    """(model_version, rows) in staging's PostgreSQL predictions; None when its database is gone."""
    url = os.environ[postgres.URL_ENV_VAR]
    with postgres.connect(url, "postgres") as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = 'staging'").fetchone() is None:
            return None
    with postgres.connect(url, "staging") as conn:
        return conn.execute("SELECT model_version, count(*) FROM flights.predictions GROUP BY 1").fetchall()


@pytest.mark.slow
def test_full_workflow_in_staging_then_rerun_then_wipe(spark, home, standalone, kafka_broker, kafka_records):
    staging = load_env("staging")
    lakehouse = Lakehouse(spark, staging)
    start, end = staging.data.split(staging.data.as_of).score
    postgres.drop_database(os.environ[postgres.URL_ENV_VAR], "staging")  # the session's server: earlier tests' rows

    # 1. The whole workflow.
    result = run("--env", "staging")
    assert result.returncode == 0, result.stderr[-3000:]
    tasks = ["ingest", "features", "train", "validate", "deploy", "serve", "batch_inference", "monitoring"]
    for task in tasks:
        assert any(line.strip().startswith(f"{task} ") and " ok " in f"{line} " for line in result.stdout.splitlines()), task
    assert "Champion: models:/staging.flights.delay_model/1" in result.stdout
    run_dir = next((home / "runs" / "staging").iterdir())
    assert sorted(p.name for p in run_dir.rglob("*.ipynb")) == sorted(f"{t}.ipynb" for t in tasks)

    # The endpoint serves the Champion, from keys alone.
    cfg = settings.load(staging)
    api = Client(server.find(cfg).url, cfg.token())
    assert f"Serving: {api.url}/serving-endpoints/delay-model/invocations" in result.stdout
    keys = (
        in_window(lakehouse.read("staging.flights.labels"), "sched_dep_ts", start, end)
        .select("flight_id", "origin", "sched_dep_ts")
        .limit(5)
        .toPandas()
        .astype({"sched_dep_ts": str})
    )
    body = {"dataframe_records": keys.to_dict(orient="records")}
    status, headers, answer = api.query("delay-model", body)
    assert (status, headers["served-model-name"]) == (200, "staging.flights.delay_model-1")
    assert len(answer["predictions"]) == 5

    flights = load_sources()["flights"]
    raw_flights = ingest.read_source(lakehouse, "flights", flights, staging.data.start, staging.data.end).count()
    assert lakehouse.read("staging.raw.flights").count() == raw_flights
    assert lakehouse.read("staging.flights.flight_features").count() == raw_flights
    scored = in_window(lakehouse.read("staging.flights.flight_features"), "sched_dep_ts", start, end).count()
    assert lakehouse.read("staging.flights.predictions").count() == scored
    assert _postgres_rows() == [("1", scored)]  # the jdbc destination (on in staging), the same rows
    profile = lakehouse.read("staging.flights.predictions_profile_metrics")
    days = profile.where("granularity = '1 day' AND column_name = ':table' AND slice_key IS NULL AND log_type = 'INPUT'")
    assert days.count() == staging.data.horizon_days
    # Each scored day drifts from v1's baseline, written when v1 was trained.
    baseline_drift = lakehouse.read("staging.flights.predictions_drift_metrics").where(
        "drift_type = 'BASELINE' AND granularity = '1 day' AND column_name = 'temp' AND slice_key IS NULL"
    )
    assert baseline_drift.count() == staging.data.horizon_days

    registry.configure(staging)
    v1 = registry.ModelRef(staging.model_name, "1")
    tags = registry.require_version(v1).tags
    assert tags["model_validation_status"] == "PASSED" and tags["deployment.decision"] == "PROMOTED"
    assert registry.version_of(staging.model_name, CHAMPION) == v1

    # 1b. The stream: `--job streaming` (a 1 s trigger) scores each feed commit as it lands, into
    #     Delta and Kafka (on in staging), until Ctrl-C, which stops its query on the way out.
    day, table = dt.datetime.combine(start, dt.time()), staging.table(streaming.PREDICTIONS)
    before = _workers()
    model_cfg = load_model_config()
    fed = feed.replay(lakehouse, model_cfg, day, day + dt.timedelta(days=1), dt.timedelta(days=1), 0, say=lambda line: None)
    # As from a terminal: SIGINT handled (a shell's background job would inherit it ignored). Set
    # here around the start, not in a preexec_fn: that forces a fork, whose handlers in this
    # process's gRPC (the Spark Connect client) can abort the child before it execs.
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        job = subprocess.Popen(
            [sys.executable, "run_pipeline.py", "--env", "staging", "--job", "streaming"],
            cwd=PROJECT_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    finally:
        signal.signal(signal.SIGINT, handler)
    try:
        _wait_rows(lakehouse, table, fed, job)
        assert _workers() == before + 1  # the query's worker, in the Spark server
        fed += feed.replay(
            lakehouse,
            model_cfg,
            day + dt.timedelta(days=1),
            day + dt.timedelta(days=2),
            dt.timedelta(days=1),
            0,
            say=lambda line: None,
        )
        _wait_rows(lakehouse, table, fed, job)  # picked up by the running stream
        job.send_signal(signal.SIGINT)
        out, _ = job.communicate(timeout=180)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 130, out
    assert "Ctrl-C: letting streaming_inference stop cleanly ... stopped (Ctrl-C)" in out, out
    assert out.rstrip().endswith("Job streaming stopped (Ctrl-C)") and "Traceback" not in out, out
    deadline = time.monotonic() + 30
    while _workers() != before:  # the query stopped, so its worker goes
        assert time.monotonic() < deadline, "the stream's worker is still running after Ctrl-C"
        time.sleep(0.5)
    streamed = lakehouse.read(table).select("flight_id", "model_version").toPandas()
    assert len(streamed) == streamed["flight_id"].nunique() == fed and set(streamed["model_version"]) == {"1"}
    topic = streaming.kafka_topic(staging)
    sent = kafka_records(topic, streaming.query_id(streaming.checkpoint_path(lakehouse)))
    assert sorted(key for key, _ in sent) == sorted(streamed["flight_id"])

    # 2. Training again, on a real Spark cluster (a standalone master and worker): the same
    #    notebooks, through a Spark server of this lakehouse that submits to the cluster.
    #    v2 passes validation and is the Challenger; the Champion stays.
    #    (Gates that fail, ties and losses are covered by the unit and notebook tests.)
    cluster, work = standalone
    try:
        result = run(
            "--env",
            "staging",
            "--job",
            "training",
            SPARK_REMOTE="",
            **{spark_server.MASTER_ENV_VAR: cluster, spark_server.PORT_ENV_VAR: "0"},
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert "started the Spark server at sc://127.0.0.1:" in result.stdout
        found = spark_server.find(home)
        assert found is not None and found[1]["master"] == cluster
        # The server's executor ran on the worker: its application folder holds the executor's log.
        executors = list(work.glob("app-*/*/stderr"))
        assert len(executors) == 1 and "Successfully registered with driver" in executors[0].read_text()
    finally:
        spark_server.stop(home, say=lambda line: None)
    v2 = registry.ModelRef(staging.model_name, "2")
    assert registry.require_version(v2).tags["model_validation_status"] == "PASSED"
    assert registry.aliases(staging.model_name) == {CHAMPION: "1", CHALLENGER: "2"}

    # 3. The version history, an approval and a rollback from the command line.
    history = cli("--env", "staging", "--history").stdout
    assert [line.split()[0] for line in history.splitlines() if line.startswith("v")] == ["v1", "v2"]
    assert "v1 [Champion]" in history and "v2 [Challenger]" in history and "deployment: PROMOTED" in history
    assert cli("--env", "staging", "--approve", "1").stderr.strip() == (
        "error: models:/staging.flights.delay_model/1 is not the Challenger (staging.flights.delay_model@Challenger is v2)"
    )
    approved = cli("--env", "staging", "--approve", "2")
    assert approved.returncode == 0 and registry.require_version(v2).tags["approval.status"] == "APPROVED"
    assert cli("--env", "staging", "--rollback").stderr.strip() == (
        "error: staging.flights.delay_model has no Previous version to roll back to (Champion v1 is the only one deployed)"
    )
    registry.move_alias(v2, names.PREVIOUS, "test: as if v2 had been Champion before v1")
    rolled = cli("--env", "staging", "--rollback")
    assert rolled.returncode == 0 and "Champion is v2 again, v1 is Previous" in rolled.stdout
    assert registry.aliases(staging.model_name) == {CHAMPION: "2", PREVIOUS: "1", CHALLENGER: "2"}
    # ... and the serving job moves the endpoint to it under load, failing no request.
    statuses, stop = [], threading.Event()

    def load():
        while not stop.is_set():
            statuses.append(api.query("delay-model", body)[0])

    worker = threading.Thread(target=load)
    worker.start()
    try:
        served = run("--env", "staging", "--job", "serving")
    finally:
        stop.set()
        worker.join()
    assert served.returncode == 0, served.stderr[-2000:]
    assert [e["name"] for e in api.get("delay-model")["config"]["served_entities"]] == ["staging.flights.delay_model-2"]
    assert len(statuses) > 20 and set(statuses) == {200}
    assert api.query("delay-model", body)[1]["served-model-name"] == "staging.flights.delay_model-2"
    # A clean stop writes every captured request to the inference table.
    assert subprocess.run(
        [sys.executable, "-m", "lib.serving", "stop", "--env", "staging"], cwd=PROJECT_DIR, capture_output=True, text=True
    ).stdout.startswith("stopped staging server")
    payload = lakehouse.read("staging.flights.delay_model_payload")
    assert payload.count() == len(statuses) + 2 and payload.where("status_code != 200").count() == 0
    assert cli("--env", "staging", "--rollback").returncode == 0  # and forward again
    assert registry.aliases(staging.model_name) == {CHAMPION: "1", PREVIOUS: "2", CHALLENGER: "2"}

    # 4. A workflow whose training fails validation still scores the period and refreshes the
    #    monitors with the current Champion (run_if), then fails and notifies.
    published = lakehouse.version("staging.flights.predictions")
    result = run("--env", "staging", "--hyperparameters", "conf/examples/weak_model.yml")
    assert result.returncode == 1, result.stdout[-2000:]
    assert result.stderr.startswith("error: task validate failed in cell In [")
    assert "deployment           UPSTREAM_FAILED (run_if ALL_SUCCESS: training FAILED)" in result.stdout
    for task in ("batch_inference", "monitoring"):
        assert any(line.strip().startswith(f"{task} ") and " ok " in f"{line} " for line in result.stdout.splitlines()), task
    assert "NOTIFY [staging] job workflow failed: task validate failed" in result.stdout
    assert registry.require_version(registry.ModelRef(staging.model_name, "3")).tags["model_validation_status"] == "FAILED"
    assert registry.aliases(staging.model_name) == {CHAMPION: "1", PREVIOUS: "2", CHALLENGER: "2"}
    assert lakehouse.version("staging.flights.predictions") > published
    scored_by = lakehouse.read("staging.flights.predictions").select("model_version", "model_alias").distinct()
    assert [tuple(r) for r in scored_by.collect()] == [("1", "Champion")]
    assert (lakehouse.export_path("staging.flights.predictions") / f"{start}_{end}" / "csv").is_dir()
    assert _postgres_rows() == [("1", scored)]  # replaced, not appended

    # 5. One command wipes staging.
    result = run("--env", "staging", "--wipe")
    assert result.returncode == 0 and result.stdout.startswith("wiped staging")
    assert lakehouse.tables() == []
    assert registry.client().search_registered_models() == []
    registry.configure(staging)  # the experiment comes back empty, without the old runs
    assert registry.client().search_runs([registry.client().get_experiment_by_name(staging.experiment).experiment_id]) == []
    assert not (home / "mlartifacts" / "staging").exists()
    assert not (home / "serving" / "staging").exists() and not (home / "online" / "staging.db").exists()
    assert not (home / "exports" / "staging").exists()
    assert "PostgreSQL database staging" in result.stdout and _postgres_rows() is None
    assert f"Kafka topic {topic}" in result.stdout and not kafka.delete_topic(kafka_broker, topic)  # gone already
    assert not (home / "checkpoints" / "staging").exists()
