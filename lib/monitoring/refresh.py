"""Monitoring: Lakehouse Monitoring's InferenceLog profile of a table of predictions.

A monitor (conf/monitors.yml) names the table, its timestamp, model id, prediction and label
columns, granularities, slicing expressions and baseline table. A refresh writes
`<table>_profile_metrics` (one row per window x granularity x model x slice x column, plus
`:table` rows carrying the model quality) and `<table>_drift_metrics` (each window against the
one before it, CONSECUTIVE, and against its model's baseline, BASELINE), with the column names
of Databricks' tables, so a query written for one runs on the other.

Spark hands the rows to lib/monitoring/sketch.py, partition by partition, which sums them into one
sketch per window, model, slice and column; only sketches leave Spark, not rows. The statistics
are computed from the merged sketches for all groups at once (lib/monitoring/metrics.py,
lib/monitoring/drift.py): exact on columns whose values are all cell edges (up to 1,024 distinct values
in the refresh's sample), binned on 256 quantile cells beyond.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import functools
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lib.core.errors import ConfigError, first_line
from lib.monitoring import custom_metrics, metrics, sketch
from lib.monitoring.baseline import baseline_rows
from lib.monitoring.monitors import _SECONDS, TABLE, Monitor
from lib.platform.spark.builder import to_pandas

LOCAL_ROWS = 200_000  # a refresh reading at most about this many rows sketches them in the driver


COMPACT_FILES = 8  # a metric table of more files is compacted after a refresh


def windowed(df: DataFrame, timestamp_col: str, granularities: list[str]) -> DataFrame:
    """Each row once per granularity, with `granularity`, `window_start` and `window_end`.

    Windows are aligned as Databricks aligns them: days at midnight, weeks on Mondays, months
    on the 1st (in the session time zone, UTC here).
    """
    ts = F.col(timestamp_col).cast("timestamp")
    parts = []
    for g in granularities:
        number, unit = g.split()
        unit = unit.rstrip("s")
        if unit in ("month", "year"):
            start = F.date_trunc(unit, ts)
            end = F.add_months(start, int(number) * (12 if unit == "year" else 1)).cast("timestamp")
        else:  # fixed lengths: counted from the epoch (weeks from Monday 1970-01-05)
            length = int(number) * _SECONDS[unit]
            offset = 4 * _SECONDS["day"] if unit == "week" else 0
            first = F.floor((F.unix_seconds(ts) - offset) / length) * length + offset
            start, end = F.timestamp_seconds(first), F.timestamp_seconds(first + length)
        parts.append(
            F.struct(
                F.lit(g).alias("granularity"),
                start.cast("timestamp_ntz").alias("window_start"),
                end.cast("timestamp_ntz").alias("window_end"),
            )
        )
    return df.withColumn("_w", F.explode(F.array(*parts))).select("*", "_w.*").drop("_w")


def slice_structs(slicing_exprs: list[str]) -> list:
    """(slice_key, slice_value) per row: the whole table (both null), then one per expression."""
    slices = [F.struct(F.lit(None).cast("string").alias("slice_key"), F.lit(None).cast("string").alias("slice_value"))]
    return slices + [F.struct(F.lit(e).alias("slice_key"), F.expr(e).cast("string").alias("slice_value")) for e in slicing_exprs]


def kinds(df: DataFrame, monitor: Monitor) -> dict[str, str]:
    """The profiled columns and their Spark types: every column but the timestamp, model id
    and excluded ones."""
    skip = {monitor.timestamp_col, monitor.model_id_col, "model_id", *monitor.exclude_columns}
    return {f.name: f.dataType.simpleString() for f in df.schema.fields if f.name not in skip}


def monitored_rows(lakehouse, env, monitor: Monitor, as_of: dt.date) -> DataFrame:
    """The monitored table with `model_id` and, where labels arrive apart, the labels that had
    arrived by as_of (rows scheduled before it)."""
    rows = lakehouse.read(env.table(monitor.table_name))
    if monitor.labels_table:
        labels = (
            lakehouse.read(env.table(monitor.labels_table))
            .where(F.col(monitor.timestamp_col) < F.lit(as_of))
            .select(*monitor.label_key, monitor.label_col)
        )
        rows = rows.drop(monitor.label_col).join(labels, monitor.label_key, "left")
    return rows.withColumn("model_id", F.col(monitor.model_id_col).cast("string"))


def refresh(
    lakehouse, env, monitor: Monitor, as_of: dt.date, decision_threshold: float, full: bool = False, say=print
) -> dict[str, Any]:
    """Recompute the windows that changed since the last refresh; write both metric tables.

    A window changed when its rows per model or its labelled rows differ from what the profile
    table recorded (new predictions, a re-scored period, labels that arrived). Its neighbour
    after it is re-compared too (CONSECUTIVE drift). Each table is replaced window by window in
    one Delta transaction; `full` recomputes every window.
    """
    rows = monitored_rows(lakehouse, env, monitor, as_of)
    check(lakehouse.spark, monitor, rows)  # before anything is written
    columns = kinds(rows, monitor)
    windows = windowed(rows, monitor.timestamp_col, monitor.granularities)
    labelled = (
        F.count(F.when(F.col(monitor.label_col).isNotNull() & F.col(monitor.prediction_col).isNotNull(), 1))
        if monitor.label_col
        else F.lit(0)
    )
    counts = windows.groupBy(*metrics.GROUP).agg(F.count(F.lit(1)).alias("count"), labelled.alias("labelled_count"))
    profile_table, drift_table = monitor.output(env, "profile"), monitor.output(env, "drift")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # two Spark jobs at once, on two cores
        current = pool.submit(to_pandas, counts)
        recorded = None if full or not lakehouse.exists(profile_table) else pool.submit(_recorded, lakehouse.read(profile_table))
        current, recorded = current.result(), recorded and recorded.result()
    changed = metrics.changed_windows(current, recorded)
    if changed.empty:
        say(f"{profile_table}: every window is current ({len(current)} window x model rows)")
        return {"profile_table": profile_table, "drift_table": drift_table, "windows": 0}
    compared, needed = metrics.with_neighbours(changed, current)
    selected = rows.where(_within(monitor.timestamp_col, needed))
    # The baselines of the models in the windows compared (not of every model ever scored).
    in_compared = current.assign(window_start=pd.to_datetime(current["window_start"])).merge(
        compared[["granularity", "window_start"]], on=["granularity", "window_start"]
    )
    models = sorted(set(in_compared["model_id"]))
    base_rows = baseline_rows(lakehouse, env, monitor, models)
    base_table = None if base_rows is None else _columns(base_rows, monitor, columns, windows=False).toArrow()
    # About as many rows as `selected` holds: the needed windows of the granularity covering most.
    in_needed = current.assign(window_start=pd.to_datetime(current["window_start"])).merge(
        needed[["granularity", "window_start"]], on=["granularity", "window_start"]
    )
    n_rows = int(in_needed.groupby("granularity")["count"].sum().max())
    spec, merged, keys = sketch_rows(selected, monitor, columns, decision_threshold, n_rows, base_table, needed)
    profiles = custom_metrics.merge(
        metrics.profile_rows(merged, spec, columns, keys, as_of),
        custom_metrics.aggregate(
            windowed(selected, monitor.timestamp_col, monitor.granularities),
            monitor,
            metrics.GROUP,
            slice_structs(monitor.slicing_exprs),
        ),
        metrics.GROUP,
    )
    baseline = base_keys = None
    base_present: list[str] = []  # the profiled columns the baseline has
    if base_rows is not None and base_table is not None and base_table.num_rows:  # base_table is None when base_rows is
        base_present = _present(base_rows, columns)
        baseline = sketch.merge(sketch.partial(base_table, replace(spec, granularities=[])), spec)
        base_keys = metrics.group_keys(baseline.groups, [], monitor.slicing_exprs)
        base_profiles = metrics.profile_rows(baseline, spec, columns, base_keys, as_of, "BASELINE")
        base_profiles = base_profiles[base_profiles["column_name"].isin([TABLE, *base_present])]
        base_profiles = custom_metrics.merge(
            base_profiles,
            custom_metrics.aggregate(base_rows, monitor, ["model_id"], slice_structs(monitor.slicing_exprs)),
            ["model_id"],
        )
        profiles = pd.concat([profiles, base_profiles], ignore_index=True)
    drifts = metrics.drift_rows(merged, keys, baseline, base_keys, spec, columns, compared)
    if baseline is not None and not drifts.empty:
        absent = set(columns) - set(base_present)
        drifts = drifts[~((drifts["drift_type"] == "BASELINE") & drifts["column_name"].isin(absent))]
    profile_fields = metrics.PROFILE_FIELDS + custom_metrics.fields(monitor.custom_metrics, ("AGGREGATE",))
    models_in = ", ".join(f"'{m}'" for m in models)
    with contextlib.ExitStack() as stack:
        profile_frame = custom_metrics.derive(
            to_spark(lakehouse, stack, with_window(profiles), profile_fields), monitor.custom_metrics
        )
        drift_frame = custom_metrics.drift(
            to_spark(lakehouse, stack, drifts, metrics.DRIFT_FIELDS), profile_frame, monitor.custom_metrics
        )
        # The two writes at once: each is one Spark task (one staged file), and there are two cores.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            writes = [
                pool.submit(
                    _replace,
                    lakehouse,
                    profile_frame,
                    profile_table,
                    pd.concat([changed, needed]),
                    full,
                    f"log_type = 'BASELINE' AND model_id IN ({models_in})" if models else None,
                ),
                pool.submit(_replace, lakehouse, drift_frame, drift_table, pd.concat([changed, compared]), full),
            ]
            for write in writes:
                write.result()
    say(
        f"{profile_table}: {len(needed)} windows recomputed ({len(changed)} changed), {len(profiles)} profile rows; "
        f"{drift_table}: {len(drifts)} drift rows"
    )
    return {"profile_table": profile_table, "drift_table": drift_table, "windows": len(needed)}


def _within(timestamp_col: str, windows: pd.DataFrame):
    """Rows whose timestamp falls in one of the windows (their time ranges merged)."""
    ranges = windows[["window_start", "window_end"]].apply(pd.to_datetime).sort_values("window_start")
    merged: list[list] = []
    for start, end in ranges.itertuples(index=False):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    ts = F.col(timestamp_col).cast("timestamp_ntz")
    condition = F.lit(False)
    for start, end in merged:
        condition = condition | (
            (ts >= F.lit(start.to_pydatetime()).cast("timestamp_ntz")) & (ts < F.lit(end.to_pydatetime()).cast("timestamp_ntz"))
        )
    return condition


def _present(base: DataFrame, columns: dict[str, str]) -> list[str]:
    return [c for c in columns if c in base.columns]


def _slice_columns(monitor: Monitor, columns: dict[str, str]) -> tuple[str, ...]:
    """The column holding each slicing expression's values in what the sketch reads: a profiled
    string column itself (not read twice), else `_slice_<i>`."""
    return tuple(e if columns.get(e) == "string" else f"_slice_{i}" for i, e in enumerate(monitor.slicing_exprs))


def _columns(df: DataFrame, monitor: Monitor, columns: dict[str, str], windows: bool = True) -> DataFrame:
    """What the sketch reads: the timestamp as `_ts`, model_id, the slices (_slice_columns), the
    profiled columns (a column df lacks as nulls) and the label and prediction."""
    wanted = list(dict.fromkeys([*columns, *filter(None, [monitor.label_col, monitor.prediction_col])]))
    types = {**columns, **{c: "double" for c in wanted if c not in columns}}
    select = [F.col("model_id").cast("string")]
    if windows:
        select.insert(0, F.col(monitor.timestamp_col).cast("timestamp_ntz").alias("_ts"))
    select += [
        F.expr(e).cast("string").alias(name)
        for e, name in zip(monitor.slicing_exprs, _slice_columns(monitor, columns))
        if name != e
    ]
    select += [F.col(c) if c in df.columns else F.lit(None).cast(types[c]).alias(c) for c in wanted]
    return df.select(*select)


def _sample(df: DataFrame, columns: list[str], rows: int):
    """About sketch.SAMPLE_ROWS of the rows (seeded), as Arrow: what the cells' edges come from."""
    fraction = min(1.0, 1.2 * sketch.SAMPLE_ROWS / max(rows, 1))
    sampled = df if fraction >= 1.0 else df.sample(False, fraction, seed=0)
    return sampled.select(*[c for c in columns if c in df.columns]).limit(2 * sketch.SAMPLE_ROWS).toArrow()


def _spec(monitor: Monitor, columns: dict[str, str], threshold: float, samples: list) -> sketch.Spec:
    numeric = {}
    for c, t in columns.items():
        if metrics.is_numeric(t) or c == monitor.prediction_col:
            parts = [s.column(c).to_numpy(zero_copy_only=False) for s in samples if s is not None and c in s.column_names]
            values = np.concatenate([np.asarray(p, dtype=float) for p in parts]) if parts else np.array([])
            numeric[c] = sketch.edges(values)
    return sketch.Spec(
        numeric=numeric,
        categorical=[c for c in columns if c not in numeric],
        granularities=list(monitor.granularities),
        slices=_slice_columns(monitor, columns),
        label=monitor.label_col,
        prediction=monitor.prediction_col if monitor.label_col else None,
        threshold=threshold,
        problem_type="regression" if monitor.problem_type == "PROBLEM_TYPE_REGRESSION" else "classification",
    )


def sketch_rows(
    rows: DataFrame,
    monitor: Monitor,
    columns: dict[str, str],
    threshold: float,
    n_rows: int | None,
    baseline=None,
    windows: pd.DataFrame | None = None,
) -> tuple[sketch.Spec, sketch.Merged, pd.DataFrame]:
    """The cells' spec (edges from the rows and the `baseline` Arrow table), the merged sketches
    of the rows (only the groups of `windows`, when given) and their keys.

    Up to LOCAL_ROWS rows (`n_rows`, about; None when unknown) are read to the driver in one
    Spark job and sketched here: an incremental refresh then costs no edge-sample job and no
    Python workers. More are sketched where they are (mapInArrow) after a sample fixes the edges.
    """
    read = _columns(rows, monitor, columns)
    if n_rows is not None and n_rows <= LOCAL_ROWS:
        local = read.toArrow()
        spec = _spec(monitor, columns, threshold, [local, baseline])
        partials = sketch.partial(local, spec)
    else:
        spec = _spec(monitor, columns, threshold, [_sample(rows, list(columns), n_rows or 0), baseline])
        partials = read.mapInArrow(functools.partial(_partition, spec=spec), sketch.DDL).toArrow()
    merged = sketch.derive(sketch.merge(partials, spec), spec)
    keys = metrics.group_keys(merged.groups, spec.granularities, monitor.slicing_exprs)
    if windows is not None and len(keys):
        wanted = set(zip(windows["granularity"], pd.to_datetime(windows["window_start"])))
        keep = np.array([k in wanted for k in zip(keys["granularity"], keys["window_start"])])
        merged = sketch.select(merged, keep)
        keys = keys[keep].reset_index(drop=True)
    return spec, merged, keys


def _partition(batches, spec: sketch.Spec):
    """mapInArrow: the sketches of one partition's rows."""
    import pyarrow as pa

    batches = list(batches)
    if batches:
        yield from sketch.partial(pa.Table.from_batches(batches), spec).to_batches()


def with_window(profiles: pd.DataFrame) -> pd.DataFrame:
    if "window_start" not in profiles:
        return profiles
    window = [None if pd.isna(s) else {"start": s, "end": e} for s, e in zip(profiles["window_start"], profiles["window_end"])]
    return profiles.assign(window=window)


def to_spark(lakehouse, stack: contextlib.ExitStack, frame: pd.DataFrame, fields: list[tuple[str, str]]) -> DataFrame:
    """The frame as a Spark DataFrame of the fields, cast to their types (staged as Parquet
    until `stack` closes)."""
    staged = stack.enter_context(lakehouse.staged(metrics.to_arrow(frame, fields)))
    return staged.select(*[F.col(f"`{n}`").cast(t).alias(n) for n, t in fields])


def _recorded(table: DataFrame) -> pd.DataFrame:
    return to_pandas(
        table.where(f"column_name = '{TABLE}' AND slice_key IS NULL AND log_type = 'INPUT'").select(
            "granularity", F.col("window.start").alias("window_start"), "model_id", "count", "labelled_count"
        )
    )


def check(spark, monitor: Monitor, rows: DataFrame) -> None:
    """The columns the monitor names exist in its table, and its custom metrics compile: one
    ConfigError line otherwise."""
    where = f"conf/monitors.yml monitor of {monitor.table_name}"
    named = [monitor.timestamp_col, monitor.model_id_col, monitor.prediction_col, *filter(None, [monitor.label_col])]
    missing = [c for c in named if c not in rows.columns]
    if missing:
        raise ConfigError(
            f"{where} names column {missing[0]!r}, which {monitor.table_name} does not have (it has {', '.join(rows.columns)})"
        )
    for expr in monitor.slicing_exprs:
        try:
            rows.select(F.expr(expr)).schema  # noqa: B018 (analyses the expression, reads nothing)
        except Exception as exc:
            first = first_line(exc)
            raise ConfigError(f"{where}: slicing expression {expr!r} does not compile: {first}") from None
    custom_metrics.check(
        spark, monitor, rows.schema, metrics.ddl(metrics.PROFILE_FIELDS), metrics.ddl(metrics.DRIFT_FIELDS), where
    )


def _replace(lakehouse, frame: DataFrame, table: str, windows: pd.DataFrame, full: bool, also: str | None = None) -> None:
    """Replace the rows of these windows (and those matching `also`; every row with `full`)
    in one transaction."""
    if full or not lakehouse.exists(table):
        # Deletion vectors: replacing a window marks its old rows deleted instead of rewriting
        # every file that holds one of them.
        lakehouse.write(frame, table, properties={"delta.enableDeletionVectors": "true"})
        return
    keys = sorted({(g, pd.Timestamp(ts)) for g, ts in zip(windows["granularity"], windows["window_start"])})
    where = [f"(granularity = '{g}' AND window.start = TIMESTAMP_NTZ'{ts.isoformat()}')" for g, ts in keys]
    lakehouse.write(frame, table, replace_where=" OR ".join([*where, *([f"({also})"] if also else [])]))
    lakehouse.compact(table, COMPACT_FILES)  # each incremental refresh adds a file
