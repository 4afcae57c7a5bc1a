import pytest
from pyspark.sql import functions as F


pytestmark = pytest.mark.slow


def test_features_and_labels_cover_every_flight(executed, ingested, staging, task_values):
    with executed("pipelines/02_features.ipynb", env="staging"):
        pass
    flights = ingested.read(staging.raw_table("flights"))
    expected = {"flight_features": flights.count(), "labels": flights.where(F.col("arr_delay").isNotNull()).count()}
    assert task_values()["feature_rows"] == expected
    assert {t: ingested.read(staging.table(t)).count() for t in expected} == expected
