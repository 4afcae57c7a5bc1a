import datetime as dt

import pytest

from lib.core.config.model import FeatureTable
from lib.core.errors import LakehouseError
from lib.features import store as feature_store
from lib.features.store import FeatureLookup

t = dt.datetime
WEATHER = [
    ("EWR", t(2013, 1, 1, 5), 1.0),
    ("EWR", t(2013, 1, 1, 6), 2.0),
    ("EWR", t(2013, 1, 1, 9), 3.0),
    ("JFK", t(2013, 1, 1, 6), 10.0),
]
SPEC = FeatureTable(
    primary_keys=["origin"], timestamp_key="observed_at", description="hourly", source="hourly", select=["origin", "observed_at"]
)


def spine(spark):
    return spark.createDataFrame(
        [
            ("a", "EWR", t(2013, 1, 1, 6, 0)),  # exactly at an observation: that one
            ("b", "EWR", t(2013, 1, 1, 8, 59)),  # the 09:00 row is later: 06:00 it is, not 09:00
            ("c", "EWR", t(2013, 1, 1, 4, 0)),  # before any observation: nothing
            ("d", "JFK", t(2013, 1, 1, 10, 0)),  # 4 hours old: beyond a 3-hour lookback
            ("e", "LGA", t(2013, 1, 1, 6, 0)),  # no observation at that airport
        ],
        "flight_id string, origin string, sched_dep_ts timestamp_ntz",
    )


def weather(spark):
    return spark.createDataFrame(WEATHER, "origin string, observed_at timestamp_ntz, temp double")


@pytest.mark.parametrize(
    "lookback,expected",
    [
        (None, {"a": 2.0, "b": 2.0, "c": None, "d": 10.0, "e": None}),
        (3, {"a": 2.0, "b": 2.0, "c": None, "d": None, "e": None}),
    ],
)
def test_as_of_join_takes_the_newest_row_not_after_the_event(spark, lookback, expected):
    lookup = FeatureLookup("x.y.weather", ("origin",), "sched_dep_ts", ("temp",), lookback)
    joined = feature_store.as_of_join(spine(spark), weather(spark), lookup, ["origin"], "observed_at")
    assert {r["flight_id"]: r["temp"] for r in joined.collect()} == expected
    assert joined.columns == ["flight_id", "origin", "sched_dep_ts", "temp"]


def test_write_table_records_keys_and_refuses_duplicates(lakehouse, staging):
    name = staging.table("weather_features")
    assert feature_store.check_key(weather(lakehouse.spark), name, SPEC) == 4
    feature_store.write_table(lakehouse, weather(lakehouse.spark), name, SPEC)
    assert lakehouse.properties(name)[feature_store.PRIMARY_KEYS] == "origin"
    assert lakehouse.properties(name)[feature_store.TIMESTAMP_KEY] == "observed_at"
    dup = lakehouse.spark.createDataFrame(WEATHER + [("EWR", t(2013, 1, 1, 5), 9.0)], weather(lakehouse.spark).schema)
    with pytest.raises(LakehouseError) as shared:  # both rows of the duplicated key count
        feature_store.check_key(dup, name, SPEC)
    assert str(shared.value) == (
        "feature table staging.flights.weather_features: 2 rows share a primary key and "
        "0 have a null key (origin, observed_at); nothing was written"
    )
    nulls = lakehouse.spark.createDataFrame([(None, t(2013, 1, 1, 5), 9.0)], weather(lakehouse.spark).schema)
    with pytest.raises(LakehouseError) as null:
        feature_store.check_key(nulls, name, SPEC)
    assert str(null.value) == (
        "feature table staging.flights.weather_features: 0 rows share a primary key and "
        "1 have a null key (origin, observed_at); nothing was written"
    )


def test_lookup_features_reads_keys_from_table_properties(lakehouse, staging):
    name = staging.table("weather_features")
    feature_store.write_table(
        lakehouse,
        weather(lakehouse.spark).withColumnRenamed("origin", "airport"),
        name,
        SPEC.model_copy(update={"primary_keys": ["airport"]}),
    )
    lookup = FeatureLookup(name, ("origin",), "sched_dep_ts", ("temp",))
    out = feature_store.lookup_features(lakehouse, spine(lakehouse.spark), [lookup])
    assert {r["flight_id"]: r["temp"] for r in out.collect()}["b"] == 2.0


def test_a_bad_key_in_one_table_writes_no_table(lakehouse, staging, model_cfg):
    from lib.features import tables as features

    flights = lakehouse.spark.createDataFrame(
        [("x", "EWR", t(2013, 1, 1, 6))], "flight_id string, origin string, sched_dep_ts timestamp_ntz"
    )
    dup = lakehouse.spark.createDataFrame(WEATHER + [WEATHER[0]], weather(lakehouse.spark).schema)
    with pytest.raises(LakehouseError, match="weather_features: 2 rows share a primary key"):
        features.write_tables(lakehouse, staging, model_cfg, {"flight_features": flights, "weather_features": dup})
    assert lakehouse.tables() == []


def test_lookups_that_do_not_resolve_are_one_line(lakehouse, staging):
    lookup = FeatureLookup(staging.table("weather_features"), ("origin",), "sched_dep_ts", ("temp",))
    with pytest.raises(LakehouseError, match="feature lookups do not resolve: staging.flights.weather_features does not exist"):
        feature_store.lookup_features(lakehouse, spine(lakehouse.spark), [lookup])


def test_problems_name_what_does_not_resolve(lakehouse, staging):
    name = staging.table("weather_features")
    lookup = FeatureLookup(name, ("origin",), "sched_dep_ts", ("temp",))
    assert feature_store.problems(lakehouse, [lookup]) == [f"{name} does not exist"]
    feature_store.write_table(lakehouse, weather(lakehouse.spark), name, SPEC)
    assert feature_store.problems(lakehouse, [lookup]) == []
    wrong = FeatureLookup(name, ("origin",), "sched_dep_ts", ("temp", "visib"))
    assert feature_store.problems(lakehouse, [wrong]) == [f"{name} lacks column(s) visib"]
    two_keys = FeatureLookup(name, ("origin", "dest"), "sched_dep_ts", ("temp",))
    assert "not 2 key(s)" in feature_store.problems(lakehouse, [two_keys])[0]


def test_lookup_round_trips_through_a_dict():
    lookup = FeatureLookup("prod.flights.weather_features", ("origin",), "sched_dep_ts", ("temp", "visib"), 3)
    assert FeatureLookup.from_dict(lookup.to_dict()) == lookup
