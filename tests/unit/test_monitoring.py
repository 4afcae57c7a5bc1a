import datetime as dt

import pytest

from lib import monitoring

T = dt.datetime


def test_profile_per_day_with_labels_only_once_arrived(spark):
    predictions = spark.createDataFrame([
        ("a", T(2013, 3, 1, 8), 0.9, "1"), ("b", T(2013, 3, 1, 9), 0.2, "1"), ("c", T(2013, 3, 1, 20), 0.7, "1"),
        ("d", T(2013, 3, 2, 8), 0.4, "1"), ("e", T(2013, 3, 2, 9), 0.6, "1"),
    ], "flight_id string, sched_dep_ts timestamp_ntz, prediction double, model_version string")
    labels = spark.createDataFrame([
        ("a", T(2013, 3, 1, 8), 1), ("b", T(2013, 3, 1, 9), 0), ("c", T(2013, 3, 1, 20), 0),
        ("d", T(2013, 3, 2, 8), 1), ("e", T(2013, 3, 2, 9), 1),
    ], "flight_id string, sched_dep_ts timestamp_ntz, delayed int")
    rows = monitoring.profile_metrics(predictions, labels, dt.date(2013, 3, 2), "1 day", 0.5).orderBy("window.start").collect()
    assert [r["window"]["start"] for r in rows] == [T(2013, 3, 1), T(2013, 3, 2)]
    day1, day2 = rows
    assert (day1["count"], day1["labelled_count"], day2["count"], day2["labelled_count"]) == (3, 3, 2, 0)
    assert day1["avg"] == pytest.approx(0.6) and day1["min"] == 0.2 and day1["max"] == 0.9
    assert day1["accuracy"] == pytest.approx(2 / 3)  # a right, b right, c wrong
    assert day1["roc_auc"] == 1.0
    assert day2["accuracy"] is None  # labels of 2 March have not arrived as of 2 March
    assert day1["column_name"] == ":table" and day1["granularity"] == "1 day" and day1["model_id"] == "1"
    assert day1["refreshed_as_of"] == dt.date(2013, 3, 2)
