import datetime as dt

import pandas as pd
import pytest

from lib.inference import feed, streaming

pytestmark = pytest.mark.slow


def test_streaming_inference_scores_what_arrived_and_sets_bad_rows_aside(
    executed, champion, featurized, staging, task_values, kafka_broker, model_cfg
):
    day = dt.datetime.combine(staging.data.as_of, dt.time())
    source, key = feed.incoming(model_cfg), model_cfg.spine.id
    fed = feed.replay(featurized, model_cfg, day, day + dt.timedelta(hours=12), dt.timedelta(hours=12), 0, say=lambda line: None)
    feed.append(
        featurized,
        source,
        featurized.spark.createDataFrame(
            pd.DataFrame([("2013-03-01_ZZ1_SFO", "SFO", "2013-03-01 08:00:00")], columns=list(source.fields))
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
    out = featurized.read(staging.table(streaming.PREDICTIONS)).select(key, "model_version", "model_alias").toPandas()
    assert out[key].nunique() == fed and set(map(tuple, out[["model_version", "model_alias"]].values)) == {
        (champion.version, "Champion")
    }
    quarantined = featurized.read(staging.table(source.quarantine)).first()
    assert (quarantined[key], quarantined[streaming.REASON]) == ("2013-03-01_ZZ1_SFO", "unknown origin: SFO")


def test_streaming_inference_refuses_a_bad_trigger(executed, home):
    with pytest.raises(Exception, match="trigger must be 'availableNow' or an interval"):
        with executed("pipelines/06_streaming_inference.ipynb", env="staging", trigger="every now and then"):
            pass
