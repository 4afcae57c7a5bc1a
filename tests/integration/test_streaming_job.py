"""Streaming inference survives its Spark server being killed mid-batch: exactly once, for real.

(`run_pipeline.py --env staging --job streaming`, stopped with Ctrl-C, is part of the staging
workflow test, tests/integration/test_workflow.py.)"""

import contextlib
import dataclasses
import datetime as dt
import os
import signal
import time

import pandas as pd
import pytest

from lib.inference import feed, streaming
from lib.platform.catalog import Lakehouse
from lib.platform.spark import builder as lspark
from lib.platform.spark import server as spark_server


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


def test_a_stream_killed_mid_batch_scores_every_arrival_exactly_once(
    featurized, staging, champion, model_cfg, tmp_path, kafka_records
):
    """Killed once as a micro-batch starts, and once between its two writes (its bad rows
    quarantined, its predictions not yet written); restarted, the stream scores every arrival
    once and quarantines every bad row once. (A micro-batch replayed after both its writes is
    `test_a_micro_batch_replayed_after_its_write_writes_nothing_twice`.)"""
    inference = model_cfg.inference  # one feed commit per micro-batch:
    capped = model_cfg.model_copy(
        update={
            "inference": inference.model_copy(
                update={"streaming": inference.streaming.model_copy(update={"max_files_per_trigger": 1})}
            )
        }
    )
    day = dt.datetime.combine(staging.data.as_of, dt.time())
    source, row_id = feed.incoming(model_cfg), model_cfg.spine.id
    flights = featurized.read(staging.table("flight_features"))
    fed = 0
    for hours in (0, 8, 16):  # three commits, each one file: 8 hours of flights and one bad row
        chunk = feed.scheduled(flights, source, day + dt.timedelta(hours=hours), day + dt.timedelta(hours=hours + 8))
        bad = featurized.spark.createDataFrame(pd.DataFrame([(f"bad-{hours}", "JFK", "soon")], columns=list(source.fields)))
        fed += chunk.count()
        feed.append(featurized, source, chunk.unionByName(bad).coalesce(1))
    checkpoint = streaming.checkpoint_path(featurized)
    doomed = dataclasses.replace(staging, home=tmp_path / "doomed-server")
    kills = []

    def written(table: str, batch: int) -> bool:
        return featurized.txn_time(staging.table(table), (streaming.query_id(checkpoint), batch)) is not None

    for between_writes in (False, True):
        running = _server(doomed)
        session = lspark.attach(running.url)
        streaming.start(Lakehouse(session, staging), capped, streaming.AVAILABLE_NOW)
        deadline = time.monotonic() + 120
        while True:  # a micro-batch under way: its offsets written, its commit not yet
            offsets = {int(p.name) for p in (checkpoint / "offsets").glob("[0-9]*")}
            commits = {int(p.name) for p in (checkpoint / "commits").glob("[0-9]*")}
            under_way = offsets - commits
            if under_way and (not between_writes or written(source.quarantine, max(under_way))):
                break
            assert time.monotonic() < deadline, f"no micro-batch to kill within 120 s (kills so far {kills})"
            time.sleep(0.01)
        os.killpg(running.pid, signal.SIGKILL)  # the server JVM and its Python workers, mid-batch
        with contextlib.suppress(ChildProcessError):
            os.waitpid(running.pid, 0)  # this process started it: reap it, or it lingers as a zombie
        _forget(session)
        batch = max(under_way)
        kills.append((batch, written(source.quarantine, batch), written(streaming.PREDICTIONS, batch)))
    # Killed before anything of batch 0 was written; then with its quarantine row written and its predictions not.
    assert kills == [(0, False, False), (0, True, False)], kills

    # Restarted on another server (the session's): what a query holds is its checkpoint and the tables.
    streaming.run(featurized, model_cfg, streaming.AVAILABLE_NOW, say=lambda line: None)
    out = featurized.read(staging.table(streaming.PREDICTIONS)).select(row_id).toPandas()
    incoming = featurized.read(staging.table(source.table)).select(row_id).toPandas()
    assert len(incoming) == fed + 3
    assert len(out) == out[row_id].nunique() == fed, f"{len(out) - out[row_id].nunique()} scored twice"
    assert set(out[row_id]) == set(incoming[row_id]) - {"bad-0", "bad-8", "bad-16"}, "arrivals missing from the predictions"
    held = featurized.read(staging.table(source.quarantine)).select(row_id).toPandas()[row_id]
    assert sorted(held) == ["bad-0", "bad-16", "bad-8"]  # each once
    sent = [key for key, _ in kafka_records(streaming.kafka_topic(staging), streaming.query_id(checkpoint))]
    assert len(sent) == len(set(sent)) and set(sent) == set(out[row_id])  # and each once to Kafka
