"""Feature engineering: flight and weather features, and the delay labels, from raw tables.

Features describe what is known before departure (schedule, route, weather at the origin
in the scheduled hour); labels (arrival delay) arrive after the flight and live in their own
table so that nothing from after a flight's departure can leak into its features.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

WEATHER_COLUMNS = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust",
                   "precip", "pressure", "visib"]
KEY = "flight_id"
TIMESTAMP = "sched_dep_ts"
DELAY_MINUTES = 15


def _flight_id() -> F.Column:
    day = F.format_string("%04d-%02d-%02d", "year", "month", "day")
    return F.concat_ws("_", day, F.concat(F.col("carrier"), F.col("flight").cast("string")), F.col("origin"))


def _sched_dep_ts() -> F.Column:
    return F.make_timestamp_ntz(
        F.col("year"), F.col("month"), F.col("day"),
        (F.col("sched_dep_time") / 100).cast("int"), F.col("sched_dep_time") % 100, F.lit(0),
    )


def build_features(flights: DataFrame, weather: DataFrame) -> DataFrame:
    """One row per scheduled flight: key, scheduled departure time and model features."""
    w = weather.select("origin", "time_hour", *WEATHER_COLUMNS)
    return (
        flights.join(w, ["origin", "time_hour"], "left")
        .select(
            _flight_id().alias(KEY),
            _sched_dep_ts().alias(TIMESTAMP),
            # Numbers are doubles so that a missing value never breaks the model's signature.
            F.col("month").cast("double").alias("month"),
            F.dayofweek(_sched_dep_ts()).cast("double").alias("day_of_week"),
            (F.col("sched_dep_time") / 100).cast("int").cast("double").alias("dep_hour"),
            "carrier", "origin", "dest",
            F.col("distance").cast("double").alias("distance"),
            *[F.col(c).cast("double").alias(c) for c in WEATHER_COLUMNS],
        )
    )


def build_labels(flights: DataFrame) -> DataFrame:
    """The label of each flight that arrived: delayed = arrival delay > 15 minutes.

    Cancelled or diverted flights (no arrival delay) have no label.
    """
    return flights.where(F.col("arr_delay").isNotNull()).select(
        _flight_id().alias(KEY),
        _sched_dep_ts().alias(TIMESTAMP),
        F.col("arr_delay").cast("double").alias("arr_delay"),
        (F.col("arr_delay") > DELAY_MINUTES).cast("int").alias("delayed"),
    )


def in_window(df: DataFrame, start: dt.date, end: dt.date) -> DataFrame:
    """Rows whose scheduled departure falls in [start, end)."""
    return df.where((F.col(TIMESTAMP) >= F.lit(start)) & (F.col(TIMESTAMP) < F.lit(end)))


def labelled(features: DataFrame, labels: DataFrame, start: dt.date, end: dt.date) -> DataFrame:
    """Features joined with their labels for flights in [start, end) that have a label."""
    return in_window(features, start, end).join(labels.select(KEY, "delayed"), KEY, "inner")


def load_labelled(lakehouse, env, window: tuple[dt.date, dt.date]):
    """The labelled flights of a window as pandas, in key order so that training is repeatable."""
    features = lakehouse.read(env.table("flight_features"))
    labels = lakehouse.read(env.table("labels"))
    return labelled(features, labels, *window).orderBy(KEY).toPandas()
