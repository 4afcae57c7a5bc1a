"""Streaming inference survives its Spark server being killed mid-batch: exactly once, for real."""

import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from lib import spark as lspark
from lib import spark_server, streaming
from lib.catalog import Lakehouse
from lib.config import PROJECT_DIR
from lib.features import KEY


def _server(env):
    """A Spark server of this test's own (the session's shared one must survive the kills)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(spark_server.PORT_ENV_VAR, "0")
        return spark_server.ensure(env, say=lambda line: None)


def _forget(session) -> None:
    """Drop a session whose server was killed, without retrying against nobody."""
    from pyspark.sql.connect.client.retries import DefaultPolicy

    with contextlib.suppress(Exception):
        session.client.set_retry_policies([DefaultPolicy(max_retries=0)])
        session.client.close()


def _committed_txns(table_path) -> set[int]:
    """The micro-batch ids whose rows the table holds (the txn versions of its commits)."""
    found = set()
    for commit in (table_path / "_delta_log").glob("*.json"):
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "txn" in action:
                found.add(action["txn"]["version"])
    return found


def test_a_stream_killed_mid_batch_scores_every_arrival_exactly_once(featurized, staging, champion, model_cfg, tmp_path):
    """Killed once as a micro-batch starts, and once between its two writes (its bad rows
    quarantined, its predictions not yet written); restarted, the stream scores every arrival
    once and quarantines every bad row once. (A micro-batch replayed after both its writes is
    `test_a_micro_batch_replayed_after_its_write_writes_nothing_twice`.)"""
    capped = {**model_cfg, "inference": {**model_cfg["inference"], "streaming": {
        **model_cfg["inference"]["streaming"], "max_files_per_trigger": 1}}}  # one feed commit per micro-batch
    day = dt.datetime.combine(staging.data.as_of, dt.time())
    flights = featurized.read(staging.table("flight_features"))
    fed = 0
    for hours in (0, 8, 16):  # three commits, each one file: 8 hours of flights and one bad row
        chunk = streaming.arrivals(flights, day + dt.timedelta(hours=hours), day + dt.timedelta(hours=hours + 8))
        bad = featurized.spark.createDataFrame(pd.DataFrame([(f"bad-{hours}", "JFK", "soon")], columns=list(streaming.FIELDS)))
        fed += chunk.count()
        streaming.append_arrivals(featurized, chunk.unionByName(bad).coalesce(1))
    checkpoint = streaming.checkpoint_path(featurized)
    quarantine = featurized.path(staging.table(streaming.QUARANTINE))
    doomed = dataclasses.replace(staging, home=tmp_path / "doomed-server")
    kills = []
    for between_writes in (False, True):
        running = _server(doomed)
        session = lspark.attach(running.url)
        streaming.start(Lakehouse(session, staging), capped, streaming.AVAILABLE_NOW)
        deadline = time.monotonic() + 120
        while True:  # a micro-batch under way: its offsets written, its commit not yet
            offsets = {int(p.name) for p in (checkpoint / "offsets").glob("[0-9]*")}
            commits = {int(p.name) for p in (checkpoint / "commits").glob("[0-9]*")}
            under_way = offsets - commits
            if under_way and (not between_writes or max(under_way) in _committed_txns(quarantine)):
                break
            assert time.monotonic() < deadline, f"no micro-batch to kill within 120 s (kills so far {kills})"
            time.sleep(0.01)
        os.killpg(running.pid, signal.SIGKILL)  # the server JVM and its Python workers, mid-batch
        with contextlib.suppress(ChildProcessError):
            os.waitpid(running.pid, 0)  # this process started it: reap it, or it lingers as a zombie
        _forget(session)
        batch = max(under_way)
        kills.append((batch, batch in _committed_txns(quarantine), batch in _committed_txns(
            featurized.path(staging.table(streaming.PREDICTIONS)))))
    # Killed before anything of batch 0 was written; then with its quarantine row written and its predictions not.
    assert kills == [(0, False, False), (0, True, False)], kills

    running = _server(doomed)
    streaming.run(Lakehouse(lspark.attach(running.url), staging), model_cfg, streaming.AVAILABLE_NOW,
                  say=lambda line: None)
    spark_server.stop(doomed.home, say=lambda line: None)
    out = featurized.read(staging.table(streaming.PREDICTIONS)).select(KEY).toPandas()
    incoming = featurized.read(staging.table(streaming.INCOMING)).select(KEY).toPandas()
    assert len(incoming) == fed + 3
    assert len(out) == out[KEY].nunique() == fed, f"{len(out) - out[KEY].nunique()} scored twice"
    assert set(out[KEY]) == set(incoming[KEY]) - {"bad-0", "bad-8", "bad-16"}, "arrivals missing from the predictions"
    held = featurized.read(staging.table(streaming.QUARANTINE)).select(KEY).toPandas()[KEY]
    assert sorted(held) == ["bad-0", "bad-16", "bad-8"]  # each once

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


def test_the_streaming_job_scores_as_flights_arrive_until_ctrl_c(featurized, staging, champion):
    """`run_pipeline.py --env staging --job streaming` (a 1 s processing-time trigger) runs until
    Ctrl-C, scoring each feed commit as it lands, and stops its query on the way out."""
    day = dt.datetime.combine(staging.data.as_of, dt.time())
    table = staging.table(streaming.PREDICTIONS)
    before = _workers()
    fed = streaming.feed(featurized, day, day + dt.timedelta(days=1), dt.timedelta(days=1), 0, say=lambda line: None)
    # As from a terminal: SIGINT handled (a shell's background job would inherit it ignored).
    job = subprocess.Popen([sys.executable, "run_pipeline.py", "--env", "staging", "--job", "streaming"],
                           cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_rows(featurized, table, fed, job)
        assert _workers() == before + 1  # the query's worker, in the Spark server
        more = streaming.feed(featurized, day + dt.timedelta(days=1), day + dt.timedelta(days=2), dt.timedelta(days=1),
                              0, say=lambda line: None)
        _wait_rows(featurized, table, fed + more, job)  # picked up by the running stream
        job.send_signal(signal.SIGINT)
        out, _ = job.communicate(timeout=180)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 130, out
    assert "Ctrl-C: letting streaming_inference stop cleanly ... stopped (Ctrl-C)" in out, out
    assert out.rstrip().endswith("Job streaming stopped (Ctrl-C)"), out
    assert "Traceback" not in out, out
    deadline = time.monotonic() + 30
    while _workers() != before:  # the query stopped, so its worker goes
        assert time.monotonic() < deadline, "the stream's worker is still running after Ctrl-C"
        time.sleep(0.5)
    scored = featurized.read(table).select(KEY).toPandas()
    assert len(scored) == scored[KEY].nunique() == fed + more
