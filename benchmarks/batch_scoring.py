"""Batch scoring from keys at scale: this project's Spark path against pandas on the whole frame.

    python benchmarks/batch_scoring.py [--home DIR] [--rows 1000000 5000000]

The lakehouse at --home needs prod's feature tables and a Champion (a first `run_pipeline.py
--env prod`, unmeasured, makes them if missing). For each row count, the spine is prod's
336,776 real flight keys repeated (`flight_id`, `origin`, `sched_dep_ts`), so every lookup hits.

- **ours**: `inference.predict` on the Spark server (point-in-time lookups of every feature,
  the Champion as a Spark UDF), written to a Delta table: rows/s end to end from the keys,
  and the peak RSS of this process plus the Spark server and its Python workers. Where the
  time goes: before the timed run, the same plan is run to Spark's `noop` sink up to the
  lookups, then up to scoring (so the timed run finds the files in the OS's cache).
- **pandas from keys** (the issue's reference): in a child process, the same spine as one
  pandas frame, its features looked up point in time with `pandas.merge_asof` (the same rule:
  the newest row at or before the flight's time, weather no older than 3 hours), then the
  Champion's pyfunc `predict` on the whole frame: rows/s of lookups plus predict, the
  child's peak RSS.
- **pandas predict only**: the same, with the features given (looked up before the clock starts).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import threading
import time
from pathlib import Path

import psutil
from prod_lakehouse import prod_lakehouse

from lib.core import names
from lib.core.config import load_model_config
from lib.features import store as feature_store
from lib.inference import batch as inference
from lib.platform import registry
from lib.platform.catalog import Lakehouse
from lib.platform.spark import builder as lspark

SPINE = load_model_config().spine  # the flights': flight_features by flight_id at sched_dep_ts
KEY, TIMESTAMP = SPINE.id, SPINE.timestamp


def _tree_rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class Peak:
    """The peak RSS of some process trees, sampled every 0.2 s while in the `with` block."""

    def __init__(self, pids: list[int]):
        self.pids, self.peak, self._stop = pids, 0, threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss(self.pids))
            time.sleep(0.2)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _lookups(lakehouse: Lakehouse, champion) -> list[feature_store.FeatureLookup]:
    from mlflow.models import Model

    info = Model.load(registry.artifact_uri(champion).removeprefix("file://"))
    return [feature_store.FeatureLookup.from_dict(d) for d in info.metadata["feature_lookups"]]


def ours(lakehouse: Lakehouse, champion, rows: int, server_pid: int) -> dict[str, float]:
    """Rows/s and peak GiB end to end, and the seconds of the lookups alone and with scoring."""
    keys = lakehouse.read(lakehouse.env.table("flight_features")).select(KEY, "origin", TIMESTAMP)
    copies = -(-rows // keys.count())
    spine = keys.crossJoin(lakehouse.spark.range(copies).withColumnRenamed("id", "_copy")).limit(rows).drop("_copy")
    out: dict[str, float] = {}
    for part, plan in [
        ("lookups_s", lambda: feature_store.lookup_features(lakehouse, spine, _lookups(lakehouse, champion), inference.MISSES)),
        ("scored_s", lambda: inference.predict(lakehouse, spine, champion, 0.5, names.CHAMPION, entity=SPINE)),
    ]:
        began = time.monotonic()
        plan().write.format("noop").mode("overwrite").save()
        out[part] = time.monotonic() - began
    with Peak([os.getpid(), server_pid]) as peak:
        began = time.monotonic()
        lakehouse.write(
            inference.predict(lakehouse, spine, champion, 0.5, names.CHAMPION, entity=SPINE), lakehouse.env.table("bench_scores")
        )
        elapsed = time.monotonic() - began
    assert lakehouse.read(lakehouse.env.table("bench_scores")).count() == rows
    return {**out, "total_s": elapsed, "rows_s": rows / elapsed, "peak": peak.peak / 2**30}


def _pandas_child(folder: str, uri: str, rows: int, from_keys: bool, out) -> None:
    import mlflow
    import pandas as pd

    model = mlflow.pyfunc.load_model(uri)
    flights = pd.read_parquet(Path(folder) / "flight_features.parquet")
    weather = pd.read_parquet(Path(folder) / "weather_features.parquet")
    if from_keys:
        keys = flights[[KEY, "origin", TIMESTAMP]]
        spine = pd.concat([keys] * -(-rows // len(keys)), ignore_index=True).iloc[:rows]
    else:
        base = _pandas_lookups(flights[[KEY, "origin", TIMESTAMP]], flights, weather)
        frame = pd.concat([base] * -(-rows // len(base)), ignore_index=True).iloc[:rows]
    began = time.monotonic()
    if from_keys:
        frame = _pandas_lookups(spine, flights, weather)
    predictions = model.predict(frame)
    out.put((len(predictions), time.monotonic() - began))


def _pandas_lookups(spine, flights, weather):
    """The features point in time, as `feature_store.lookup_features` finds them, by merge_asof."""
    import pandas as pd

    frame = pd.merge_asof(
        spine.sort_values(TIMESTAMP, kind="stable"),
        flights.drop(columns="origin").rename(columns={TIMESTAMP: "_at"}).sort_values("_at"),
        left_on=TIMESTAMP,
        right_on="_at",
        by=KEY,
    )
    return pd.merge_asof(
        frame,
        weather.sort_values("observed_at"),
        left_on=TIMESTAMP,
        right_on="observed_at",
        by="origin",
        tolerance=pd.Timedelta(hours=3),
    )


def reference(lakehouse: Lakehouse, champion, rows: int, folder: Path, from_keys: bool) -> tuple[float, float]:
    for table in ("flight_features", "weather_features"):
        if not (folder / f"{table}.parquet").exists():
            lspark.to_pandas(lakehouse.read(lakehouse.env.table(table))).to_parquet(folder / f"{table}.parquet")
    queue = multiprocessing.get_context("spawn").Queue()
    child = multiprocessing.get_context("spawn").Process(
        target=_pandas_child, args=(str(folder), registry.artifact_uri(champion), rows, from_keys, queue)
    )
    child.start()
    with Peak([child.pid]) as peak:
        scored, elapsed = queue.get()
        child.join()
    assert scored == rows
    return rows / elapsed, peak.peak / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default="/tmp/lakehouse-bench-batch")
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    args = parser.parse_args()
    lakehouse = prod_lakehouse(args.home, "bench-batch")
    env = lakehouse.env
    champion = registry.require_alias(env.model_name, names.CHAMPION)
    server_pid = json.loads((env.home / "spark" / "server.json").read_text())["pid"]
    ours(lakehouse, champion, 100_000, server_pid)  # warm: the model loaded in the server's workers
    print(
        "| rows | ours rows/s | ours peak GiB | ours s: to the lookups / to scoring / end to end "
        "| pandas from keys rows/s | its peak GiB | pandas predict only rows/s | its peak GiB "
        "| ratio to pandas from keys | ratio to predict only |\n|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"
    )
    for rows in args.rows:
        mine = ours(lakehouse, champion, rows, server_pid)
        keyed_rate, keyed_peak = reference(lakehouse, champion, rows, Path(args.home), from_keys=True)
        only_rate, only_peak = reference(lakehouse, champion, rows, Path(args.home), from_keys=False)
        print(
            f"| {rows:,} | {mine['rows_s']:,.0f} | {mine['peak']:.2f} | {mine['lookups_s']:.1f} / "
            f"{mine['scored_s']:.1f} / {mine['total_s']:.1f} | {keyed_rate:,.0f} | {keyed_peak:.2f} | "
            f"{only_rate:,.0f} | {only_peak:.2f} | {mine['rows_s'] / keyed_rate:.2f} | "
            f"{mine['rows_s'] / only_rate:.2f} |",
            flush=True,
        )
    print(
        "after the runs, RSS GiB:",
        {
            f"{p.name()} {p.pid}": round(p.memory_info().rss / 2**30, 2)
            for p in [psutil.Process(server_pid), *psutil.Process(server_pid).children(recursive=True)]
        },
    )


if __name__ == "__main__":
    main()
