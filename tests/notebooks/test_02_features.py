import pytest
from pyspark.sql import functions as F

from lib.features import store as feature_store

pytestmark = pytest.mark.slow


def test_feature_tables_and_labels_cover_every_flight(executed, ingested, staging, task_values):
    with executed("pipelines/02_features.ipynb", env="staging"):
        pass
    flights = ingested.read(staging.raw_table("flights"))
    weather = ingested.read(staging.raw_table("weather"))
    hours = weather.select("origin", "year", "month", "day", "hour").distinct().count()
    expected = {
        "flight_features": flights.count(),
        "weather_features": hours,
        "history_features": flights.count(),  # aggregates: a row per spine row
        "labels": flights.where(F.col("arr_delay").isNotNull()).count(),
    }
    assert task_values()["feature_rows"] == expected
    assert {t: ingested.read(staging.table(t)).count() for t in expected} == expected
    props = ingested.properties(staging.table("flight_features"))
    assert (props[feature_store.PRIMARY_KEYS], props[feature_store.TIMESTAMP_KEY]) == ("flight_id", "sched_dep_ts")
