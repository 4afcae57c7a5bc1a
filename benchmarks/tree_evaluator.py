"""How fast the Champion's trees can be evaluated: scikit-learn against a compiled predictor.

    pip install treelite tl2cgen   # not the project's dependencies: this only measures
    python benchmarks/tree_evaluator.py [--home DIR] [--rows 1000000] [--repeats 3]

The batch target of issue 11 (>= 2x pandas' rows/s) is bounded by the tree evaluation that
pandas and ours share: scikit-learn's HistGradientBoosting `predict_proba`. This measures it
on the Champion's encoded features (prod's real rows, repeated), 2 threads, against the same
trees compiled to C by tl2cgen (treelite's compiler, gcc), and checks they give the same
probabilities. scikit-learn treats a negative category code (unknown or missing) as missing,
treelite does not, so those codes are given to the compiled trees as NaN.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import mlflow
from lib import config, registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default="/tmp/lakehouse-bench-batch", help="a lakehouse made by batch_scoring.py")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    try:
        import tl2cgen
        import treelite
    except ImportError:
        sys.exit("tree_evaluator: needs treelite and tl2cgen (pip install treelite tl2cgen)")
    features = Path(args.home) / "flight_features.parquet"
    if not features.exists():
        sys.exit(f"tree_evaluator: {features} is missing: run benchmarks/batch_scoring.py --home {args.home} first")
    os.environ["LAKEHOUSE_HOME"] = args.home
    registry.no_telemetry()
    env = config.load_env("prod")
    registry.configure(env)
    model = mlflow.pyfunc.load_model(registry.artifact_uri(registry.require_alias(env.model_name, registry.CHAMPION)))
    delay = model.unwrap_python_model()
    from batch_scoring import _pandas_lookups

    flights = pd.read_parquet(features)
    base = _pandas_lookups(flights[["flight_id", "origin", "sched_dep_ts"]], flights,
                           pd.read_parquet(Path(args.home) / "weather_features.parquet"))
    frame = pd.concat([base] * -(-args.rows // len(base)), ignore_index=True).iloc[:args.rows]
    encode, trees = delay.pipeline[0], delay.pipeline[1]
    encoded = np.ascontiguousarray(encode.transform(delay.features(frame)), dtype=np.float64)
    categorical = np.flatnonzero(trees.is_categorical_)
    compiled_input = encoded.copy()
    compiled_input[:, categorical] = np.where(encoded[:, categorical] < 0, np.nan, encoded[:, categorical])
    with tempfile.TemporaryDirectory() as tmp:
        began = time.monotonic()
        tl2cgen.export_lib(treelite.sklearn.import_model(trees), toolchain="gcc", libpath=f"{tmp}/trees.so",
                           params={"parallel_comp": 8})
        compile_s = time.monotonic() - began
        predictor = tl2cgen.Predictor(f"{tmp}/trees.so", nthread=2)
        timings = {"scikit-learn": [], "compiled": []}
        for _ in range(args.repeats):
            began = time.monotonic()
            expected = trees.predict_proba(encoded)[:, 1]
            timings["scikit-learn"].append(time.monotonic() - began)
            began = time.monotonic()
            got = predictor.predict(tl2cgen.DMatrix(compiled_input)).reshape(len(expected), -1)[:, -1]
            timings["compiled"].append(time.monotonic() - began)
    sk, fast = statistics.median(timings["scikit-learn"]), statistics.median(timings["compiled"])
    print(f"{args.rows:,} rows, {trees.n_iter_} trees; compile {compile_s:.1f} s; max |difference| "
          f"{np.abs(got - expected).max():.1e}")
    print("| evaluator | seconds (median) | rows/s | ratio |\n|---|---:|---:|---:|")
    print(f"| scikit-learn predict_proba | {sk:.2f} | {args.rows / sk:,.0f} | 1.00 |")
    print(f"| tl2cgen compiled | {fast:.2f} | {args.rows / fast:,.0f} | {sk / fast:.2f} |")


if __name__ == "__main__":
    main()
