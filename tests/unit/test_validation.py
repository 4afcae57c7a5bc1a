import mlflow
import numpy as np
import pandas as pd
import pytest

from lib.core.config.model import Slices, Threshold
from lib.core.errors import ValidationFailedError
from lib.core.names import CHALLENGER
from lib.lifecycle import training, validation
from lib.platform import registry
from lib.platform.registry import ModelRef


def by_name(report):
    return {c.name: c for c in report.checks}


def test_a_good_version_passes_every_check_and_becomes_challenger(trained, run_validation, holdout, model_cfg):
    report = run_validation(trained, model_cfg)
    checks = by_name(report)
    assert set(checks) == {
        "format",
        "signature",
        "input_example",
        "feature_lookups",
        "performance.roc_auc",
        "slice.origin",
        "slice.carrier",
        "slice.month",
        "compliance.tags",
        "compliance.description",
    }
    assert report.passed, report.summary()
    assert report.metrics["roc_auc"] == pytest.approx(
        training.evaluation.classification_metrics(holdout["delayed"], registry.predict(trained, holdout))["roc_auc"]
    )
    assert validation.record(report, by="job-1") == "PASSED"
    tags = registry.require_version(trained).tags
    assert tags["model_validation_status"] == "PASSED" and tags["validation.mode"] == "enabled"
    assert (
        tags["validation.performance.roc_auc"].startswith("PASS: 0.")
        and "(needs >= 0.6)" in tags["validation.performance.roc_auc"]
    )
    assert tags["alias.Challenger.by"] == "job-1" and "validation passed" in tags["alias.Challenger.reason"]
    assert registry.version_of(trained.name, CHALLENGER) == trained
    run = mlflow.search_runs(filter_string="tags.model_validation_status = 'PASSED'")
    assert len(run) == 1 and run["metrics.roc_auc"][0] == pytest.approx(report.metrics["roc_auc"])


def test_format_and_metadata_checks_fail_on_a_bare_model(mlflow_env, featurized, model_cfg):
    class Bare(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return np.zeros(len(model_input))

    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="m", python_model=Bare(), registered_model_name=mlflow_env.model_name, pip_requirements=["mlflow"]
        )
    ref = ModelRef(mlflow_env.model_name, str(info.registered_model_version))
    model, checks = validation.check_model(ref, training.input_columns(model_cfg))
    assert [(c.name, c.passed) for c in checks] == [("format", True), ("signature", False), ("input_example", False)]
    assert validation.check_feature_lookups(model, featurized).value == "none packaged"
    broken = registry.client().create_model_version(mlflow_env.model_name, source="/nowhere/model")
    _, checks = validation.check_model(ModelRef(mlflow_env.model_name, str(broken.version)), [])
    assert checks[0].name == "format" and not checks[0].passed and checks[0].value.startswith("does not load")


def test_signature_must_match_the_configured_features(trained):
    _, checks = validation.check_model(trained, ["carrier", "seats"])
    signature = by_name(validation.Report(trained, "enabled", checks))["signature"]
    assert not signature.passed and signature.value.startswith("missing ['seats'], unexpected ['origin'")


def test_feature_lookups_fail_when_a_table_is_gone(trained, featurized, staging):
    import shutil

    model = mlflow.pyfunc.load_model(trained.uri)
    assert validation.check_feature_lookups(model, featurized).passed
    shutil.rmtree(featurized.path(staging.table("weather_features")))
    check = validation.check_feature_lookups(model, featurized)
    assert not check.passed and check.value == "staging.flights.weather_features does not exist"


def frame(auc_noise: float, n=2000, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    return pd.DataFrame({"delayed": y, "prediction": np.clip(y * 0.3 + rng.normal(0.35, auc_noise, size=n), 0, 1)})


@pytest.mark.parametrize(
    "rule,passed",
    [
        ({"min": 0.6}, [True]),
        ({"min": 0.999}, [False]),
        ({"min": 0.6, "min_change_vs_champion": 0.05}, [True, True]),
        ({"min_change_vs_champion": 0.5}, [False]),
    ],
)
def test_performance_rules_are_judged_by_mlflow(mlflow_env, rule, passed):
    with mlflow.start_run():
        good = validation.evaluate(frame(0.2), "delayed", 0.5, "candidate")
        weak = validation.evaluate(frame(0.6, seed=1), "delayed", 0.5, "champion")
    checks = validation.check_performance(good, weak, {"roc_auc": Threshold(**rule)}, "Champion v1")
    assert [c.passed for c in checks] == passed
    assert good.metrics["roc_auc"] > weak.metrics["roc_auc"] + 0.05
    # Without a Champion there is nothing to change against: only the absolute rule is judged.
    assert len(validation.check_performance(good, None, {"roc_auc": Threshold(**rule)}, None)) == int("min" in rule)


def test_a_lower_is_better_gate_fails_the_right_way(mlflow_env):
    with mlflow.start_run():
        good = validation.evaluate(frame(0.2), "delayed", 0.5, "candidate")
        weak = validation.evaluate(frame(0.6, seed=1), "delayed", 0.5, "champion")
    loss = good.metrics["log_loss"]
    assert loss < weak.metrics["log_loss"] - 0.05

    def judge(rule, candidate=good, champion=None):
        against = "Champion v1" if champion else None
        checks = validation.check_performance(candidate, champion, {"log_loss": Threshold(**rule)}, against)
        return [(c.name, c.threshold, c.passed) for c in checks]

    assert judge({"max": loss + 0.01}) == [("performance.log_loss", f"<= {loss + 0.01}", True)]
    assert judge({"max": loss - 0.01}) == [("performance.log_loss", f"<= {loss - 0.01}", False)]
    # A bound against the metric's direction (MLflow cannot express it) is compared as written.
    assert judge({"min": loss - 0.01}) == [("performance.log_loss", f">= {loss - 0.01}", True)]
    assert judge({"max": 9.0, "min": loss + 0.01}) == [
        ("performance.log_loss", "<= 9.0", True),
        ("performance.log_loss_min", f">= {loss + 0.01}", False),
    ]
    # Against the Champion: lower by at least the change.
    assert judge({"min_change_vs_champion": 0.05}, good, weak) == [("performance.log_loss_vs_champion", "<= -0.05", True)]
    assert judge({"min_change_vs_champion": 0.05}, weak, good) == [("performance.log_loss_vs_champion", "<= -0.05", False)]


def test_slices_fail_below_the_floor_and_skip_small_slices():
    table = pd.DataFrame(
        {
            "slice_key": ["origin"] * 3 + ["carrier"] * 2,
            "slice_value": ["EWR", "JFK", "LGA", "UA", "XX"],
            "rows": [900, 800, 20, 500, 10],
            "roc_auc": [0.61, 0.55, 0.10, 0.70, 0.2],
        }
    )
    cfg = Slices(columns=["origin", "carrier"], metric="roc_auc", min=0.58, min_rows=300)
    checks = {c.name: c for c in validation.check_slices(table, cfg)}
    assert not checks["slice.origin"].passed and checks["slice.origin"].value.startswith("worst JFK roc_auc 0.5500 of 2")
    assert checks["slice.carrier"].passed
    assert all(c.passed for c in validation.check_slices(table, cfg.model_copy(update={"min": 0.5})))
    # A max on roc_auc (against its direction) looks at the highest judged slice.
    capped = {c.name: c for c in validation.check_slices(table, cfg.model_copy(update={"min": 0.5, "max": 0.65}))}
    assert not capped["slice.carrier"].passed and capped["slice.carrier"].value.startswith("worst UA roc_auc 0.7000, highest UA")
    assert capped["slice.origin"].passed and capped["slice.origin"].threshold.startswith("roc_auc >= 0.5 and roc_auc <= 0.65")


def test_a_lower_is_better_slice_is_judged_by_its_highest_value():
    table = pd.DataFrame(
        {
            "slice_key": ["origin"] * 3,
            "slice_value": ["EWR", "JFK", "LGA"],
            "rows": [900, 800, 20],
            "log_loss": [0.55, 0.70, 2.0],  # LGA is too small to judge
        }
    )
    cfg = Slices(columns=["origin"], metric="log_loss", max=0.6, min_rows=300)
    (check,) = validation.check_slices(table, cfg)
    assert not check.passed and check.value == "worst JFK log_loss 0.7000 of 2 slices"
    assert check.threshold == "log_loss <= 0.6 in slices of 300+ rows"
    (check,) = validation.check_slices(table, cfg.model_copy(update={"max": 0.75}))
    assert check.passed


def test_slice_metrics_per_value(model_cfg):
    df = frame(0.2).assign(origin=["EWR", "JFK"] * 1000)
    table = validation.slice_metrics(df, ["origin"], "roc_auc", "delayed", 0.5)
    assert list(table["slice_value"]) == ["EWR", "JFK"] and list(table["rows"]) == [1000, 1000]


def test_compliance_needs_tags_and_description(trained, model_cfg):
    cfg = model_cfg.validation.compliance
    assert all(c.passed for c in validation.check_compliance(trained, cfg))
    registry.client().delete_model_version_tag(trained.name, trained.version, "git_commit")
    registry.client().update_model_version(trained.name, trained.version, description="")
    tags, description = validation.check_compliance(trained, cfg)
    assert not tags.passed and tags.value == "missing git_commit"
    assert not description.passed and description.value == "missing"


def demanding(model_cfg):
    """The model config with a held-out ROC AUC floor no model here reaches."""
    thresholds = {"roc_auc": Threshold(min=0.99)}
    return model_cfg.model_copy(update={"validation": model_cfg.validation.model_copy(update={"thresholds": thresholds})})


def test_enabled_failure_is_tagged_raises_and_gets_no_alias(trained, run_validation, model_cfg):
    strict = demanding(model_cfg)
    report = run_validation(trained, strict)
    assert [c.name for c in report.failed] == ["performance.roc_auc"]
    with pytest.raises(ValidationFailedError, match=r"failed validation: performance.roc_auc 0\.\d+ \(needs >= 0.99\) FAIL"):
        validation.record(report)
    tags = registry.require_version(trained).tags
    assert tags["model_validation_status"] == "FAILED" and tags["validation.performance.roc_auc"].startswith("FAIL")
    assert registry.version_of(trained.name, CHALLENGER) is None


def test_dry_run_reports_but_never_blocks(trained, run_validation, model_cfg):
    strict = demanding(model_cfg)
    assert validation.record(run_validation(trained, strict, "dry_run")) == "FAILED"
    tags = registry.require_version(trained).tags
    assert tags["model_validation_status"] == "FAILED" and tags["validation.mode"] == "dry_run"
    assert registry.version_of(trained.name, CHALLENGER) == trained
    assert tags["alias.Challenger.reason"].startswith("dry run: failed checks not enforced")


def test_disabled_runs_no_checks(trained, run_validation, model_cfg):
    report = run_validation(trained, model_cfg, "disabled")
    assert report.checks == [] and validation.record(report) == "PENDING"
    assert registry.version_of(trained.name, CHALLENGER) == trained
    assert registry.require_version(trained).tags["validation.mode"] == "disabled"


@pytest.mark.parametrize("override,expected", [("", "enabled"), ("dry_run", "dry_run"), ("disabled", "disabled")])
def test_run_mode(model_cfg, override, expected):
    assert validation.run_mode(override, model_cfg.validation.mode) == expected


def test_unknown_run_mode_is_one_line(model_cfg):
    from lib.core.errors import ConfigError

    with pytest.raises(ConfigError, match="run_mode must be one of enabled, dry_run, disabled or '', got 'strict'"):
        validation.run_mode("strict", model_cfg.validation.mode)


def test_degraded_model_fails(make_version, run_validation, model_cfg, train_set):
    """A model trained on shuffled labels must not pass the gate."""
    shuffled = train_set.assign(delayed=train_set["delayed"].sample(frac=1.0, random_state=0).to_numpy())
    ref = make_version(shuffled)
    report = run_validation(ref, model_cfg)
    assert "performance.roc_auc" in [c.name for c in report.failed] and report.metrics["roc_auc"] < 0.6


def test_unknown_version_is_named(mlflow_env):
    from lib.core.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="models:/staging.flights.delay_model/7 is not registered"):
        registry.require_version(ModelRef("staging.flights.delay_model", "7"))


def test_an_environment_validates_only_its_own_model(trained, staging):
    from lib.core.errors import AccessDeniedError
    from lib.platform.session import Session

    session = Session(staging, staging.data.as_of, staging.data.split(staging.data.as_of), {}, lakehouse=None)
    assert session.own_model(trained.uri) == trained
    with pytest.raises(
        AccessDeniedError, match="staging may only validate or deploy staging.flights.delay_model, not prod.flights.delay_model"
    ):
        session.own_model("models:/prod.flights.delay_model/1")
