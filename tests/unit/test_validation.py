import math

import pytest

from lib import registry, validation
from lib.errors import ValidationFailedError
from lib.registry import CHALLENGER, ModelRef


@pytest.mark.parametrize("metrics,passed", [({"roc_auc": 0.7}, [True]), ({"roc_auc": 0.6}, [True]),
                                            ({"roc_auc": 0.59}, [False]), ({"roc_auc": math.nan}, [False]),
                                            ({}, [False])])
def test_check_thresholds(metrics, passed):
    assert [c.passed for c in validation.check_thresholds(metrics, {"roc_auc": 0.6})] == passed


def test_passing_version_becomes_challenger(trained, holdout, model_cfg):
    report = validation.evaluate(trained, holdout, model_cfg)
    assert report.passed and report.metrics["count"] == len(holdout)
    validation.record(report)
    tags = registry.require_version(trained).tags
    assert tags["model_validation_status"] == "PASSED"
    assert tags["validation.roc_auc"].endswith("PASS")
    assert "validation passed" in tags["alias.Challenger.reason"]
    assert registry.version_of(trained.name, CHALLENGER) == trained


def test_failing_version_is_tagged_and_gets_no_alias(trained, holdout, model_cfg):
    strict = {**model_cfg, "validation": {"thresholds": {"roc_auc": 0.99}}}
    report = validation.evaluate(trained, holdout, strict)
    assert not report.passed
    with pytest.raises(ValidationFailedError, match=r"failed validation: roc_auc 0\.\d+ \(minimum 0.99\) FAIL"):
        validation.record(report)
    assert registry.require_version(trained).tags["model_validation_status"] == "FAILED"
    assert registry.version_of(trained.name, CHALLENGER) is None


def test_degraded_model_fails(featurized, mlflow_env, holdout, model_cfg):
    """A model trained on shuffled labels must not pass the gate."""
    from lib import features, training

    train = features.load_labelled(featurized, mlflow_env, mlflow_env.data.split(mlflow_env.data.as_of).train)
    train["delayed"] = train["delayed"].sample(frac=1.0, random_state=0).to_numpy()
    ref = training.log_and_register(training.fit(train, model_cfg), train, holdout, model_cfg,
                                    mlflow_env.model_name, {})
    report = validation.evaluate(ref, holdout, model_cfg)
    assert not report.passed and report.metrics["roc_auc"] < 0.6


def test_unknown_version_is_named(mlflow_env):
    from lib.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="models:/staging.flights.delay_model/7 is not registered"):
        registry.require_version(ModelRef("staging.flights.delay_model", "7"))


def test_an_environment_validates_only_its_own_model(trained, staging):
    from lib.errors import AccessDeniedError
    from lib.session import Session

    session = Session(staging, staging.data.as_of, staging.data.split(staging.data.as_of), {}, lakehouse=None)
    assert session.own_model(trained.uri) == trained
    with pytest.raises(AccessDeniedError, match="staging may only validate or deploy staging.flights.delay_model, "
                                                "not prod.flights.delay_model"):
        session.own_model("models:/prod.flights.delay_model/1")
