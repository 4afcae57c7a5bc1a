import pytest

from lib import registry
from lib.registry import CHALLENGER

pytestmark = pytest.mark.slow


def test_validate_passes_and_names_the_challenger(executed, trained, task_values):
    with executed("pipelines/04_validate.ipynb", env="staging", model_uri=trained.uri) as tb:
        assert tb.value("report.passed") is True
    assert task_values() == {"model_uri": trained.uri, "validation_status": "PASSED"}
    assert registry.require_version(trained).tags["model_validation_status"] == "PASSED"
    assert registry.version_of(trained.name, CHALLENGER) == trained


def test_a_degraded_model_fails_and_stops_the_notebook(executed, featurized, mlflow_env, holdout, model_cfg, task_values):
    """Trained on shuffled labels: FAILED, no Challenger, and the hand-on cell never runs."""
    from lib import features, training

    train = features.load_labelled(featurized, mlflow_env, mlflow_env.data.split(mlflow_env.data.as_of).train)
    train["delayed"] = train["delayed"].sample(frac=1.0, random_state=0).to_numpy()
    ref = training.log_and_register(training.fit(train, model_cfg), train, holdout, model_cfg, mlflow_env.model_name, {})
    with pytest.raises(Exception, match=r"failed validation: roc_auc 0\.\d+ \(minimum 0.6\) FAIL"):
        with executed("pipelines/04_validate.ipynb", env="staging", model_uri=ref.uri):
            pass
    assert registry.require_version(ref).tags["model_validation_status"] == "FAILED"
    assert registry.version_of(ref.name, CHALLENGER) is None
    assert task_values() == {}
