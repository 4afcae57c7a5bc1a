"""Online store publish time: this code vs the reference (the whole-table copy it replaced).

    python benchmarks/online_store.py [--rows 336776] [--repeats 5] [--reference b8e8b6f]

Writes a Delta table shaped like prod's flight_features (string key, timestamp key, two string
and four double features; --rows rows) in a throwaway lakehouse, attached to its own Spark
server as the serve task is. Each repeat publishes it into a fresh store file three ways,
alternating which of the first two goes first:
  - reference: `publish` as of commit --reference (toPandas, per-row strftime, to_sql);
  - copy: this `publish` with force=True (toArrow, Arrow cast to text, executemany);
  - unchanged: this `publish` again, the Delta table not having changed (skipped).
Prints the medians and the ratio to the reference as a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TABLE = "staging.flights.flight_features"


def reference_module(commit: str) -> types.ModuleType:
    """lib/serving/online_store.py as of commit, importable beside the current one."""
    source = subprocess.run(
        ["git", "show", f"{commit}:lib/serving/online_store.py"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout
    module = types.ModuleType("online_store_reference")
    exec(compile(source, f"{commit}:lib/serving/online_store.py", "exec"), module.__dict__)
    return module


def write_table(lakehouse, rows: int) -> None:
    from pyspark.sql import functions as F

    from lib.features.store import PRIMARY_KEYS, TIMESTAMP_KEY

    spark, i = lakehouse.spark, F.col("id")
    ts = F.timestamp_add("MINUTE", i, F.expr("TIMESTAMP_NTZ'2013-01-01 05:00:00'"))
    df = spark.range(rows).select(
        F.concat_ws("_", F.date_format(ts, "yyyy-MM-dd"), F.concat(F.lit("UA"), i.cast("string")), F.lit("EWR")).alias(
            "flight_id"
        ),
        ts.alias("sched_dep_ts"),
        F.element_at(F.array(*map(F.lit, ["UA", "B6", "EV", "DL", "AA"])), (i % 5 + 1).cast("int")).alias("carrier"),
        F.element_at(F.array(*map(F.lit, ["IAH", "MIA", "ATL", "ORD"])), (i % 4 + 1).cast("int")).alias("dest"),
        (i % 12 + 1).cast("double").alias("month"),
        (i % 7 + 1).cast("double").alias("day_of_week"),
        (i % 24).cast("double").alias("dep_hour"),
        (i % 2500 + 80).cast("double").alias("distance"),
    )
    lakehouse.write(df, TABLE)
    lakehouse.set_properties(TABLE, {PRIMARY_KEYS: "flight_id", TIMESTAMP_KEY: "sched_dep_ts"})


def timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=336_776)  # prod's flight_features
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference", default="b8e8b6f", help="commit of the reference online_store.py")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="lakehouse-online-bench-")) / "lakehouse"
    os.environ.update({"LAKEHOUSE_HOME": str(home), "LAKEHOUSE_SPARK_PORT": "0"})
    os.environ.pop("SPARK_REMOTE", None)  # this lakehouse's own server, not a caller's
    from lib.core.config import load_env
    from lib.features.store import FeatureLookup
    from lib.platform.catalog import Lakehouse
    from lib.platform.spark import server as spark_server
    from lib.platform.spark.session import get_spark
    from lib.serving import online_store

    env = load_env("staging")
    reference = reference_module(args.reference)
    spark = None
    try:
        spark = get_spark("bench-online-store", env=env)
        lakehouse = Lakehouse(spark, env)
        write_table(lakehouse, args.rows)
        lookups = [
            FeatureLookup(
                TABLE, ("flight_id",), "sched_dep_ts", ("carrier", "dest", "month", "day_of_week", "dep_hour", "distance")
            )
        ]
        ways = {
            "reference": lambda path: reference.publish(lakehouse, lookups, path),
            "copy": lambda path: online_store.publish(lakehouse, lookups, path, force=True),
        }
        times: dict[str, list[float]] = {"reference": [], "copy": [], "unchanged": []}
        for way in ("reference", "copy"):  # warm-up: the first Spark read of a table is slower
            ways[way](home / f"warm-{way}.db")
        for repeat in range(args.repeats):
            for way in ("reference", "copy") if repeat % 2 == 0 else ("copy", "reference"):
                path = home / f"{way}-{repeat}.db"
                times[way].append(timed(lambda: ways[way](path)))
                if way == "copy":
                    times["unchanged"].append(timed(lambda: online_store.publish(lakehouse, lookups, path)))
            print(
                f"repeat {repeat + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                file=sys.stderr,
                flush=True,
            )
    finally:
        if spark is not None:
            spark.stop()  # before its server goes, or the client retries in vain at exit
        spark_server.stop(env.home, say=lambda line: None)
        shutil.rmtree(home.parent, ignore_errors=True)
    base = statistics.median(times["reference"])
    print(f"\n{args.rows:,} rows, median of {args.repeats}\n\n| publish | seconds | vs reference |\n|---|---:|---:|")
    for way, values in times.items():
        print(f"| {way} | {statistics.median(values):.3f} | {statistics.median(values) / base:.3f}x |")


if __name__ == "__main__":
    main()
