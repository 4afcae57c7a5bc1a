import mlflow
import pytest
from nbclient.exceptions import CellExecutionError

from lib.monitoring import monitors
from lib.platform import registry
from lib.platform.registry import ModelRef

pytestmark = pytest.mark.slow


def test_train_registers_a_pending_version_with_its_hyperparameters_file(executed, featurized, staging, mlflow_env, task_values):
    weak = "conf/examples/weak_model.yml"
    with executed("pipelines/03_train.ipynb", env="staging", as_of="2013-03-01", hyperparameters=weak) as tb:
        train_rows = tb.value("len(train)")
    values = task_values()
    assert values == {
        "model_uri": "models:/staging.flights.delay_model/1",
        "model_name": "staging.flights.delay_model",
        "model_version": "1",
    }
    version = registry.require_version(ModelRef.parse(values["model_uri"]))
    assert version.tags["model_validation_status"] == "PENDING"
    assert version.tags["train_window"] == "2013-01-11/2013-02-22"
    assert version.tags["hyperparameters_file"] == weak
    run = mlflow.get_run(version.tags["run_id"])
    assert run.data.params["train_rows"] == str(train_rows)
    assert (run.data.params["max_iter"], run.data.params["max_depth"]) == ("1", "2")
    assert run.data.metrics["holdout_roc_auc"] == 0.5  # the weak model never splits: every row gets the base rate
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {
        "roc_curve.png",
        "precision_recall_curve.png",
        "confusion_matrix.png",
        "calibration_curve.png",
        "feature_importance.png",
    } <= artifacts
    # The training set with the version's predictions is its monitoring baseline.
    baseline = featurized.read(staging.table("delay_model_baseline"))
    assert baseline.count() == min(train_rows, monitors.load_monitors()["predictions"].baseline_max_rows)
    assert {r["model_version"] for r in baseline.select("model_version").distinct().collect()} == {"1"}
    assert {"flight_id", "sched_dep_ts", "origin", "temp", "carrier", "delayed", "prediction"} <= set(baseline.columns)
    assert baseline.where("prediction < 0 OR prediction > 1 OR prediction IS NULL").count() == 0


def test_an_unknown_hyperparameters_file_stops_before_training(executed, featurized, mlflow_env):
    with pytest.raises(CellExecutionError) as failed:
        with executed("pipelines/03_train.ipynb", env="staging", hyperparameters="nope.yml"):
            pass
    assert (failed.value.ename, failed.value.evalue) == ("ConfigError", "config file nope.yml is missing")
    assert registry.aliases("staging.flights.delay_model") == {}
    assert registry.client().search_model_versions("name = 'staging.flights.delay_model'") == []
