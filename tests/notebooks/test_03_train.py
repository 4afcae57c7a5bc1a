import mlflow
import pytest

from lib import registry
from lib.registry import ModelRef

pytestmark = pytest.mark.slow


def test_train_registers_a_pending_version(executed, featurized, mlflow_env, task_values):
    with executed("pipelines/03_train.ipynb", env="staging", as_of="2013-03-01") as tb:
        train_rows = tb.value("len(train)")
    values = task_values()
    assert values == {"model_uri": "models:/staging.flights.delay_model/1",
                      "model_name": "staging.flights.delay_model", "model_version": "1"}
    version = registry.require_version(ModelRef.parse(values["model_uri"]))
    assert version.tags["model_validation_status"] == "PENDING"
    assert version.tags["train_window"] == "2013-01-11/2013-02-22"
    run = mlflow.get_run(version.tags["run_id"])
    assert run.data.params["train_rows"] == str(train_rows)
    assert 0.5 < run.data.metrics["holdout_roc_auc"] <= 1.0
