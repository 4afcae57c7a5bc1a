import datetime as dt

import mlflow
import pytest
from pyspark.sql import functions as F

from lib.inference import batch as inference
from lib.monitoring import baseline

pytestmark = pytest.mark.slow


def rank_backwards(lakehouse, env, start: dt.date, end: dt.date) -> None:
    """Rewrite the labels of the flights scored in [start, end): each day, the flights the
    Champion scored below that day's median were delayed, the others not. Its ROC AUC on every
    labelled day is then 0 (every delayed flight scored below every punctual one)."""
    predictions = lakehouse.read(env.table("predictions")).select(
        "flight_id", "prediction", F.to_date("sched_dep_ts").alias("day")
    )
    medians = predictions.groupBy("day").agg(F.median("prediction").alias("median"))
    backwards = predictions.join(medians, "day").select(
        "flight_id", (F.col("prediction") < F.col("median")).cast("int").alias("backwards")
    )
    labels = lakehouse.read(env.table("labels"))
    period = f"sched_dep_ts >= '{start}' AND sched_dep_ts < '{end}'"
    rewritten = (
        labels.where(period)
        .join(backwards, "flight_id")
        .select(*[F.col("backwards").alias(c) if c == "delayed" else F.col(c) for c in labels.columns])
    )
    lakehouse.write(rewritten, env.table("labels"), replace_where=period)


def test_monitoring_profiles_drift_and_arrived_labels(executed, champion, featurized, staging, train_set, task_values, model_cfg):
    start, end = staging.data.split(staging.data.as_of).score
    assert (end - start).days == 3
    flight_features = featurized.read(staging.table("flight_features"))
    inference.publish(
        featurized,
        inference.score(featurized, flight_features, champion, start, end, 0.5, entity=model_cfg.spine),
        staging.table("predictions"),
        start,
        end,
        timestamp=model_cfg.spine.timestamp,
    )
    model = mlflow.pyfunc.load_model(champion.uri)
    baseline.write_baseline(featurized, staging, train_set.assign(prediction=model.predict(train_set)), champion.version)
    rank_backwards(featurized, staging, start, end)  # the delays that arrive prove the Champion wrong
    later = start + dt.timedelta(days=2)  # labels of the first two scored days have arrived
    with executed("monitoring/07_monitoring.ipynb", env="staging", as_of=later.isoformat()) as tb:
        assert tb.value("type(views.heatmap(drift, 't')).__name__") == "Figure"
    values = task_values()
    assert {k: values[k] for k in ("metrics_table", "drift_table", "windows", "served_metrics_table")} == {
        "metrics_table": "staging.flights.predictions_profile_metrics",
        "drift_table": "staging.flights.predictions_drift_metrics",
        "windows": 3,
        "served_metrics_table": "",
    }
    # The shipped alerts (conf/alerts.yml), evaluated against these tables and recorded. ROC AUC
    # is 0 on both labelled days (up to the profile's binning of the probabilities), but
    # model_quality needs 3 of its last 5 windows below 0.6: it waits. temperature_drift needs 2
    # of 3 weekly windows and the three days are one week (Monday 2013-02-25 on): it cannot
    # trigger. prediction_drift (notify only) needs all three days' PSI over 0.25 against the
    # seeded training set's predictions; one day is.
    assert values["alerts"] == {"temperature_drift": "OK", "prediction_drift": "OK", "model_quality": "OK"}
    assert 0.0 <= values["alert_values"]["model_quality"] < 1e-3
    assert values["run_jobs"] == [] and values["alerts_fired"] == []
    recorded = featurized.read(staging.table("alerts")).collect()
    assert {r["name"]: r["state"] for r in recorded} == values["alerts"]
    assert {r["name"]: (r["met"], r["windows"]) for r in recorded}["model_quality"] == (2, 2)
    profile = featurized.read(staging.table("predictions_profile_metrics"))
    days = {
        r["window"]["start"].date(): r
        for r in profile.where(
            "granularity = '1 day' AND column_name = ':table' AND slice_key IS NULL AND log_type = 'INPUT'"
        ).collect()
    }
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
        "granularity = '1 day' AND column_name = 'temp' AND slice_key IS NULL"
    )
    kinds = sorted((r["drift_type"], r["window"]["start"].date()) for r in drift.collect())
    assert kinds == sorted(
        [("BASELINE", start + dt.timedelta(days=d)) for d in range(3)]
        + [("CONSECUTIVE", start + dt.timedelta(days=d)) for d in (1, 2)]
    )

    # The next day's run: the third day's labels arrive, as wrong as the others. model_quality
    # enters TRIGGERED (3 of 3 windows), notifies and asks for the retraining job.
    with executed("monitoring/07_monitoring.ipynb", env="staging", as_of=(later + dt.timedelta(days=1)).isoformat()):
        pass
    values = task_values()
    assert values["alerts"] == {"temperature_drift": "OK", "prediction_drift": "OK", "model_quality": "TRIGGERED"}
    assert 0.0 <= values["alert_values"]["model_quality"] < 1e-3
    assert values["alerts_fired"] == ["model_quality"] and values["run_jobs"] == ["retraining"]
    quality = featurized.read(staging.table("alerts")).where("name = 'model_quality'").orderBy("evaluated_at").collect()
    assert [(r["previous_state"], r["state"], r["met"], r["windows"], r["acted"]) for r in quality] == [
        (None, "OK", 2, 2, False),
        ("OK", "TRIGGERED", 3, 3, True),
    ]
