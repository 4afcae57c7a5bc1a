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


def test_served_requests_become_one_prediction_row_each_with_labels_by_flight(spark):
    import json

    from lib.serving import capture

    def req(rows, status=200, preds=None, entity="m-2", at=T(2026, 11, 29, 10)):
        body = json.dumps({"dataframe_records": rows})
        answer = json.dumps({"predictions": preds} if status == 200 else {"error_code": "X", "message": "bad"})
        return capture.row("id", None, at, status, 3, body, answer, entity, "bearer")

    payload = spark.createDataFrame([
        req([{"flight_id": "f1", "origin": "EWR", "sched_dep_ts": "2013-03-01T08:00:00"},
             {"flight_id": "f2", "origin": "JFK", "sched_dep_ts": "2013-03-01T09:00:00"}], preds=[0.9, 0.2]),
        req([{"carrier": "UA"}], status=400),
        req([{"carrier": "UA", "origin": "EWR"}], preds=[0.7], entity="m-3", at=T(2026, 11, 30, 1)),
    ], capture.SCHEMA)
    served = monitoring.served_predictions(payload).orderBy("prediction").collect()
    assert [(r["flight_id"], r["prediction"], r["model_version"]) for r in served] == [
        ("f2", 0.2, "m-2"), (None, 0.7, "m-3"), ("f1", 0.9, "m-2")]
    labels = spark.createDataFrame([("f1", T(2013, 3, 1, 8), 1), ("f2", T(2013, 3, 1, 9), 0)],
                                   "flight_id string, sched_dep_ts timestamp_ntz, delayed int")
    rows = monitoring.profile_metrics(monitoring.served_predictions(payload), labels, dt.date(2013, 4, 1)).orderBy(
        "window.start").collect()
    assert [(r["window"]["start"], r["model_id"], r["count"], r["labelled_count"]) for r in rows] == [
        (T(2026, 11, 29), "m-2", 2, 2), (T(2026, 11, 30), "m-3", 1, 0)]
    assert rows[0]["accuracy"] == 1.0
