"""Custom metrics of a monitor, as Lakehouse Monitoring defines them (Spark SQL expressions).

- AGGREGATE: an aggregate over the rows of each window, model and slice, per input column
  (`:table` for one value over the whole row set). The definition may name `{{input_column}}`,
  `{{prediction_col}}` and `{{label_col}}`. A column of `<table>_profile_metrics`.
- DERIVED: an expression over the other metrics of the same profile row (built-in and custom),
  e.g. `mean_predicted - positive_share`. A column of `<table>_profile_metrics`.
- DRIFT: an expression over the metrics of the two compared profile rows, `{{current_df}}.m`
  and `{{base_df}}.m` (the window, and the one before it or the baseline). A column of
  `<table>_drift_metrics`.

Each definition is compiled by Spark (analysed against the tables' schemas, no data read)
when the monitor is checked, so a typo fails in one line before anything is written.
"""

from __future__ import annotations

import re
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lib.core.errors import ConfigError, first_line
from lib.platform.spark.builder import to_pandas

TABLE = ":table"
_ROW_KEYS = ["slice_key", "slice_value", "column_name"]


class CustomMetric(BaseModel):
    """One `custom_metrics` entry of a monitor."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")
    type: Literal["AGGREGATE", "DERIVED", "DRIFT"]
    definition: str = Field(min_length=1)
    input_columns: list[str] = Field(default_factory=lambda: [TABLE], min_length=1)
    output_data_type: Literal["double", "bigint", "int", "boolean", "string"] = "double"


def of_type(metrics: list[CustomMetric], kind: str) -> list[CustomMetric]:
    return [m for m in metrics if m.type == kind]


def fields(metrics: list[CustomMetric], kinds: tuple[str, ...]) -> list[tuple[str, str]]:
    """(name, type) of the metrics of these kinds: the columns they add to a metric table."""
    return [(m.name, m.output_data_type) for m in metrics if m.type in kinds]


def _sql(definition: str, monitor, column: str) -> str:
    """The definition with its `{{...}}` placeholders filled in for one input column."""
    values = {
        "input_column": f"`{column}`",
        "prediction_col": f"`{monitor.prediction_col}`",
        "label_col": f"`{monitor.label_col}`" if monitor.label_col else "NULL",
    }
    return re.sub(r"\{\{\s*(input_column|prediction_col|label_col)\s*\}\}", lambda m: values[m.group(1)], definition)


def _drift_sql(definition: str) -> str:
    return re.sub(r"\{\{\s*(current_df|base_df)\s*\}\}", r"\1", definition)


def _inputs(metric: CustomMetric, columns: list[str]) -> list[str]:
    return [c for c in metric.input_columns if c == TABLE or c in columns]


def aggregate(rows: DataFrame, monitor, group: list[str], slices: list) -> pd.DataFrame | None:
    """The AGGREGATE metrics per group, slice (`slices`: the monitor's slice structs) and input
    column (one Spark job); None if the monitor has none. Rows: *group, slice_key, slice_value,
    column_name, one column per metric."""
    metrics = of_type(monitor.custom_metrics, "AGGREGATE")
    if not metrics:
        return None
    sliced = rows.withColumn("_slice", F.explode(F.array(*slices))).select("*", "_slice.*").drop("_slice")
    parts = []
    for column in sorted({c for m in metrics for c in _inputs(m, rows.columns)}):
        exprs = [
            F.expr(_sql(m.definition, monitor, column)).cast(m.output_data_type).alias(m.name)
            for m in metrics
            if column in _inputs(m, rows.columns)
        ]
        parts.append(sliced.groupBy(*group, "slice_key", "slice_value").agg(*exprs).withColumn("column_name", F.lit(column)))
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part, allowMissingColumns=True)

    return to_pandas(union)


def merge(profiles: pd.DataFrame, values: pd.DataFrame | None, group: list[str]) -> pd.DataFrame:
    """Profile rows with the AGGREGATE values of the same group, slice and column."""
    if values is None or profiles.empty:
        return profiles
    keys = [*group, *_ROW_KEYS]
    if "window_start" in keys:
        values = values.assign(window_start=pd.to_datetime(values["window_start"]))
        profiles = profiles.assign(window_start=pd.to_datetime(profiles["window_start"]))
    values = values.drop(columns=[c for c in ("window_end",) if c in values and c not in keys])
    return profiles.merge(values, on=keys, how="left")


def derive(profiles: DataFrame, metrics: list[CustomMetric]) -> DataFrame:
    """The DERIVED metrics as columns of the profile rows (null for rows of other columns)."""
    for m in of_type(metrics, "DERIVED"):
        applies = F.col("column_name").isin(m.input_columns)
        profiles = profiles.withColumn(m.name, F.when(applies, F.expr(m.definition)).cast(m.output_data_type))
    return profiles


def drift(drifts: DataFrame, profiles: DataFrame, metrics: list[CustomMetric]) -> DataFrame:
    """The DRIFT metrics as columns of the drift rows: each drift row joined to its window's
    profile row (`current_df`) and to the compared one (`base_df`: the window before it, or the
    model's baseline)."""
    drift_metrics = of_type(metrics, "DRIFT")
    if not drift_metrics:
        return drifts
    d, cur, base = drifts.alias("d"), profiles.alias("current_df"), profiles.alias("base_df")

    def same(other: str) -> F.Column:
        return (
            (F.col(f"{other}.model_id") == F.col("d.model_id"))
            & F.col(f"{other}.column_name").eqNullSafe(F.col("d.column_name"))
            & F.col(f"{other}.slice_key").eqNullSafe(F.col("d.slice_key"))
            & F.col(f"{other}.slice_value").eqNullSafe(F.col("d.slice_value"))
        )

    on_current = (
        same("current_df")
        & (F.col("current_df.log_type") == "INPUT")
        & (F.col("current_df.granularity") == F.col("d.granularity"))
        & (F.col("current_df.window") == F.col("d.window"))
    )
    consecutive = (
        (F.col("d.drift_type") == "CONSECUTIVE")
        & (F.col("base_df.log_type") == "INPUT")
        & (F.col("base_df.granularity") == F.col("d.granularity"))
        & (F.col("base_df.window") == F.col("d.window_cmp"))
    )
    baseline = (F.col("d.drift_type") == "BASELINE") & (F.col("base_df.log_type") == "BASELINE")
    joined = d.join(cur, on_current, "left").join(base, same("base_df") & (consecutive | baseline), "left")
    return joined.select(
        "d.*",
        *[
            F.when(F.col("d.column_name").isin(m.input_columns), F.expr(_drift_sql(m.definition)))
            .cast(m.output_data_type)
            .alias(m.name)
            for m in drift_metrics
        ],
    )


def check(spark, monitor, table_schema, profile_ddl: str, drift_ddl: str, where: str) -> None:
    """Compile every custom metric against empty frames of the tables' schemas (Spark analyses
    the expressions; no data is read): an unknown column or function is one ConfigError line."""
    metrics = monitor.custom_metrics
    if not metrics:
        return
    rows = spark.createDataFrame([], table_schema)
    profile_fields = profile_ddl + "".join(f", `{n}` {t}" for n, t in fields(metrics, ("AGGREGATE", "DERIVED")))
    profiles = spark.createDataFrame([], profile_fields)
    drifts = spark.createDataFrame([], drift_ddl)
    for i, m in enumerate(metrics):
        try:
            if m.type == "AGGREGATE":
                missing = [c for c in m.input_columns if c != TABLE and c not in rows.columns]
                if missing:
                    raise ConfigError(f"input column {missing[0]!r} is not a column of {monitor.table_name}")
                for column in m.input_columns:
                    rows.groupBy().agg(F.expr(_sql(m.definition, monitor, column))).schema  # noqa: B018 (analyses it)
            elif m.type == "DERIVED":
                derive(profiles, [m]).schema  # noqa: B018
            else:
                drift(drifts, profiles, [m]).schema  # noqa: B018
        except ConfigError as exc:
            raise ConfigError(f"{where}.custom_metrics.{i} ({m.name}): {exc}") from None
        except Exception as exc:  # Spark's analysis error: its first line names what is wrong
            first = first_line(exc)
            raise ConfigError(f"{where}.custom_metrics.{i} ({m.name}) does not compile: {first}") from None
