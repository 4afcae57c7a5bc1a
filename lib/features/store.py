"""Feature tables and point-in-time lookups: the Feature Engineering client's contract, locally.

A feature table is a Delta table with primary keys and a timestamp key (declared in
conf/model.yml `feature_tables` and recorded as table properties). A training set, or a
batch to score, starts from a *spine* of keys with a timestamp; each lookup adds one table's
features as they were at the spine's time: the newest row whose timestamp is <= it (and no
older than `lookback_hours`), so no value from after the event leaks in. The logged model
carries its lookups (`FeatureLookup.to_dict`), so scoring needs only the keys.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import reduce
from typing import Any

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lib.core.config.model import FeatureTable, Lookup
from lib.core.errors import LakehouseError
from lib.platform.catalog import Lakehouse

PRIMARY_KEYS = "feature.primary_keys"
TIMESTAMP_KEY = "feature.timestamp_key"


@dataclass(frozen=True)
class FeatureLookup:
    """Which table, joined on which spine columns, gives which feature columns."""

    table: str  # catalog.schema.table
    lookup_key: tuple[str, ...]
    timestamp_lookup_key: str
    features: tuple[str, ...]
    lookback_hours: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lookup_key": list(self.lookup_key), "features": list(self.features)}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> FeatureLookup:
        return FeatureLookup(
            d["table"], tuple(d["lookup_key"]), d["timestamp_lookup_key"], tuple(d["features"]), d.get("lookback_hours")
        )


def lookups(specs: Sequence[Lookup], catalog: str, schema: str) -> list[FeatureLookup]:
    """The configured lookups (conf/model.yml `feature_lookups`), their tables named in `catalog.schema`."""
    return [
        FeatureLookup(
            f"{catalog}.{schema}.{spec.table}",
            tuple(spec.lookup_key),
            spec.timestamp_lookup_key,
            tuple(spec.features),
            spec.lookback_hours,
        )
        for spec in specs
    ]


def check_key(df: DataFrame, name: str, spec: FeatureTable) -> int:
    """Check that a feature table's key (primary keys + timestamp key) is non-null and unique.

    Returns the row count; raises LakehouseError naming how many rows break the key.
    """
    key = [*spec.primary_keys, spec.timestamp_key]
    stats = (
        df.groupBy(*key)
        .count()
        .agg(
            F.sum(F.when(F.col("count") > 1, F.col("count")).otherwise(0)).alias("duplicated"),
            F.sum(F.when(reduce(operator.or_, [F.col(k).isNull() for k in key]), F.col("count")).otherwise(0)).alias("nulls"),
            F.sum("count").alias("rows"),
        )
        .first()
    )
    assert stats is not None, "an aggregate without groups has one row"
    if stats["duplicated"] or stats["nulls"]:
        raise LakehouseError(
            f"feature table {name}: {stats['duplicated'] or 0} rows share a primary key and "
            f"{stats['nulls'] or 0} have a null key ({', '.join(key)}); nothing was written"
        )
    return int(stats["rows"] or 0)


def write_table(lakehouse: Lakehouse, df: DataFrame, name: str, spec: FeatureTable, stamp: dict | None = None) -> None:
    """Replace a feature table (whose key was checked) and record its keys as table properties
    (`stamp`: see Lakehouse.write)."""
    lakehouse.write(df, name, stamp=stamp)
    lakehouse.set_properties(
        name,
        {PRIMARY_KEYS: ",".join(spec.primary_keys), TIMESTAMP_KEY: spec.timestamp_key, "comment": spec.description},
        stamp=stamp,
    )


def as_of_join(
    spine: DataFrame, table: DataFrame, lookup: FeatureLookup, table_keys: list[str], table_ts: str, misses: str | None = None
) -> DataFrame:
    """Add lookup.features to every spine row: the newest table row at or before the spine time
    (nulls if there is none; the spine's `misses` column, if named, then counts one more).

    One pass, no range join and no join back: table rows and spine rows are unioned, sorted by
    time per key, and each spine row takes the last table row seen before it (table rows sort
    before spine rows of the same instant).
    """
    keys = list(lookup.lookup_key)
    found = F.struct(F.col("_ts").alias("_at"), *[F.col(c) for c in lookup.features])
    rows = table.select(
        *[F.col(t).alias(k) for t, k in zip(table_keys, keys)],
        F.col(table_ts).cast("timestamp_ntz").alias("_ts"),
        *lookup.features,
    ).select(*keys, "_ts", found.alias("_found"), F.lit(0).alias("_side"))
    events = spine.withColumn("_ts", F.col(lookup.timestamp_lookup_key).cast("timestamp_ntz")).withColumn("_side", F.lit(1))
    window = Window.partitionBy(*keys).orderBy("_ts", "_side").rowsBetween(Window.unboundedPreceding, Window.currentRow)
    latest = (
        rows.unionByName(events, allowMissingColumns=True)
        .withColumn("_found", F.last("_found", ignorenulls=True).over(window))
        .where("_side = 1")
    )
    if lookup.lookback_hours is not None:
        oldest = F.col("_ts") - F.expr(f"INTERVAL {int(lookup.lookback_hours * 3600)} SECONDS")
        latest = latest.withColumn("_found", F.when(F.col("_found._at") >= oldest, F.col("_found")))
    counted = [] if misses is None else [(F.col(misses) + F.col("_found").isNull().cast("int")).alias(misses)]
    return latest.select(
        *[c for c in spine.columns if c != misses], *counted, *[F.col(f"_found.{c}").alias(c) for c in lookup.features]
    )


def prune(table: DataFrame, spine: DataFrame, lookup: FeatureLookup, table_keys: list[str], table_ts: str) -> DataFrame:
    """The table rows a lookup from this spine can use: its keys, up to its latest time, and
    (with a lookback) from its earliest time minus the lookback. A 14-day spine then reads 14
    days of a year's table, not the year."""
    ts = F.col(table_ts).cast("timestamp_ntz")
    spine_ts = F.col(lookup.timestamp_lookup_key).cast("timestamp_ntz")
    bounds = spine.agg(F.min(spine_ts).alias("_lo"), F.max(spine_ts).alias("_hi"))
    keep = ts <= F.col("_hi")
    if lookup.lookback_hours is not None:
        keep &= ts >= F.col("_lo") - F.expr(f"INTERVAL {int(lookup.lookback_hours * 3600)} SECONDS")
    keys = spine.select(*[F.col(k).alias(t) for k, t in zip(lookup.lookup_key, table_keys)]).distinct()
    return table.crossJoin(F.broadcast(bounds)).where(keep).drop("_lo", "_hi").join(keys, table_keys, "left_semi")


def lookup_features(
    lakehouse: Lakehouse, spine: DataFrame, feature_lookups: list[FeatureLookup], misses: str | None = None
) -> DataFrame:
    """The spine with every lookup's features added, point in time, and, if `misses` names a
    column, per row the number of lookups that found no row for its keys.

    Raises LakehouseError (one line) if a lookup does not resolve against its table.
    """
    keys_by_table, found = _resolve(lakehouse, feature_lookups)
    if found:
        raise LakehouseError(f"feature lookups do not resolve: {'; '.join(found)} (run the features task)")
    out = spine if misses is None else spine.withColumn(misses, F.lit(0))
    for lookup in feature_lookups:
        table_keys, table_ts = keys_by_table[lookup.table]
        table = prune(lakehouse.read(lookup.table), spine, lookup, table_keys, table_ts)
        out = as_of_join(out, table, lookup, table_keys, table_ts, misses)
    return out


def problems(lakehouse: Lakehouse, feature_lookups: list[FeatureLookup]) -> list[str]:
    """Why these lookups would not resolve (missing tables, keys or columns); empty if they do."""
    return _resolve(lakehouse, feature_lookups)[1]


# (table folder, Delta version, its commit's mtime) -> (primary keys, timestamp key, columns): a
# commit's properties and schema never change (the mtime tells a table deleted and rewritten up
# to the same version apart), and a stream resolves its lookups every micro-batch.
_DESCRIBED: dict[tuple[str, int, int], tuple[list[str], str, frozenset[str]]] = {}


def _describe(lakehouse: Lakehouse, table: str) -> tuple[list[str], str, frozenset[str]]:
    folder, version = lakehouse.path(table), lakehouse.version(table)
    commit = folder / "_delta_log" / f"{version:020d}.json"
    key = (str(folder), version, commit.stat().st_mtime_ns if commit.exists() else 0)
    if key not in _DESCRIBED:
        props = lakehouse.properties(table)
        _DESCRIBED[key] = (
            [k for k in props.get(PRIMARY_KEYS, "").split(",") if k],
            props.get(TIMESTAMP_KEY) or "",
            frozenset(lakehouse.read(table).columns),
        )
    return _DESCRIBED[key]


def _resolve(lakehouse: Lakehouse, feature_lookups: list[FeatureLookup]) -> tuple[dict[str, tuple[list[str], str]], list[str]]:
    """Each table's (primary keys, timestamp key), read once per table version, and what does not resolve."""
    found, resolved, columns_of = [], {}, {}
    for table in dict.fromkeys(lookup.table for lookup in feature_lookups):
        if not lakehouse.exists(table):
            found.append(f"{table} does not exist")
            continue
        keys, ts, columns_of[table] = _describe(lakehouse, table)
        resolved[table] = (keys, ts)
    for lookup in feature_lookups:
        if lookup.table not in resolved:
            continue
        keys, ts = resolved[lookup.table]
        if len(keys) != len(lookup.lookup_key) or not ts:
            found.append(
                f"{lookup.table} has primary keys {keys} and timestamp key "
                f"{ts or None!r}, not {len(lookup.lookup_key)} key(s) and a timestamp"
            )
            continue
        columns = columns_of[lookup.table]
        missing = [c for c in [*keys, ts, *lookup.features] if c not in columns]
        if missing:
            found.append(f"{lookup.table} lacks column(s) {', '.join(missing)}")
    return resolved, found
