"""How fast the Champion's trees can be evaluated, and what one machine could do with that.

    pip install treelite tl2cgen   # not the project's dependencies: this only measures
    python benchmarks/tree_evaluator.py [--home DIR] [--rows 1000000] [--end-to-end 5000000]

Issue 11's batch target (>= 2x the rows/s of pandas scoring from keys, peak < 3 GB) is bounded
by the tree evaluation that pandas and ours share, scikit-learn's HistGradientBoosting
`predict_proba`. Two measurements:

- **trees**: `predict_proba` on the Champion's encoded features (prod's real rows, repeated),
  2 threads, against the same trees compiled to C by tl2cgen (treelite's compiler, gcc), and
  whether they give the same probabilities. scikit-learn takes a negative category code
  (unknown or missing) as missing, treelite does not, so the compiled trees get those as NaN.
- **end to end**, each in a child process, from the same spine of keys: pandas from keys
  (batch_scoring.py's reference: one `merge_asof` per lookup on the whole frame, the pyfunc's
  `predict`) against a sketch of a single-machine scorer that is not in `lib`: chunks of
  500k keys, each looked up with `merge_asof`, its on-demand features and encoding by the
  model's own pipeline, the compiled trees, and appended to one Parquet file. Rows/s, and
  each child's peak RSS.

The lakehouse at --home must have been through benchmarks/batch_scoring.py (its feature tables
as Parquet, a Champion).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from batch_scoring import KEY, TIMESTAMP, Peak, _pandas_child, _pandas_lookups

from lib.core import config, names
from lib.platform import registry

CHUNK = 500_000


def _compiled_input(delay, frame: pd.DataFrame) -> np.ndarray:
    """The features as the compiled trees take them: encoded, a negative category code as NaN."""
    encoded = np.ascontiguousarray(delay.pipeline[0].transform(delay.features(frame)), dtype=np.float64)
    categorical = np.flatnonzero(delay.pipeline[1].is_categorical_)
    encoded[:, categorical] = np.where(encoded[:, categorical] < 0, np.nan, encoded[:, categorical])
    return encoded


def _chunked_child(folder: str, uri: str, rows: int, library: str, out) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tl2cgen

    delay = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    predictor = tl2cgen.Predictor(library, nthread=2)
    flights = pd.read_parquet(Path(folder) / "flight_features.parquet")
    weather = pd.read_parquet(Path(folder) / "weather_features.parquet")
    keys = flights[[KEY, "origin", TIMESTAMP]]
    spine = pd.concat([keys] * -(-rows // len(keys)), ignore_index=True).iloc[:rows]
    target = Path(folder) / "chunked_scores.parquet"
    began, writer = time.monotonic(), None
    for start in range(0, rows, CHUNK):
        frame = _pandas_lookups(spine.iloc[start : start + CHUNK], flights, weather)
        probability = predictor.predict(tl2cgen.DMatrix(_compiled_input(delay, frame))).reshape(len(frame), -1)[:, -1]
        table = pa.Table.from_pandas(
            frame[[*dict.fromkeys([KEY, TIMESTAMP, *delay.inputs])]].assign(prediction=probability), preserve_index=False
        )
        writer = writer or pq.ParquetWriter(target, table.schema)
        writer.write_table(table)
    writer.close()
    out.put((pq.ParquetFile(target).metadata.num_rows, time.monotonic() - began))


def _in_child(target, args) -> tuple[float, float]:
    """(rows/s, peak GiB) of a child that puts (rows, seconds) on its queue."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=target, args=(*args, queue))
    child.start()
    with Peak([child.pid]) as peak:
        scored, elapsed = queue.get()
        child.join()
    return scored / elapsed, peak.peak / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default="/tmp/lakehouse-bench-batch", help="a lakehouse made by batch_scoring.py")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows for the trees alone")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--end-to-end", type=int, default=5_000_000, help="rows from keys, end to end (0: skip)")
    args = parser.parse_args()
    try:
        import tl2cgen
        import treelite
    except ImportError:
        sys.exit("tree_evaluator: needs treelite and tl2cgen (pip install treelite tl2cgen)")
    home = Path(args.home)
    if not (home / "flight_features.parquet").exists():
        sys.exit(f"tree_evaluator: run benchmarks/batch_scoring.py --home {home} first (it writes the feature tables as Parquet)")
    os.environ["LAKEHOUSE_HOME"] = str(home)
    registry.no_telemetry()
    env = config.load_env("prod")
    registry.configure(env)
    uri = registry.artifact_uri(registry.require_alias(env.model_name, names.CHAMPION))
    delay = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    flights = pd.read_parquet(home / "flight_features.parquet")
    base = _pandas_lookups(flights[[KEY, "origin", TIMESTAMP]], flights, pd.read_parquet(home / "weather_features.parquet"))
    frame = pd.concat([base] * -(-args.rows // len(base)), ignore_index=True).iloc[: args.rows]
    trees = delay.pipeline[1]
    encoded = delay.pipeline[0].transform(delay.features(frame))
    compiled_input = _compiled_input(delay, frame)
    with tempfile.TemporaryDirectory() as tmp:
        library = f"{tmp}/trees.so"
        began = time.monotonic()
        tl2cgen.export_lib(treelite.sklearn.import_model(trees), toolchain="gcc", libpath=library, params={"parallel_comp": 8})
        compile_s = time.monotonic() - began
        predictor = tl2cgen.Predictor(library, nthread=2)
        timings = {"scikit-learn": [], "compiled": []}
        for _ in range(args.repeats):
            began = time.monotonic()
            expected = trees.predict_proba(encoded)[:, 1]
            timings["scikit-learn"].append(time.monotonic() - began)
            began = time.monotonic()
            got = predictor.predict(tl2cgen.DMatrix(compiled_input)).reshape(len(expected), -1)[:, -1]
            timings["compiled"].append(time.monotonic() - began)
        sk, fast = statistics.median(timings["scikit-learn"]), statistics.median(timings["compiled"])
        print(
            f"trees: {args.rows:,} rows, {trees.n_iter_} trees; compiled in {compile_s:.1f} s; "
            f"max |difference| {np.abs(got - expected).max():.1e}"
        )
        print("| evaluator | seconds (median) | rows/s | ratio |\n|---|---:|---:|---:|")
        print(f"| scikit-learn predict_proba | {sk:.2f} | {args.rows / sk:,.0f} | 1.00 |")
        print(f"| tl2cgen compiled | {fast:.2f} | {args.rows / fast:,.0f} | {sk / fast:.2f} |", flush=True)
        if args.end_to_end:
            rows = args.end_to_end
            reference = _in_child(_pandas_child, (str(home), uri, rows, True))
            sketch = _in_child(_chunked_child, (str(home), uri, rows, library))
            print(f"\nend to end, {rows:,} rows from keys:\n| how | rows/s | peak GiB | ratio |\n|---|---:|---:|---:|")
            print(f"| pandas from keys (whole frame, scikit-learn) | {reference[0]:,.0f} | {reference[1]:.2f} | 1.00 |")
            print(
                f"| chunks of {CHUNK:,}, compiled trees, to Parquet | {sketch[0]:,.0f} | {sketch[1]:.2f} | "
                f"{sketch[0] / reference[0]:.2f} |"
            )


if __name__ == "__main__":
    main()
