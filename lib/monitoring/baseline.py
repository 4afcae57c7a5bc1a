"""A model version's baseline: its training set with its predictions, what BASELINE drift compares
each window against (Lakehouse Monitoring's `baseline_table_name`)."""

from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lib.monitoring.monitors import Monitor, load_monitors


def baseline_rows(lakehouse, env, monitor: Monitor, models: list[str]) -> DataFrame | None:
    """The baseline rows of these models (None without a baseline table)."""
    if not models or not monitor.baseline_table_name or not lakehouse.exists(env.table(monitor.baseline_table_name)):
        return None
    return (
        lakehouse.read(env.table(monitor.baseline_table_name))
        .withColumn("model_id", F.col(monitor.model_id_col).cast("string"))
        .where(F.col("model_id").isin(models))
    )


def write_baseline(
    lakehouse, env, frame: pd.DataFrame, model_version: str, monitors: dict[str, Monitor] | None = None
) -> list[str]:
    """Write a model version's training set with its predictions as that version's baseline, in
    every monitor's baseline table (other versions' rows stay); returns the tables written.

    A larger training set is sampled (seeded) down to the monitor's `baseline_max_rows`: drift
    against that many rows tells as much as against all of them, at a fraction of the cost.
    """
    written = []
    for monitor in (load_monitors() if monitors is None else monitors).values():
        table = env.table(monitor.baseline_table_name) if monitor.baseline_table_name else None
        if table is None or table in written:
            continue
        rows = frame if len(frame) <= monitor.baseline_max_rows else frame.sample(monitor.baseline_max_rows, random_state=0)
        rows = rows.assign(**{monitor.model_id_col: str(model_version)})
        lakehouse.write(lakehouse.spark.createDataFrame(rows), table, replace_where=f"{monitor.model_id_col} = '{model_version}'")
        written.append(table)
    return written
