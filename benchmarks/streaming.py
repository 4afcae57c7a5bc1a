"""Streaming inference: throughput against batch scoring, latency with a 1 s trigger, and
rows lost or duplicated when the Spark server is killed mid-batch.

    python benchmarks/streaming.py [--home DIR] [--days 14] [--latency-hours 24] [--kills 5]

The lakehouse at --home needs prod's feature tables and a Champion; if it has none, a first
`run_pipeline.py --env prod` (unmeasured) makes them. Then, in one run:

1. Throughput, side by side: the same `--days` of arrivals scored by the stream
   (`availableNow`, one micro-batch per day of arrivals, and all in one micro-batch) and by
   batch inference (`inference.score` and one Delta append): rows/s and the ratio.
2. Latency: a stream with a 1 s processing-time trigger runs while the feed appends
   `--latency-hours` of schedule, an hour per commit, as fast as it can; per row `scored_at -
   arrived_at` (one clock: the Spark server's), p50 and p99, and the rows/s sustained.
3. Kill and restart: the Spark server (its whole process group) is SIGKILLed `--kills` times
   mid-batch, alternately as a micro-batch starts and right after it wrote its rows, restarted
   each time; then the stream finishes. Rows lost and rows duplicated must both be 0, in the
   Delta table and in the Kafka topic it also publishes to (the lakehouse's own broker).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import shutil
import signal
import time

import pandas as pd
from prod_lakehouse import prod_lakehouse

from lib.core import config, names
from lib.inference import batch as inference
from lib.inference import feed, streaming
from lib.platform import registry
from lib.platform.catalog import Lakehouse
from lib.platform.services import kafka_client as kafka
from lib.platform.services import kafka_server
from lib.platform.spark import builder as lspark
from lib.platform.spark import server as spark_server

SOURCE = feed.incoming(config.load_model_config())  # the flights': incoming_flights


def _reset(lakehouse: Lakehouse) -> None:
    """No arrivals, predictions, quarantine or checkpoint: a stream from scratch."""
    env = lakehouse.env
    for name in (SOURCE.table, streaming.PREDICTIONS, SOURCE.quarantine, "bench_batch_predictions"):
        shutil.rmtree(lakehouse.path(env.table(name)), ignore_errors=True)
    shutil.rmtree(streaming.checkpoint_path(lakehouse), ignore_errors=True)


def _cfg(model_cfg: config.ModelConfig, cap: int | None) -> config.ModelConfig:
    inference = model_cfg.inference
    return model_cfg.model_copy(
        update={
            "inference": inference.model_copy(
                update={"streaming": inference.streaming.model_copy(update={"max_files_per_trigger": cap})}
            )
        }
    )


def throughput(
    lakehouse: Lakehouse, model_cfg: config.ModelConfig, start: dt.datetime, days: int
) -> list[tuple[str, int, float]]:
    env, out = lakehouse.env, []
    champion = registry.require_alias(env.model_name, names.CHAMPION)
    for label, cap in (("stream, availableNow, 1 day per micro-batch", 1), ("stream, availableNow, one micro-batch", None)):
        _reset(lakehouse)
        rows = feed.replay(
            lakehouse, model_cfg, start, start + dt.timedelta(days=days), dt.timedelta(days=1), 0, say=lambda l: None
        )
        began = time.monotonic()
        streaming.run(lakehouse, _cfg(model_cfg, cap), streaming.AVAILABLE_NOW, say=lambda l: None)
        out.append((label, rows, time.monotonic() - began))
    began = time.monotonic()
    scored = inference.score(
        lakehouse,
        lakehouse.read(env.table("flight_features")),
        champion,
        start.date(),
        (start + dt.timedelta(days=days)).date(),
        0.5,
        names.CHAMPION,
        entity=model_cfg.spine,
    )
    lakehouse.write(scored, env.table("bench_batch_predictions"))
    out.append(
        (
            "batch inference (score + one Delta write)",
            lakehouse.read(env.table("bench_batch_predictions")).count(),
            time.monotonic() - began,
        )
    )
    return out


def latency(lakehouse: Lakehouse, model_cfg: config.ModelConfig, start: dt.datetime, hours: int) -> dict:
    _reset(lakehouse)
    feed.replay(lakehouse, model_cfg, start, start + dt.timedelta(hours=1), dt.timedelta(hours=1), 0, say=lambda l: None)
    query = streaming.start(lakehouse, model_cfg, "1 second")
    try:
        while not lakehouse.exists(lakehouse.env.table(streaming.PREDICTIONS)):
            time.sleep(0.5)  # the first micro-batch (the model loaded in the server's workers)
        warm = time.monotonic()
        rows = feed.replay(
            lakehouse,
            model_cfg,
            start + dt.timedelta(hours=1),
            start + dt.timedelta(hours=1 + hours),
            dt.timedelta(hours=1),
            0,
            say=lambda l: None,
        )
        table = lakehouse.env.table(streaming.PREDICTIONS)
        while lakehouse.read(table).count() < rows + _count(lakehouse, start, start + dt.timedelta(hours=1)):
            time.sleep(0.5)
        elapsed = time.monotonic() - warm
    finally:
        query.stop()
    lag = (
        lakehouse.read(lakehouse.env.table(streaming.PREDICTIONS))
        .where("batch_id > 0")  # after the warm-up
        .selectExpr("(unix_micros(scored_at) - unix_micros(arrived_at)) / 1e6 AS lag")
        .toPandas()["lag"]
    )
    return {"rows": rows, "commits": hours, "seconds": elapsed, "p50": lag.quantile(0.5), "p99": lag.quantile(0.99)}


def _count(lakehouse: Lakehouse, start: dt.datetime, end: dt.datetime) -> int:
    return feed.scheduled(lakehouse.read(lakehouse.env.table("flight_features")), SOURCE, start, end).count()


def kills(env: config.EnvConfig, model_cfg: config.ModelConfig, start: dt.datetime, times: int) -> dict:
    """Kill a Spark server of its own `times` times mid-batch, publishing to Kafka too (the
    lakehouse's own broker); then finish and count, in Delta and in the topic."""
    env = dataclasses.replace(
        env, publish=env.publish.model_copy(update={"kafka": env.publish.kafka.model_copy(update={"enabled": True})})
    )
    was_running = kafka_server.running_servers(env.home) is not None
    doomed = dataclasses.replace(env, home=env.home / "bench-doomed-server")
    os.environ[spark_server.PORT_ENV_VAR] = "0"
    capped = _cfg(model_cfg, 1)
    checkpoint, landed = None, []
    for i in range(times):
        running = spark_server.ensure(doomed, say=lambda l: None)
        lakehouse = Lakehouse(lspark.attach(running.url), env)
        if i == 0:
            _reset(lakehouse)
            fed = feed.replay(
                lakehouse, model_cfg, start, start + dt.timedelta(days=2), dt.timedelta(hours=4), 0, say=lambda l: None
            )
        checkpoint = streaming.checkpoint_path(lakehouse)
        streaming.start(lakehouse, capped, streaming.AVAILABLE_NOW)
        after_write, target = i % 2 == 1, i // 2  # micro-batch 0 as it starts, then after its write; then 1, ...
        deadline = time.monotonic() + 300
        while True:
            offsets = {int(p.name) for p in (checkpoint / "offsets").glob("[0-9]*")}
            commits = {int(p.name) for p in (checkpoint / "commits").glob("[0-9]*")}
            under_way = {b for b in offsets - commits if b >= target}
            if under_way and (
                not after_write
                or lakehouse.txn_time(env.table(streaming.PREDICTIONS), (streaming.query_id(checkpoint), max(under_way)))
                is not None
            ):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"kill {i + 1}: no micro-batch >= {target} to kill within 300 s")
            time.sleep(0.005)
        os.killpg(running.pid, signal.SIGKILL)
        try:
            os.waitpid(running.pid, 0)
        except ChildProcessError:
            pass
        landed.append((max(under_way), "after its write" if after_write else "as it started"))
    running = spark_server.ensure(doomed, say=lambda l: None)
    lakehouse = Lakehouse(lspark.attach(running.url), env)
    streaming.run(lakehouse, model_cfg, streaming.AVAILABLE_NOW, say=lambda l: None)
    out = lakehouse.read(env.table(streaming.PREDICTIONS)).select(SOURCE.id).toPandas()[SOURCE.id]
    incoming = set(lakehouse.read(env.table(SOURCE.table)).select(SOURCE.id).toPandas()[SOURCE.id])
    bootstrap, topic = streaming.kafka_target(env, say=lambda l: None)
    sent = pd.Series([key for key, _ in kafka.read(bootstrap, topic, streaming.query_id(checkpoint))], dtype=object)
    spark_server.stop(doomed.home, say=lambda l: None)
    if not was_running:
        kafka_server.stop(env.home, say=lambda l: None)  # the broker this benchmark started
    return {
        "fed": fed,
        "kills": landed,
        "lost": len(incoming - set(out)),
        "duplicated": len(out) - out.nunique(),
        "kafka_lost": len(set(out) - set(sent)),
        "kafka_duplicated": len(sent) - sent.nunique(),
    }


def _throughput(lakehouse, model_cfg, start, days) -> None:
    print(f"## Throughput: {days} days of arrivals\n\n| how | rows | seconds | rows/s |\n|---|---:|---:|---:|")
    results = throughput(lakehouse, model_cfg, start, days)
    for label, rows, seconds in results:
        print(f"| {label} | {rows} | {seconds:.1f} | {rows / seconds:,.0f} |")
    batch_rate = results[-1][1] / results[-1][2]
    print(
        "\nratio to batch inference: "
        + ", ".join(f"{label}: {rows / seconds / batch_rate:.2f}" for label, rows, seconds in results[:-1])
    )


def _latency(lakehouse, model_cfg, start, hours) -> None:
    found = latency(lakehouse, model_cfg, start + dt.timedelta(hours=5), hours)  # from the first departures
    print(
        f"\n## Latency, 1 s trigger: {found['rows']} rows in {found['commits']} feed commits over "
        f"{found['seconds']:.1f} s ({found['rows'] / found['seconds']:,.0f} rows/s sustained): "
        f"arrived -> committed p50 {found['p50']:.1f} s, p99 {found['p99']:.1f} s"
    )


def _kills(env, model_cfg, start, times) -> None:
    killed = kills(env, model_cfg, start, times)
    print(
        f"\n## Kill and restart: {len(killed['kills'])} SIGKILLs of the Spark server mid-batch over {killed['fed']} "
        f"arrivals ({'; '.join(f'micro-batch {b} {w}' for b, w in killed['kills'])}): "
        f"rows lost {killed['lost']}, rows duplicated {killed['duplicated']}; in Kafka, records lost "
        f"{killed['kafka_lost']}, records duplicated {killed['kafka_duplicated']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default="/tmp/lakehouse-bench-streaming")
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--latency-hours", type=int, default=24)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument(
        "--parts", nargs="+", choices=["throughput", "latency", "kills"], default=["throughput", "latency", "kills"]
    )
    args = parser.parse_args()
    lakehouse = prod_lakehouse(args.home, "bench-streaming")
    env = lakehouse.env
    model_cfg = config.load_model_config()
    start = dt.datetime(2013, 10, 1)

    if "throughput" in args.parts:
        _throughput(lakehouse, model_cfg, start, args.days)
    if "latency" in args.parts:
        _latency(lakehouse, model_cfg, start, args.latency_hours)
    if "kills" in args.parts:
        _kills(env, model_cfg, start, args.kills)


if __name__ == "__main__":
    main()
