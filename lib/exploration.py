"""Exploration helpers for the dev notebooks: quick looks at production data, read-only."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lib.features import DELAY_MINUTES


def delay_rates(flights: DataFrame, by: str) -> DataFrame:
    """Per value of `by`: arrived flights and the share delayed by more than 15 minutes."""
    arrived = flights.where(F.col("arr_delay").isNotNull())
    return (
        arrived.groupBy(by)
        .agg(F.count("*").alias("flights"),
             F.round(F.avg((F.col("arr_delay") > DELAY_MINUTES).cast("double")), 4).alias("delayed_share"))
        .orderBy(by)
    )
