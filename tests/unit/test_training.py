import math

import mlflow
import numpy as np
import pandas as pd
import pytest

from lib.core.config import Hyperparameters
from lib.core.errors import ConfigError, LakehouseError
from lib.features import store as feature_store
from lib.lifecycle import evaluation, training
from lib.platform import registry


def test_metrics_on_a_known_case():
    m = evaluation.classification_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9]), 0.5)
    assert m["accuracy"] == 0.5 and m["precision"] == 0.5 and m["recall"] == 0.5
    assert m["roc_auc"] == 0.75 and m["count"] == 4 and m["positive_rate"] == 0.5


def test_roc_auc_is_nan_with_one_class():
    assert math.isnan(evaluation.classification_metrics(np.array([1, 1]), np.array([0.2, 0.9]))["roc_auc"])


def toy(model_cfg, n=400, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({c: rng.normal(size=n) for c in model_cfg.features.numeric})
    for c in model_cfg.features.categorical:
        df[c] = rng.choice(["A", "B", "C"], size=n)
    df["sched_dep_ts"] = pd.Timestamp("2013-03-01") + pd.to_timedelta(rng.integers(0, 7 * 24 * 60, size=n), unit="min")
    df["delayed"] = (df["dep_hour"] + 0.3 * rng.normal(size=n) > 0).astype(int)
    return df


@pytest.mark.parametrize("algorithm,params", [("hist_gradient_boosting", {"max_iter": 50}), ("logistic_regression", {"C": 1.0})])
def test_fit_learns_a_signal(model_cfg, algorithm, params):
    train, test = toy(model_cfg, seed=1), toy(model_cfg, seed=2)
    model = training.fit(train, model_cfg, Hyperparameters(algorithm=algorithm, params=params))
    assert evaluation.classification_metrics(test["delayed"], model.predict(None, test))["roc_auc"] > 0.9


def as_regression(model_cfg):
    """The flights' model config predicting a number (toy's `minutes`) instead of a class."""
    deployment = model_cfg.deployment.model_copy(update={"metric": "rmse"})
    update = {"problem_type": "regression", "label": "minutes", "description": "", "deployment": deployment}
    return model_cfg.model_copy(update=update)


def with_minutes(df, seed):
    return df.assign(minutes=10 * df["dep_hour"] + np.random.default_rng(seed).normal(size=len(df)))


@pytest.mark.parametrize("algorithm,params", [("hist_gradient_boosting", {"max_iter": 50}), ("ridge", {"alpha": 1.0})])
def test_a_regression_predicts_values(model_cfg, algorithm, params):
    train, test = with_minutes(toy(model_cfg, seed=1), 1), with_minutes(toy(model_cfg, seed=2), 2)
    model = training.fit(train, as_regression(model_cfg), Hyperparameters(algorithm=algorithm, params=params))
    assert model.pipeline.steps[-1][0] == "regress" and not hasattr(model.pipeline, "predict_proba")
    predicted = model.predict(None, test)
    assert predicted.min() < -5 and predicted.max() > 5  # values, not probabilities
    m = evaluation.regression_metrics(test["minutes"], predicted)
    assert m["rmse"] < 0.3 * test["minutes"].std() and m["r2"] > 0.9


def test_an_algorithm_of_the_other_problem_type_is_a_config_error(model_cfg):
    with pytest.raises(ConfigError, match="algorithm ridge does not fit problem_type binary_classification: use one of"):
        training.make_pipeline(model_cfg, Hyperparameters(algorithm="ridge"))
    with pytest.raises(ConfigError, match="algorithm logistic_regression does not fit problem_type regression"):
        training.make_pipeline(as_regression(model_cfg), Hyperparameters(algorithm="logistic_regression"))


def test_a_regression_label_must_be_numeric_but_may_be_constant(model_cfg):
    regression = as_regression(model_cfg)
    ridge = Hyperparameters(algorithm="ridge")
    constant = training.fit(toy(model_cfg).assign(minutes=7.0), regression, ridge)  # no one-class refusal for a number
    assert constant.predict(None, toy(model_cfg))[:3] == pytest.approx([7.0] * 3)
    with pytest.raises(LakehouseError, match="the regression label minutes is not numeric"):
        training.fit(toy(model_cfg).assign(minutes="late"), regression, ridge)


def test_fit_refuses_empty_and_one_class(model_cfg, hyper):
    with pytest.raises(LakehouseError, match="holds no labelled rows"):
        training.fit(toy(model_cfg).iloc[:0], model_cfg, hyper)
    one = toy(model_cfg).assign(delayed=1)
    with pytest.raises(LakehouseError, match="only one class"):
        training.fit(one, model_cfg, hyper)


def test_bad_hyperparameter_is_a_config_error(model_cfg):
    hyper = Hyperparameters(algorithm="hist_gradient_boosting", params={"learning_rate": 0.1, "max_depht": 3})
    with pytest.raises(ConfigError, match="hyperparameters for hist_gradient_boosting: .*max_depht"):
        training.fit(toy(model_cfg), model_cfg, hyper)


def test_log_and_register_creates_a_documented_pending_version(mlflow_env, model_cfg, hyper):
    model = training.fit(toy(model_cfg), model_cfg, hyper)
    lookups = feature_store.lookups(model_cfg.feature_lookups, "staging", "flights")
    ref = training.log_and_register(
        model,
        toy(model_cfg),
        toy(model_cfg, seed=3),
        model_cfg,
        hyper,
        lookups,
        mlflow_env.model_name,
        {"as_of": "2013-03-01", "train_window": "a/b"},
    )
    assert ref == registry.ModelRef("staging.flights.delay_model", "1")
    mv = registry.require_version(ref)
    assert mv.tags["model_validation_status"] == "PENDING" and mv.tags["as_of"] == "2013-03-01"
    assert mv.tags["git_commit"] == training.git_commit() and len(mv.tags["git_commit"].split("-")[0]) == 40
    assert mv.tags["feature_lookups"].startswith("staging.flights.flight_features by flight_id as of sched_dep_ts; ")
    assert (
        "hist_gradient_boosting on 19 features (hour_of_week, days_to_holiday, distance_bucket computed on demand), looked up"
        in mv.description
        and "trained on a/b" in mv.description
    )
    run = mlflow.get_run(mv.tags["run_id"])
    assert run.data.metrics["holdout_roc_auc"] > 0.9
    assert run.data.params["train_rows"] == "400" and run.data.params["algorithm"] == "hist_gradient_boosting"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {
        "roc_curve.png",
        "precision_recall_curve.png",
        "confusion_matrix.png",
        "calibration_curve.png",
        "feature_importance.png",
        "feature_importance.json",
    } <= artifacts
    loaded = mlflow.pyfunc.load_model(ref.uri)
    assert loaded.metadata.get_input_schema().input_names() == training.input_columns(model_cfg)
    assert [feature_store.FeatureLookup.from_dict(d) for d in loaded.metadata.metadata["feature_lookups"]] == lookups
    assert loaded.metadata.metadata["keys"] == ["flight_id", "origin", "sched_dep_ts"]
    assert loaded.metadata.metadata["on_demand_features"] == [  # computed by the model, from its inputs
        {"function": "hour_of_week", "inputs": {"ts": "sched_dep_ts"}, "output": "hour_of_week"},
        {"function": "days_to_holiday", "inputs": {"ts": "sched_dep_ts"}, "output": "days_to_holiday"},
        {"function": "flights_features:distance_bucket", "inputs": {"distance": "distance"}, "output": "distance_bucket"},
    ]
    sample = toy(model_cfg, n=5)
    assert np.allclose(loaded.predict(sample), model.predict(None, sample))


def test_feature_importance_ranks_the_signal_first(model_cfg, hyper):
    train, test = toy(model_cfg, seed=1), toy(model_cfg, seed=2)
    model = training.fit(train, model_cfg, hyper)
    importance = evaluation.feature_importance(model.pipeline, test, test["delayed"].to_numpy(), model.columns)
    assert importance.index[0] == "dep_hour" and importance.iloc[0] > 0.2


def test_model_uri_parsing():
    assert registry.ModelRef.parse("models:/prod.flights.delay_model/12").version == "12"
    for bad in ["models:/prod.flights.delay_model@Champion", "runs:/abc/model", "", "models:/x/"]:
        with pytest.raises(LakehouseError, match="must look like models:/"):
            registry.ModelRef.parse(bad)


def test_a_regression_version_is_described_and_pictured_as_one(mlflow_env, model_cfg):
    regression, ridge = as_regression(model_cfg), Hyperparameters(algorithm="ridge")
    model = training.fit(with_minutes(toy(model_cfg), 0), regression, ridge)
    lookups = feature_store.lookups(model_cfg.feature_lookups, "staging", "flights")
    holdout = with_minutes(toy(model_cfg, seed=3), 3)
    ref = training.log_and_register(model, holdout, holdout, regression, ridge, lookups, mlflow_env.model_name, {})
    mv = registry.require_version(ref)
    assert mv.description.startswith("Predicted minutes. ridge on 19 features") and "held-out rmse 0." in mv.description
    described = regression.model_copy(update={"description": "Minutes of delay."})
    assert training.describe(described, ridge, {}, {"rmse": 0.5}).startswith("Minutes of delay. ridge on 19 features")
    run = mlflow.get_run(mv.tags["run_id"])
    assert run.data.metrics["holdout_rmse"] < 1.5 and "holdout_roc_auc" not in run.data.metrics
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    expected = {"predicted_vs_actual.png", "residuals_by_origin.png", "residuals_by_carrier.png", "residuals_by_month.png"}
    assert expected <= artifacts and "roc_curve.png" not in artifacts
    assert registry.predict(ref, holdout.head(3)) == pytest.approx(model.predict(None, holdout.head(3)))


def test_a_constant_or_all_null_feature_is_warned_and_training_goes_on(model_cfg, capsys):
    train = toy(model_cfg).assign(temp=np.nan, visib=10.0)
    model = training.fit(train, model_cfg, Hyperparameters(algorithm="hist_gradient_boosting", params={"max_iter": 20}))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning: ")]
    assert lines == [
        f"warning: feature temp is null in all {len(train):,} rows of the training window",
        "warning: feature visib is constant (10.0) in the training window",
    ]
    assert len(model.predict(None, toy(model_cfg))) == 400
    assert training.uninformative(toy(model_cfg), model_cfg.features.columns[:5]) == []


def test_versions_logged_under_the_first_class_name_still_load():
    import pickle

    legacy = pickle.dumps(training.TabularModel(None, ["x"]), protocol=0).replace(
        b"TabularModel", b"DelayModel"
    )  # the bytes a version registered before the rename holds
    assert type(pickle.loads(legacy)) is training.TabularModel
    with pytest.raises(AttributeError, match="no attribute 'NoSuchModel'"):
        training.NoSuchModel  # noqa: B018
