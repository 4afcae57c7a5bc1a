import datetime as dt

import pandas as pd
import pytest

from lib.features.tables import KEY
from lib.inference import feed, streaming

pytestmark = pytest.mark.slow


def test_streaming_inference_scores_what_arrived_and_sets_bad_rows_aside(
    executed, champion, featurized, staging, task_values, kafka_broker
):
    day = dt.datetime.combine(staging.data.as_of, dt.time())
    fed = feed.replay(featurized, day, day + dt.timedelta(hours=12), dt.timedelta(hours=12), 0, say=lambda line: None)
    feed.append(
        featurized,
        featurized.spark.createDataFrame(
            pd.DataFrame([("2013-03-01_ZZ1_SFO", "SFO", "2013-03-01 08:00:00")], columns=list(streaming.FIELDS))
        ),
    )
    with executed("pipelines/06_streaming_inference.ipynb", env="staging", trigger="availableNow"):
        pass
    assert task_values() == {
        "predictions_table": "staging.flights.streaming_predictions",
        "micro_batches": 1,
        "streamed_rows": fed + 1,
        "predictions": fed,
        "quarantined": 1,
    }
    out = featurized.read(staging.table(streaming.PREDICTIONS)).select(KEY, "model_version", "model_alias").toPandas()
    assert out[KEY].nunique() == fed and set(map(tuple, out[["model_version", "model_alias"]].values)) == {
        (champion.version, "Champion")
    }
    quarantined = featurized.read(staging.table(streaming.QUARANTINE)).first()
    assert (quarantined[KEY], quarantined[streaming.REASON]) == ("2013-03-01_ZZ1_SFO", "unknown origin: SFO")


def test_streaming_inference_refuses_a_bad_trigger(executed, home):
    with pytest.raises(Exception, match="trigger must be 'availableNow' or an interval"):
        with executed("pipelines/06_streaming_inference.ipynb", env="staging", trigger="every now and then"):
            pass
