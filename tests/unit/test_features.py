import datetime as dt

from lib import features

FLIGHTS = ("year int, month int, day int, sched_dep_time int, arr_delay double, carrier string, "
           "flight int, origin string, dest string, distance double, time_hour timestamp_ntz")
WEATHER = "origin string, time_hour timestamp_ntz, " + ", ".join(f"{c} double" for c in features.WEATHER_COLUMNS)


def frames(spark):
    t = dt.datetime
    flights = spark.createDataFrame([
        (2013, 1, 1, 517, 11.0, "UA", 1545, "EWR", "IAH", 1400.0, t(2013, 1, 1, 10)),
        (2013, 1, 1, 1945, 16.0, "AA", 7, "JFK", "LAX", 2475.0, t(2013, 1, 2, 0)),
        (2013, 1, 2, 600, None, "B6", 9, "LGA", "BOS", 184.0, t(2013, 1, 2, 11)),   # cancelled
    ], FLIGHTS)
    weather = spark.createDataFrame([("EWR", t(2013, 1, 1, 10), *[float(i) for i in range(9)])], WEATHER)
    return flights, weather


def test_features_are_keyed_and_timed(spark):
    flights, weather = frames(spark)
    rows = {r["flight_id"]: r for r in features.build_features(flights, weather).collect()}
    assert set(rows) == {"2013-01-01_UA1545_EWR", "2013-01-01_AA7_JFK", "2013-01-02_B69_LGA"}
    ua = rows["2013-01-01_UA1545_EWR"]
    assert ua["sched_dep_ts"] == dt.datetime(2013, 1, 1, 5, 17)
    assert (ua["dep_hour"], ua["day_of_week"], ua["month"]) == (5.0, 3.0, 1.0)  # a Tuesday
    assert ua["temp"] == 0.0 and ua["visib"] == 8.0  # weather joined on origin and hour
    assert rows["2013-01-01_AA7_JFK"]["temp"] is None  # no weather row for that hour


def test_labels_exclude_flights_that_never_arrived(spark):
    flights, _ = frames(spark)
    labels = {r["flight_id"]: r["delayed"] for r in features.build_labels(flights).collect()}
    assert labels == {"2013-01-01_UA1545_EWR": 0, "2013-01-01_AA7_JFK": 1}  # 11 min on time, 16 late


def test_labelled_window_is_half_open(spark):
    flights, weather = frames(spark)
    feats, labels = features.build_features(flights, weather), features.build_labels(flights)
    day1 = features.labelled(feats, labels, dt.date(2013, 1, 1), dt.date(2013, 1, 2)).collect()
    assert sorted(r["flight_id"] for r in day1) == ["2013-01-01_AA7_JFK", "2013-01-01_UA1545_EWR"]
    assert features.labelled(feats, labels, dt.date(2013, 1, 2), dt.date(2013, 1, 3)).count() == 0
