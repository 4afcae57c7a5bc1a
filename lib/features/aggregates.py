"""Time-windowed aggregate features, point in time: a feature table with one row per spine row.

Each aggregate of conf/model.yml (`feature_tables.<t>.aggregates`) is `function(value)` over the
events of a source that share the spine row's `by` key and became known (`known_at`) in
[timestamp - window, timestamp): strictly before the row's own time. An event learnt at the very
instant of a row is not known to a prediction made for that instant.

One Spark pass per aggregate and no join: the events and the spine rows are unioned per `by`
key, ordered by their time in microseconds, and each spine row aggregates the events' values of
the range (-window, -1 microsecond) before it (spine rows carry no value, so they count for
nothing). A spine row with a null `by` column or timestamp, or without events, gets null (0 for
`count`); an event with a null key, time or value counts for nothing.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from functools import reduce

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, Window, WindowSpec
from pyspark.sql import functions as F

from lib.core.config.aggregates import Aggregate
from lib.core.errors import SourceDataError, first_line

_US, _VALUE, _SIDE = "_agg_us", "_agg_value", "_agg_side"  # working columns, dropped before the end
_EPOCH = "TIMESTAMP_NTZ'1970-01-01 00:00:00'"


def micros(ts: Column) -> Column:
    """A timestamp as microseconds since 1970-01-01 on its wall clock: time zone free, since the
    point-in-time lookups compare timestamps as timestamp_ntz too."""
    return F.timestamp_diff("MICROSECOND", F.expr(_EPOCH), ts.cast("timestamp_ntz"))


def _aggregate(function: str, frame: WindowSpec) -> Column:
    value = F.col(_VALUE)
    if function == "last":  # the value of the latest event (the largest value among events of one instant)
        return F.max(F.when(value.isNotNull(), F.struct(F.col(_US), value))).over(frame)[_VALUE]
    return {"avg": F.avg, "sum": F.sum, "count": F.count, "min": F.min, "max": F.max}[function](value).over(frame)


def events(source: DataFrame, aggregate: Aggregate) -> DataFrame:
    """The source's events of an aggregate: its `by` columns, when each became known, its value."""
    rows = source.where(F.expr(aggregate.filter)) if aggregate.filter else source
    value = F.expr(aggregate.value) if aggregate.value is not None else F.lit(1)
    return (
        rows.select(*aggregate.by, micros(F.expr(aggregate.known_at)).alias(_US), value.alias(_VALUE))
        .where(_placed(aggregate.by))
        .withColumn(_SIDE, F.lit(0))
    )


def _placed(by: list[str]) -> Column:
    """A row has a time and a whole key: a null never matches (as in a join)."""
    return reduce(operator.and_, [F.col(c).isNotNull() for c in [_US, *by]])


def add(rows: DataFrame, timestamp: str, name: str, aggregate: Aggregate, source: DataFrame) -> DataFrame:
    """`rows` (spine rows) with the column `name`: the aggregate over the source's events known in
    [timestamp - window, timestamp) with the row's `by` key."""
    spine = rows.withColumn(_US, micros(F.col(timestamp))).withColumn(_SIDE, F.lit(1))
    frame = Window.partitionBy(*aggregate.by).orderBy(_US).rangeBetween(-aggregate.seconds * 1_000_000, -1)
    value = F.when(_placed(aggregate.by), _aggregate(aggregate.function, frame))
    if aggregate.function == "count":
        value = F.coalesce(value, F.lit(0))
    return (
        events(source, aggregate)
        .unionByName(spine, allowMissingColumns=True)
        .withColumn(name, value)
        .where(F.col(_SIDE) == 1)
        .select(*rows.columns, name)
    )


def build(
    spine: DataFrame,
    spine_id: str,
    spine_timestamp: str,
    aggregates: Mapping[str, Aggregate],
    sources: Mapping[str, DataFrame],
    where: str = "aggregates",
) -> DataFrame:
    """The aggregates table: per spine row its id, its timestamp and each aggregate's value.

    Args:
        spine: the spine table's rows (its id, timestamp and every aggregate's `by` columns).
        aggregates: output column -> its declaration.
        sources: source name -> its rows (with the derived columns the aggregates use).
        where: where the table is declared, as errors name it (e.g. `model.yml feature_tables.history`).

    Raises SourceDataError (one line, naming the aggregate) when an aggregate names an unknown
    source, or a column or expression Spark cannot resolve over its source or the spine.
    """
    by = list(dict.fromkeys(c for a in aggregates.values() for c in a.by))
    try:
        out = spine.select(spine_id, spine_timestamp, *[c for c in by if c not in (spine_id, spine_timestamp)])
        out.schema  # noqa: B018 - analysed now (lazily over Spark Connect otherwise)
    except AnalysisException as exc:
        raise SourceDataError(f"{where}: a `by` column is not a column of the spine table: {first_line(exc)}") from exc
    for name, aggregate in aggregates.items():
        if aggregate.source not in sources:
            raise SourceDataError(f"{where}.aggregates.{name}.source: {aggregate.source!r} is not a source the tables read")
        try:
            out = add(out, spine_timestamp, name, aggregate, sources[aggregate.source])
            out.schema  # noqa: B018 - analyse now, to name the aggregate whose SQL does not resolve
        except AnalysisException as exc:
            raise SourceDataError(f"{where}.aggregates.{name}: does not resolve: {first_line(exc)}") from exc
    return out.select(spine_id, spine_timestamp, *aggregates)
