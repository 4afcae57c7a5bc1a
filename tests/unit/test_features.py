import datetime as dt
import math

from lib.features import tables as features

FLIGHTS = (
    "year int, month int, day int, sched_dep_time int, arr_delay double, carrier string, "
    "flight int, origin string, dest string, distance double, time_hour timestamp_ntz"
)
WEATHER = "origin string, year int, month int, day int, hour int, time_hour timestamp_ntz, " + ", ".join(
    f"{c} double" for c in features.WEATHER_COLUMNS
)


def frames(spark):
    t = dt.datetime
    flights = spark.createDataFrame(
        [
            (2013, 1, 1, 517, 11.0, "UA", 1545, "EWR", "IAH", 1400.0, t(2013, 1, 1, 10)),
            (2013, 1, 1, 1945, 16.0, "AA", 7, "JFK", "LAX", 2475.0, t(2013, 1, 2, 0)),
            (2013, 1, 2, 600, None, "B6", 9, "LGA", "BOS", 184.0, t(2013, 1, 2, 11)),  # cancelled
        ],
        FLIGHTS,
    )
    weather = spark.createDataFrame(
        [
            ("EWR", 2013, 1, 1, 4, t(2013, 1, 1, 9), *[float(i) for i in range(9)]),
            # the 05:xx reports (up to 05:51) are not known at a 05:17 departure
            ("EWR", 2013, 1, 1, 5, t(2013, 1, 1, 10), *[99.0] * 9),
            # the autumn DST change repeats 01:00 local; the later observation (UTC 06:00) wins
            ("EWR", 2013, 11, 3, 1, t(2013, 11, 3, 5), *[1.0] * 9),
            ("EWR", 2013, 11, 3, 1, t(2013, 11, 3, 6), *[2.0] * 9),
        ],
        WEATHER,
    )
    return flights, weather


def test_flight_features_are_keyed_and_timed(spark):
    flights, _ = frames(spark)
    rows = {r["flight_id"]: r for r in features.build_flight_features(flights).collect()}
    assert set(rows) == {"2013-01-01_UA1545_EWR", "2013-01-01_AA7_JFK", "2013-01-02_B69_LGA"}
    ua = rows["2013-01-01_UA1545_EWR"]
    assert ua["sched_dep_ts"] == dt.datetime(2013, 1, 1, 5, 17)
    assert (ua["dep_hour"], ua["day_of_week"], ua["month"], ua["origin"]) == (5.0, 3.0, 1.0, "EWR")  # a Tuesday


def test_weather_features_are_local_hours_one_per_origin(spark):
    _, weather = frames(spark)
    rows = {(r["origin"], r["observed_at"]): r for r in features.build_weather_features(weather).collect()}
    # stamped at the end of the observed hour, when its values are known
    assert set(rows) == {
        ("EWR", dt.datetime(2013, 1, 1, 5)),
        ("EWR", dt.datetime(2013, 1, 1, 6)),
        ("EWR", dt.datetime(2013, 11, 3, 2)),
    }
    assert rows[("EWR", dt.datetime(2013, 1, 1, 5))]["visib"] == 8.0
    assert rows[("EWR", dt.datetime(2013, 11, 3, 2))]["temp"] == 2.0


def test_labels_exclude_flights_that_never_arrived(spark):
    flights, _ = frames(spark)
    labels = {r["flight_id"]: (r["origin"], r["delayed"]) for r in features.build_labels(flights).collect()}
    assert labels == {"2013-01-01_UA1545_EWR": ("EWR", 0), "2013-01-01_AA7_JFK": ("JFK", 1)}  # 11 min on time, 16 late


def test_training_set_looks_weather_up_point_in_time(lakehouse, staging, model_cfg):
    flights, weather = frames(lakehouse.spark)
    rows = features.write_tables(lakehouse, staging, model_cfg, features.build_tables(flights, weather))
    assert rows == {"flight_features": 3, "weather_features": 3, "labels": 2}
    day1 = features.load_labelled(lakehouse, staging, model_cfg, (dt.date(2013, 1, 1), dt.date(2013, 1, 2)))
    assert list(day1["flight_id"]) == ["2013-01-01_AA7_JFK", "2013-01-01_UA1545_EWR"]
    ua = day1.set_index("flight_id").loc["2013-01-01_UA1545_EWR"]
    assert (ua["temp"], ua["carrier"], ua["dep_hour"]) == (0.0, "UA", 5.0)  # 04:xx weather for a 05:17 departure
    assert math.isnan(day1.set_index("flight_id").loc["2013-01-01_AA7_JFK", "temp"])  # no JFK weather
    assert len(features.load_labelled(lakehouse, staging, model_cfg, (dt.date(2013, 1, 2), dt.date(2013, 1, 3)))) == 0


def test_refresh_rewrites_only_when_the_raw_tables_changed(lakehouse, staging, model_cfg, capsys):
    flights, weather = frames(lakehouse.spark)
    lakehouse.write(flights, staging.raw_table("flights"))
    lakehouse.write(weather, staging.raw_table("weather"))
    expected = {"flight_features": 3, "weather_features": 3, "labels": 2}
    assert features.refresh(lakehouse, staging, model_cfg) == expected
    versions = {t: lakehouse.version(staging.table(t)) for t in features.TABLES}
    # Nothing changed: nothing is read or written, and the rows are those recorded.
    assert features.refresh(lakehouse, staging, model_cfg) == expected
    assert {t: lakehouse.version(staging.table(t)) for t in features.TABLES} == versions
    assert "are current (the same raw table versions, code and specs): not rewritten" in capsys.readouterr().out
    # A new version of a raw table: every table is rebuilt from it.
    lakehouse.write(flights.limit(1), staging.raw_table("flights"))
    assert features.refresh(lakehouse, staging, model_cfg)["flight_features"] == 1
    assert all(lakehouse.version(staging.table(t)) > versions[t] for t in features.TABLES)
    assert lakehouse.read(staging.table("flight_features")).count() == 1


def test_declared_tables_equal_the_old_builders_on_the_staging_slice(ingested, staging, model_cfg):
    """Safety net while the builders move to config: exact equality, both ways, schemas equal."""
    from lib.core.config.sources import load_sources

    raw = features.read_sources(ingested, staging, model_cfg, load_sources())
    declared = features.build(raw, model_cfg)
    flights, weather = ingested.read(staging.raw_table("flights")), ingested.read(staging.raw_table("weather"))
    old = features.build_tables(flights, weather)
    assert list(declared) == list(old)
    for name, df in old.items():
        assert declared[name].schema == df.schema, name
        assert declared[name].exceptAll(df).count() == 0, name
        assert df.exceptAll(declared[name]).count() == 0, name
        print(name, df.count(), "rows equal")
