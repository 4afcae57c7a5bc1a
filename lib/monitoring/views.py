"""What a notebook or the dashboard shows of the metric tables: metrics over time, heatmaps, and
the schema of every metric table (what alert rules may name).
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import functions as F

from lib.core import names
from lib.monitoring import alerts, custom_metrics, metrics
from lib.monitoring.monitors import SERVING_FIELDS, TABLE, Monitor, serving_metrics_table
from lib.platform.spark.builder import to_pandas


def metric_schemas(env, monitors: dict[str, Monitor]) -> dict[str, str]:
    """The metric tables an alert may query, by name in the environment's schema -> DDL schema
    (built-in metrics and each monitor's custom ones; the serving metrics; the alert history)."""
    out = {}
    for monitor in monitors.values():
        profile = metrics.PROFILE_FIELDS + custom_metrics.fields(monitor.custom_metrics, ("AGGREGATE", "DERIVED"))
        drift = metrics.DRIFT_FIELDS + custom_metrics.fields(monitor.custom_metrics, ("DRIFT",))
        out[names.profile_metrics_table(monitor.table_name)] = metrics.ddl(profile)
        out[names.drift_metrics_table(monitor.table_name)] = metrics.ddl(drift)
    out[serving_metrics_table(env).split(".")[-1]] = metrics.ddl(SERVING_FIELDS)
    out[alerts.TABLE] = alerts.SCHEMA
    return out


def serving_over_time(lakehouse, table: str | None, granularity: str) -> pd.DataFrame:
    """The serving metrics of one granularity, oldest window first (empty before anything was served)."""
    columns = ["window", "served_entity", "requests", "errors", "error_rate", "p50_ms", "p99_ms"]
    if table is None or not lakehouse.exists(table):
        return pd.DataFrame(columns=columns)
    return to_pandas(
        lakehouse.read(table)
        .where(F.col("granularity") == granularity)
        .select(F.col("window.start").alias("window"), *columns[1:])
        .orderBy("window", "served_entity")
    )


def quality_over_time(lakehouse, table: str, granularity: str, problem_type: str = "PROBLEM_TYPE_CLASSIFICATION") -> pd.DataFrame:
    """Per window and model: rows, labelled rows and the two quality metrics shown for the problem
    type (metrics.SHOWN_QUALITY; the `:table` rows of the whole table)."""
    return to_pandas(
        lakehouse.read(table)
        .where(F.col("granularity") == granularity)
        .where(f"column_name = '{TABLE}' AND slice_key IS NULL AND log_type = 'INPUT'")
        .select(
            F.col("window.start").alias("window"), "model_id", "count", "labelled_count", *metrics.SHOWN_QUALITY[problem_type]
        )
        .orderBy("window", "model_id")
    )


def drift_over_time(
    lakehouse, table: str, granularity: str, statistic: str = "js_distance", drift_type: str = "BASELINE"
) -> pd.DataFrame:
    """A statistic of the whole table's drift, columns x windows (the newest model per window)."""
    rows = to_pandas(
        lakehouse.read(table)
        .where((F.col("granularity") == granularity) & (F.col("drift_type") == drift_type))
        .where(f"slice_key IS NULL AND column_name != '{TABLE}'")
        .select(F.col("window.start").alias("window"), "model_id", "column_name", statistic)
    )
    if rows.empty:
        return rows
    version = pd.to_numeric(rows["model_id"], errors="coerce")  # "10" is newer than "9"
    newest = rows.assign(_v=version).sort_values("_v").drop_duplicates(["window", "column_name"], keep="last")
    return newest.pivot(index="column_name", columns="window", values=statistic).sort_index()


def heatmap(pivot: pd.DataFrame, title: str):
    """A columns x windows heat map (a matplotlib Figure, no display backend needed)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 0.5 * len(pivot.columns) + 3), 0.35 * len(pivot) + 1.8), tight_layout=True)
    ax = fig.add_subplot()
    image = ax.imshow(pivot.to_numpy(dtype=float), aspect="auto", cmap="viridis", vmin=0)
    ax.set_yticks(range(len(pivot)), pivot.index)
    ax.set_xticks(range(len(pivot.columns)), [pd.Timestamp(c).strftime("%m-%d") for c in pivot.columns], rotation=90)
    ax.set_title(title)
    fig.colorbar(image, ax=ax)
    return fig
