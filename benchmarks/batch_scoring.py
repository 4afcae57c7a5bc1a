"""Batch scoring from keys at scale: this project's Spark path against pandas on the whole frame.

    python benchmarks/batch_scoring.py [--home DIR] [--rows 1000000 5000000]

The lakehouse at --home needs prod's feature tables and a Champion (a first `run_pipeline.py
--env prod`, unmeasured, makes them if missing). For each row count, the spine is prod's
336,776 real flight keys repeated (`flight_id`, `origin`, `sched_dep_ts`), so every lookup hits.

- **ours**: `inference.predict` on the Spark server (point-in-time lookups of every feature,
  the Champion as a Spark UDF), written to a Delta table: rows/s end to end from the keys,
  and the peak RSS of this process plus the Spark server and its Python workers.
- **pandas**: the same rows' features already in one pandas frame (the lookups done once for
  the 336,776 keys, then repeated), scored by the Champion's pyfunc `predict` on the whole
  frame, in a child process: rows/s of the predict call alone, and the child's peak RSS.
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

from lib import feature_store, inference, registry
from lib import spark as lspark
from lib.catalog import Lakehouse
from prod_lakehouse import prod_lakehouse
from lib.features import KEY, TIMESTAMP



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


def ours(lakehouse: Lakehouse, champion, rows: int, server_pid: int) -> tuple[float, float]:
    keys = lakehouse.read(lakehouse.env.table("flight_features")).select(KEY, "origin", TIMESTAMP)
    copies = -(-rows // keys.count())
    spine = keys.crossJoin(lakehouse.spark.range(copies).withColumnRenamed("id", "_copy")).limit(rows).drop("_copy")
    with Peak([os.getpid(), server_pid]) as peak:
        began = time.monotonic()
        lakehouse.write(inference.predict(lakehouse, spine, champion, 0.5, registry.CHAMPION),
                        lakehouse.env.table("bench_scores"))
        elapsed = time.monotonic() - began
    assert lakehouse.read(lakehouse.env.table("bench_scores")).count() == rows
    return rows / elapsed, peak.peak / 2**30


def _pandas_child(frame_path: str, uri: str, rows: int, out) -> None:
    import mlflow
    import pandas as pd

    model = mlflow.pyfunc.load_model(uri)
    base = pd.read_parquet(frame_path)
    frame = pd.concat([base] * -(-rows // len(base)), ignore_index=True).iloc[:rows]
    began = time.monotonic()
    predictions = model.predict(frame)
    out.put((len(predictions), time.monotonic() - began))


def reference(lakehouse: Lakehouse, champion, rows: int, folder: Path) -> tuple[float, float]:
    from mlflow.models import Model

    frame_path = folder / "features.parquet"
    if not frame_path.exists():
        info = Model.load(champion.uri)
        lookups = [feature_store.FeatureLookup.from_dict(d) for d in info.metadata["feature_lookups"]]
        keys = lakehouse.read(lakehouse.env.table("flight_features")).select(KEY, "origin", TIMESTAMP)
        lspark.to_pandas(feature_store.lookup_features(lakehouse, keys, lookups)).to_parquet(frame_path)
    queue = multiprocessing.get_context("spawn").Queue()
    child = multiprocessing.get_context("spawn").Process(
        target=_pandas_child, args=(str(frame_path), registry.artifact_uri(champion), rows, queue))
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
    champion = registry.require_alias(env.model_name, registry.CHAMPION)
    server_pid = json.loads((env.home / "spark" / "server.json").read_text())["pid"]
    ours(lakehouse, champion, 100_000, server_pid)  # warm: the model loaded in the server's workers
    print("| rows | ours rows/s | ours peak GiB | pandas rows/s | pandas peak GiB | ratio (rows/s) |\n|---:|---:|---:|---:|---:|---:|")
    for rows in args.rows:
        ours_rate, ours_peak = ours(lakehouse, champion, rows, server_pid)
        ref_rate, ref_peak = reference(lakehouse, champion, rows, Path(args.home))
        print(f"| {rows:,} | {ours_rate:,.0f} | {ours_peak:.2f} | {ref_rate:,.0f} | {ref_peak:.2f} | "
              f"{ours_rate / ref_rate:.2f} |", flush=True)


if __name__ == "__main__":
    main()
