import os

import pandas as pd
import pytest
from pyspark.sql import functions as F

from lib.features.tables import in_window
from lib.platform.services import postgres
from lib.serving import online_store

pytestmark = pytest.mark.slow


def test_batch_inference_publishes_the_period(executed, champion, featurized, staging, task_values):
    with executed("pipelines/06_batch_inference.ipynb", env="staging", as_of="2013-03-01"):
        pass
    start, end = staging.data.split(staging.data.as_of).score
    expected = in_window(featurized.read(staging.table("flight_features")), "sched_dep_ts", start, end).count()
    assert task_values() == {
        "predictions_table": "staging.flights.predictions",
        "scored_rows": expected,
        "destinations": ["delta", "files", "online", "jdbc"],
    }
    published = featurized.read(staging.table("predictions"))
    assert published.count() == expected
    assert [tuple(r) for r in published.select("model_version", "period_start").distinct().collect()] == [("1", start)]
    assert published.where(F.col("prediction").isNull()).count() == 0
    # The files and the online store hold the same period (conf/environments.yml publish).
    files = featurized.export_path(staging.table("predictions")) / f"{start}_{end}"
    assert len(pd.read_parquet(files / "parquet")) == expected
    flight = published.orderBy("flight_id").first()
    held = online_store.prediction(online_store.store_path(staging.home, staging.catalog), flight["flight_id"])
    assert held["prediction"] == pytest.approx(flight["prediction"], abs=1e-12)
    with postgres.connect(os.environ[postgres.URL_ENV_VAR], "staging") as conn:  # jdbc: on in staging
        assert (
            conn.execute(
                "SELECT count(*) FROM flights.predictions WHERE sched_dep_ts >= %s AND sched_dep_ts < %s", (start, end)
            ).fetchone()[0]
            == expected
        )
