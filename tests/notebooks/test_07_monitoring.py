import datetime as dt

import mlflow
import pytest
from pyspark.sql import functions as F

from lib.inference import batch as inference
from lib.monitoring import refresh as monitoring

pytestmark = pytest.mark.slow


def test_monitoring_profiles_drift_and_arrived_labels(executed, champion, featurized, staging, train_set, task_values):
    start, end = staging.data.split(staging.data.as_of).score
    flight_features = featurized.read(staging.table("flight_features"))
    inference.publish(featurized, inference.score(featurized, flight_features, champion, start, end, 0.5),
                      staging.table("predictions"), start, end)
    model = mlflow.pyfunc.load_model(champion.uri)
    monitoring.write_baseline(featurized, staging, train_set.assign(prediction=model.predict(train_set)), champion.version)
    later = start + dt.timedelta(days=2)  # labels of the first two scored days have arrived
    with executed("monitoring/07_monitoring.ipynb", env="staging", as_of=later.isoformat()) as tb:
        assert tb.value("type(views.heatmap(drift, 't')).__name__") == "Figure"
    values = task_values()
    assert {k: values[k] for k in ("metrics_table", "drift_table", "windows", "served_metrics_table")} == {
        "metrics_table": "staging.flights.predictions_profile_metrics",
        "drift_table": "staging.flights.predictions_drift_metrics", "windows": 3, "served_metrics_table": ""}
    # The shipped alerts were evaluated against these tables and recorded; none could fail.
    assert set(values["alerts"]) == {"temperature_drift", "prediction_drift", "model_quality"}
    assert "ERROR" not in values["alerts"].values()
    recorded = featurized.read(staging.table("alerts")).collect()
    assert {r["name"]: r["state"] for r in recorded} == values["alerts"]
    assert values["run_jobs"] == (["retraining"] if "TRIGGERED" in (values["alerts"]["temperature_drift"],
                                                                  values["alerts"]["model_quality"]) else [])
    profile = featurized.read(staging.table("predictions_profile_metrics"))
    days = {r["window"]["start"].date(): r for r in profile.where(
        "granularity = '1 day' AND column_name = ':table' AND slice_key IS NULL AND log_type = 'INPUT'").collect()}
    predictions = featurized.read(staging.table("predictions"))
    labels = featurized.read(staging.table("labels"))
    for day, row in days.items():
        on_day = predictions.where(F.to_date("sched_dep_ts") == F.lit(day))
        assert row["count"] == on_day.count()
        arrived = on_day.join(labels, "flight_id").count() if day < later else 0
        assert row["labelled_count"] == arrived
        assert (row["accuracy"] is None) == (arrived == 0)
    assert sorted(days) == [start, start + dt.timedelta(days=1), start + dt.timedelta(days=2)]
    # Every model input is profiled, per slice too.
    temp = profile.where("granularity = '1 day' AND column_name = 'temp' AND slice_key = 'origin' AND log_type = 'INPUT'")
    assert temp.count() == 3 * 3  # three days x three airports
    # Drift: each day against the baseline; each day but the first against the day before.
    drift = featurized.read(staging.table("predictions_drift_metrics")).where(
        "granularity = '1 day' AND column_name = 'temp' AND slice_key IS NULL")
    kinds = sorted((r["drift_type"], r["window"]["start"].date()) for r in drift.collect())
    assert kinds == sorted([("BASELINE", start + dt.timedelta(days=d)) for d in range(3)]
                           + [("CONSECUTIVE", start + dt.timedelta(days=d)) for d in (1, 2)])
