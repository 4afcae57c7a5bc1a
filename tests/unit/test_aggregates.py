"""Windowed aggregates (lib/features/aggregates.py): each value over the events known strictly
before the row's timestamp, checked against a brute force in pandas; and their config."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lib.core.config.aggregates import Aggregate, window_seconds
from lib.core.config.loading import parse_model
from lib.core.config.sources import load_sources
from lib.core.errors import ConfigError, SourceDataError
from lib.features import aggregates, store, tables

T0 = dt.datetime(2013, 3, 1, 12, 0)
US = dt.timedelta(microseconds=1)
HOUR = dt.timedelta(hours=1)
SPINE = "id string, ts timestamp_ntz, k string, k2 string"
EVENTS = "k string, k2 string, at timestamp_ntz, v double"

# Spine rows: one per case, several keys, a null key and a null timestamp.
SPINE_ROWS = [
    ("a1", T0, "a", "x"),
    ("a2", T0 + 2 * HOUR, "a", "x"),  # the window (2 h) reaches back exactly to T0
    ("a3", T0 + 5 * HOUR, "a", "x"),  # every event of `a` is older than its window: none counts
    ("a4", T0, "a", "y"),  # another second key: none of `a x`'s events
    ("b1", T0, "b", "x"),
    ("n1", T0, None, "x"),  # a null key matches no event, not even the null-keyed ones
    ("t1", None, "a", "x"),  # no time: no value
    ("c1", T0, "c", "x"),  # a key without events
]
# Events of `a x`, relative to T0: at T0 exactly (not known to a1), 1 us before, at the window's
# edge of a1 (T0 - 2 h: known), 1 us past the edge (not), and later ones.
EVENT_ROWS = [
    ("a", "x", T0, 100.0),
    ("a", "x", T0 - US, 1.0),
    ("a", "x", T0 - 2 * HOUR, 2.0),
    ("a", "x", T0 - 2 * HOUR - US, 1000.0),
    ("a", "x", T0 + HOUR, 5.0),
    ("a", "x", T0 + 2 * HOUR, 7.0),  # at a2's own time: not known to it
    ("a", "x", T0 + HOUR - US, None),  # a null value counts for nothing
    ("a", "x", None, 3000.0),  # never known
    ("a", "y", T0 - HOUR, 10.0),
    ("a", "y", T0 - HOUR, 20.0),  # the same instant: `last` takes the largest
    ("b", "x", T0 - 30 * dt.timedelta(minutes=1), -4.0),
    ("b", "x", T0 + US, 50.0),
    (None, "x", T0 - HOUR, 9.0),
]
FUNCTIONS = ("avg", "sum", "count", "min", "max", "last")


def agg(function: str, window: str = "2 hours", **more) -> Aggregate:
    declared = {"source": "events", "by": ["k", "k2"], "known_at": "at", "value": "v", "function": function, "window": window}
    return Aggregate(**{**declared, **more})


def brute_force(spine: pd.DataFrame, events: pd.DataFrame, aggregate: Aggregate) -> dict[str, float | None]:
    """Each spine row's value, row by row: the events of its key known in [ts - window, ts)."""
    window = dt.timedelta(seconds=aggregate.seconds)
    out: dict[str, float | None] = {}
    for row in spine.itertuples():
        if pd.isna(row.ts) or any(pd.isna(getattr(row, c)) for c in aggregate.by):
            out[row.id] = 0 if aggregate.function == "count" else None
            continue
        seen = events[
            (events["k"] == row.k) & (events["k2"] == row.k2) & (events["at"] >= row.ts - window) & (events["at"] < row.ts)
        ]
        values = seen.dropna(subset=["v"])
        if aggregate.function == "count":
            out[row.id] = len(values)
        elif values.empty:
            out[row.id] = None
        elif aggregate.function == "last":
            out[row.id] = values.sort_values(["at", "v"]).iloc[-1]["v"]
        else:
            out[row.id] = getattr(values["v"], {"avg": "mean"}.get(aggregate.function, aggregate.function))()
    return out


@pytest.fixture(scope="module")
def frames(spark):
    return spark.createDataFrame(SPINE_ROWS, SPINE), spark.createDataFrame(EVENT_ROWS, EVENTS)


@pytest.fixture(scope="module")
def built(frames):
    """Every function over the same events, built once (one Spark pass each)."""
    spine, events = frames
    return aggregates.build(spine, "id", "ts", {f: agg(f) for f in FUNCTIONS}, {"events": events}).toPandas().set_index("id")


def test_every_function_matches_a_brute_force_over_strictly_earlier_events(built):
    assert sorted(built.index) == sorted(r[0] for r in SPINE_ROWS)
    assert list(built.columns) == ["ts", *FUNCTIONS]
    spine = pd.DataFrame(SPINE_ROWS, columns=["id", "ts", "k", "k2"])
    events = pd.DataFrame(EVENT_ROWS, columns=["k", "k2", "at", "v"])
    for function in FUNCTIONS:
        expected = brute_force(spine, events, agg(function))
        got = {i: (None if pd.isna(v) else v) for i, v in built[function].items()}
        assert got == pytest.approx(expected), function


def test_an_event_at_the_rows_own_instant_is_not_known_to_it(built):
    """Hand-computed, so an inclusive window (or one short by the edge) fails here."""
    a1 = built.loc["a1"]
    # a1 at T0 sees 1.0 (T0 - 1 us) and 2.0 (T0 - 2 h, the edge); not 100.0 (T0) nor 1000.0 (past the edge)
    assert (a1["avg"], a1["sum"], a1["count"], a1["min"], a1["max"], a1["last"]) == (1.5, 3.0, 2, 1.0, 2.0, 1.0)
    a2 = built.loc["a2"]  # T0 + 2 h: 100.0 (T0, the edge), 5.0; not 7.0 (its own instant)
    assert (a2["count"], a2["last"], a2["max"]) == (2, 5.0, 100.0)
    b1 = built.loc["b1"]  # 50.0 at T0 + 1 us is later
    assert (b1["count"], b1["last"]) == (1, -4.0)
    assert built.loc["a4", "last"] == 20.0  # two events of one instant: the largest value


def test_no_event_no_key_or_no_time_gives_null_and_a_zero_count(built):
    rows = built
    for row in ("a3", "n1", "t1", "c1"):
        assert rows.loc[row, "count"] == 0, row
        assert math.isnan(rows.loc[row, "avg"]), row


def test_filter_and_counting_without_a_value(frames):
    spine, events = frames
    declared = {
        "big": agg("count", filter="v > 1.5"),
        "events": Aggregate(source="events", by=["k"], known_at="at", function="count", window="1 day"),
    }
    rows = aggregates.build(spine, "id", "ts", declared, {"events": events}).toPandas().set_index("id")
    assert rows.loc["a1", "big"] == 1  # 2.0 only: 1.0 is filtered out
    # every `a` event with a time before T0 within a day, whatever its k2 or value (a null value is an event too)
    assert rows.loc["a1", "events"] == 5
    assert list(rows.columns) == ["ts", "big", "events"]


def test_an_unresolvable_expression_is_one_line_naming_the_aggregate(frames):
    spine, events = frames
    where = "model.yml feature_tables.history"
    with pytest.raises(SourceDataError, match=r"^model.yml feature_tables.history.aggregates.bad: does not resolve: .*nope"):
        aggregates.build(spine, "id", "ts", {"bad": agg("avg", value="nope + 1")}, {"events": events}, where)
    with pytest.raises(SourceDataError, match=r"aggregates.x.source: 'events' is not a source the tables read"):
        aggregates.build(spine, "id", "ts", {"x": agg("avg")}, {}, where)
    with pytest.raises(SourceDataError, match=r"^model.yml feature_tables.history: a `by` column is not a column of the spine"):
        aggregates.build(spine.drop("k2"), "id", "ts", {"x": agg("avg")}, {"events": events}, where)


@pytest.mark.parametrize(("text", "seconds"), [("7 days", 604800), ("24 hours", 86400), ("1 hour", 3600), ("90 minutes", 5400)])
def test_window_is_days_hours_or_minutes(text, seconds):
    assert window_seconds(text) == seconds


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"window": "0 days"}, r"window: must be longer than 0, got '0 days'"),
        ({"window": "7 weeks"}, r"window: must be 'N days', 'N hours' or 'N minutes', got '7 weeks'"),
        ({"function": "median"}, r"function: must be one of avg, sum, count, min, max, last, got 'median'"),
        ({"value": None}, r"value: missing \(function avg needs the value it aggregates\)"),
        ({"by": []}, r"by: "),
    ],
)
def test_a_bad_aggregate_is_one_line_naming_the_key(raw, message):
    base = {"source": "flights", "by": ["tailnum"], "known_at": "ts", "value": "v", "function": "avg", "window": "1 day"}
    with pytest.raises(ConfigError, match=message) as caught:
        parse_model(Aggregate, {**base, **raw}, "model.yml", "feature_tables", "history", "aggregates", "x")
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("model.yml: feature_tables.history.aggregates.x.")


# The flights' real tables (the staging seed): no value uses what was known at or after its row's time.
PROBES = 12


def _probes(spine: DataFrame, written: DataFrame, spine_id: str, names: list[str]) -> DataFrame:
    """Spine rows to check: most with a value of every aggregate (where a leak would show), some without."""
    full = written.dropna(subset=names).select(spine_id).orderBy(F.xxhash64(spine_id)).limit(PROBES - 3)
    some = written.where(F.col(names[-1]).isNull()).select(spine_id).orderBy(F.xxhash64(spine_id)).limit(3)
    return spine.join(full.unionByName(some), spine_id, "left_semi")


def test_no_flights_aggregate_changes_without_what_was_known_at_or_after_its_row(featurized, staging, model_cfg):
    """Each sampled spine row's aggregates computed again from only the events known strictly
    before its timestamp, less its own event, equal what the features task wrote."""
    spine_cfg = model_cfg.spine
    declared = {name: t.aggregates for name, t in model_cfg.feature_tables.items() if t.aggregates}
    assert declared, "the flights declare aggregate features"
    sources = tables.read_sources(featurized, staging, model_cfg, load_sources(model_cfg.folder))
    spine = featurized.read(staging.table(spine_cfg.table))
    for name, declared_aggregates in declared.items():
        written = featurized.read(staging.table(name))
        probes = _probes(spine, written, spine_cfg.id, list(declared_aggregates)).withColumn("_probe", F.col(spine_cfg.id))
        expected = {r[spine_cfg.id]: r.asDict() for r in written.join(probes.select(spine_cfg.id), spine_cfg.id).collect()}
        assert len(expected) == PROBES
        narrowed, truncated = {}, {}
        for agg_name, agg in declared_aggregates.items():
            probe = probes.select(*agg.by, F.col(spine_cfg.id).alias("_probe_id"), F.col(spine_cfg.timestamp).alias("_probe_ts"))
            # each probe's own copy of its key's events: those known before its time, not its own
            truncated[agg_name] = (
                sources[agg.source]
                .join(probe, agg.by)
                .where(F.expr(agg.known_at) < F.col("_probe_ts"))
                .where(F.col(spine_cfg.id) != F.col("_probe_id"))
                .withColumn("_probe", F.col("_probe_id"))
            )
            narrowed[agg_name] = agg.model_copy(update={"by": [*agg.by, "_probe"], "source": agg_name})
        rebuilt = aggregates.build(probes, spine_cfg.id, spine_cfg.timestamp, narrowed, truncated).collect()
        again = {row[spine_cfg.id]: {n: row[n] for n in narrowed} for row in rebuilt}
        assert sorted(again) == sorted(expected)
        for row_id, values in again.items():
            assert values == pytest.approx({n: expected[row_id][n] for n in values}), (name, row_id)
        valued = sum(v is not None for values in again.values() for v in values.values())
        assert valued >= (PROBES - 3) * len(declared_aggregates)


def test_every_flights_lookup_takes_a_row_stamped_at_or_before_its_spine_row(featurized, staging, model_cfg):
    """The labels (the training spine) through each feature_lookups entry: the row found is never
    stamped after the spine row. A row stamped at the spine's own instant is the entity's own (its
    schedule; its aggregates, over what was known strictly before)."""
    at = model_cfg.spine.timestamp
    spine = tables.labels_in(featurized, staging, model_cfg, (staging.data.start, staging.data.end))
    for lookup in store.lookups(model_cfg.feature_lookups, staging.catalog, staging.schema):
        props = featurized.properties(lookup.table)
        table_keys, table_ts = props[store.PRIMARY_KEYS].split(","), props[store.TIMESTAMP_KEY]
        table = featurized.read(lookup.table).withColumn("_row_ts", F.col(table_ts).cast("timestamp_ntz"))
        stamped = store.FeatureLookup(
            lookup.table, lookup.lookup_key, lookup.timestamp_lookup_key, ("_row_ts",), lookup.lookback_hours
        )
        found = store.as_of_join(spine, table, stamped, table_keys, table_ts)
        stats = found.agg(
            F.count("_row_ts").alias("found"),
            F.sum((F.col("_row_ts") > F.col(at).cast("timestamp_ntz")).cast("int")).alias("later"),
            F.count("*").alias("rows"),
        ).first()
        assert stats["later"] == 0, lookup.table
        assert stats["found"] > stats["rows"] / 2, lookup.table  # the check saw rows
