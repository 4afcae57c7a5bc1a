import datetime as dt

import pytest
from pyspark.sql import functions as F

from lib import inference

pytestmark = pytest.mark.slow


def test_monitoring_counts_windows_and_uses_arrived_labels(executed, champion, featurized, staging, task_values):
    start, end = staging.data.split(staging.data.as_of).score
    flight_features = featurized.read(staging.table("flight_features"))
    inference.publish(featurized, inference.score(featurized, flight_features, champion, start, end, 0.5),
                      staging.table("predictions"), start, end)
    later = start + dt.timedelta(days=2)  # labels of the first two scored days have arrived
    with executed("monitoring/07_monitoring.ipynb", env="staging", as_of=later.isoformat()):
        pass
    assert task_values() == {"metrics_table": "staging.flights.predictions_profile_metrics", "windows": 3,
                             "served_metrics_table": ""}
    rows = {r["window"]["start"].date(): r for r in featurized.read(staging.table("predictions_profile_metrics")).collect()}
    predictions = featurized.read(staging.table("predictions"))
    labels = featurized.read(staging.table("labels"))
    for day, row in rows.items():
        on_day = predictions.where(F.to_date("sched_dep_ts") == F.lit(day))
        assert row["count"] == on_day.count()
        arrived = on_day.join(labels, "flight_id").count() if day < later else 0
        assert row["labelled_count"] == arrived
        assert (row["accuracy"] is None) == (arrived == 0)
    assert sorted(rows) == [start, start + dt.timedelta(days=1), start + dt.timedelta(days=2)]
