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
from dataclasses import asdict, dataclass
from functools import reduce
from typing import Any

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lib.catalog import Lakehouse
from lib.errors import LakehouseError

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
    def from_dict(d: dict[str, Any]) -> "FeatureLookup":
        return FeatureLookup(d["table"], tuple(d["lookup_key"]), d["timestamp_lookup_key"],
                             tuple(d["features"]), d.get("lookback_hours"))


def lookups(model_cfg: dict[str, Any], catalog: str, schema: str) -> list[FeatureLookup]:
    """The configured lookups, their tables named in `catalog.schema`."""
    return [FeatureLookup(f"{catalog}.{schema}.{spec['table']}", tuple(spec["lookup_key"]),
                          spec["timestamp_lookup_key"], tuple(spec["features"]), spec.get("lookback_hours"))
            for spec in model_cfg["feature_lookups"]]


def check_key(df: DataFrame, name: str, spec: dict[str, Any]) -> int:
    """Check that a feature table's key (primary keys + timestamp key) is non-null and unique.

    Returns the row count; raises LakehouseError naming how many rows break the key.
    """
    key = [*spec["primary_keys"], spec["timestamp_key"]]
    stats = df.groupBy(*key).count().agg(
        F.sum(F.when(F.col("count") > 1, F.col("count")).otherwise(0)).alias("duplicated"),
        F.sum(F.when(reduce(operator.or_, [F.col(k).isNull() for k in key]), F.col("count")).otherwise(0)).alias("nulls"),
        F.sum("count").alias("rows"),
    ).first()
    if stats["duplicated"] or stats["nulls"]:
        raise LakehouseError(f"feature table {name}: {stats['duplicated'] or 0} rows share a primary key and "
                             f"{stats['nulls'] or 0} have a null key ({', '.join(key)}); nothing was written")
    return int(stats["rows"] or 0)


def write_table(lakehouse: Lakehouse, df: DataFrame, name: str, spec: dict[str, Any]) -> None:
    """Replace a feature table (whose key was checked) and record its keys as table properties."""
    lakehouse.write(df, name)
    lakehouse.set_properties(name, {PRIMARY_KEYS: ",".join(spec["primary_keys"]),
                                    TIMESTAMP_KEY: spec["timestamp_key"],
                                    "comment": spec.get("description", "")})


def as_of_join(spine: DataFrame, table: DataFrame, lookup: FeatureLookup, table_keys: list[str],
               table_ts: str) -> DataFrame:
    """Add lookup.features to every spine row: the newest table row at or before the spine time.

    Implemented as a union sorted by time per key (no range join): each spine instant takes
    the last table row seen before it. Table rows sort before spine rows of the same instant.
    """
    keys = list(lookup.lookup_key)
    rows = table.select(*[F.col(t).alias(k) for t, k in zip(table_keys, keys)],
                        F.col(table_ts).cast("timestamp_ntz").alias("_ts"), *lookup.features)
    events = spine.select(*keys, F.col(lookup.timestamp_lookup_key).cast("timestamp_ntz").alias("_ts")).distinct()
    unioned = (rows.withColumn("_side", F.lit(0))
               .unionByName(events.withColumn("_side", F.lit(1)), allowMissingColumns=True)
               .withColumn("_found", F.when(F.col("_side") == 0, F.struct(
                   F.col("_ts").alias("_at"), *[F.col(c) for c in lookup.features]))))
    window = (Window.partitionBy(*keys).orderBy("_ts", "_side")
              .rowsBetween(Window.unboundedPreceding, Window.currentRow))
    latest = unioned.withColumn("_found", F.last("_found", ignorenulls=True).over(window)).where("_side = 1")
    if lookup.lookback_hours is not None:
        oldest = F.col("_ts") - F.expr(f"INTERVAL {int(lookup.lookback_hours * 3600)} SECONDS")
        latest = latest.withColumn("_found", F.when(F.col("_found._at") >= oldest, F.col("_found")))
    found = latest.select(*keys, "_ts", *[F.col(f"_found.{c}").alias(c) for c in lookup.features])
    with_ts = spine.withColumn("_ts", F.col(lookup.timestamp_lookup_key).cast("timestamp_ntz"))
    return with_ts.join(found, [*keys, "_ts"], "left").select(*spine.columns, *lookup.features)


def lookup_features(lakehouse: Lakehouse, spine: DataFrame, feature_lookups: list[FeatureLookup]) -> DataFrame:
    """The spine with every lookup's features added, point in time.

    Raises LakehouseError (one line) if a lookup does not resolve against its table.
    """
    found = problems(lakehouse, feature_lookups)
    if found:
        raise LakehouseError(f"feature lookups do not resolve: {'; '.join(found)} (run the features task)")
    out = spine
    for lookup in feature_lookups:
        table = lakehouse.read(lookup.table)
        props = lakehouse.properties(lookup.table)
        keys = props.get(PRIMARY_KEYS, "").split(",")
        out = as_of_join(out, table, lookup, keys, props.get(TIMESTAMP_KEY, ""))
    return out


def problems(lakehouse: Lakehouse, feature_lookups: list[FeatureLookup]) -> list[str]:
    """Why these lookups would not resolve (missing tables, keys or columns); empty if they do."""
    found = []
    for lookup in feature_lookups:
        if not lakehouse.exists(lookup.table):
            found.append(f"{lookup.table} does not exist")
            continue
        props = lakehouse.properties(lookup.table)
        keys = [k for k in props.get(PRIMARY_KEYS, "").split(",") if k]
        if len(keys) != len(lookup.lookup_key) or not props.get(TIMESTAMP_KEY):
            found.append(f"{lookup.table} has primary keys {keys} and timestamp key "
                         f"{props.get(TIMESTAMP_KEY)!r}, not {len(lookup.lookup_key)} key(s) and a timestamp")
            continue
        columns = set(lakehouse.read(lookup.table).columns)
        missing = [c for c in [*keys, props[TIMESTAMP_KEY], *lookup.features] if c not in columns]
        if missing:
            found.append(f"{lookup.table} lacks column(s) {', '.join(missing)}")
    return found
