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


def test_fit_refuses_empty_and_one_class(model_cfg, hyper):
    with pytest.raises(LakehouseError, match="holds no labelled flights"):
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
