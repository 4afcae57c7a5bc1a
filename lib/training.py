"""Training: fit the delay classifier, measure it, log it to MLflow and register it."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

import mlflow
from lib import registry
from lib.errors import ConfigError, LakehouseError
from lib.registry import VALIDATION_STATUS, ModelRef

# Pinned so that log_model skips its slow requirement inference (~4 s).
_REQUIREMENTS = ["mlflow", "scikit-learn", "pandas", "numpy", "cloudpickle"]


class DelayModel(mlflow.pyfunc.PythonModel):
    """The pyfunc that is logged: features in, probability that the flight is delayed out."""

    def __init__(self, pipeline: Pipeline, columns: list[str]):
        self.pipeline = pipeline
        self.columns = columns

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        return self.pipeline.predict_proba(model_input[self.columns])[:, 1]


def feature_columns(model_cfg: dict[str, Any]) -> list[str]:
    return list(model_cfg["features"]["categorical"]) + list(model_cfg["features"]["numeric"])


def make_pipeline(model_cfg: dict[str, Any]) -> Pipeline:
    """Ordinal-encode the categoricals, then a HistGradientBoostingClassifier."""
    categorical = list(model_cfg["features"]["categorical"])
    encode = ColumnTransformer(
        [("categorical", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                        encoded_missing_value=-1), categorical)],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    try:
        classifier = HistGradientBoostingClassifier(
            categorical_features=list(range(len(categorical))), **model_cfg["hyperparameters"]
        )
    except TypeError as exc:
        raise ConfigError(f"conf/model.yml hyperparameters: {exc}") from None
    return Pipeline([("encode", encode), ("classify", classifier)])


def fit(train: pd.DataFrame, model_cfg: dict[str, Any]) -> DelayModel:
    """Fit on a labelled pandas frame; refuses an empty or one-class training set."""
    label = model_cfg["label"]
    if len(train) == 0:
        raise LakehouseError("the training window holds no labelled flights: check the as-of date and ingestion")
    if train[label].nunique() < 2:
        raise LakehouseError(f"the training window has only one class of {label}: widen train_days")
    columns = feature_columns(model_cfg)
    pipeline = make_pipeline(model_cfg)
    try:
        pipeline.fit(train[columns], train[label])
    except ValueError as exc:
        raise ConfigError(f"training failed, check conf/model.yml hyperparameters: {exc}") from None
    return DelayModel(pipeline, columns)


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """The metrics every stage speaks: roc_auc, accuracy, precision, recall, f1, log_loss."""
    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype=float)
    predicted = (proba >= threshold).astype(int)
    out = {
        "accuracy": skm.accuracy_score(y_true, predicted),
        "precision": skm.precision_score(y_true, predicted, zero_division=0),
        "recall": skm.recall_score(y_true, predicted, zero_division=0),
        "f1": skm.f1_score(y_true, predicted, zero_division=0),
        "positive_rate": float(y_true.mean()) if len(y_true) else float("nan"),
        "count": float(len(y_true)),
    }
    both = len(np.unique(y_true)) == 2
    out["roc_auc"] = skm.roc_auc_score(y_true, proba) if both else float("nan")
    out["log_loss"] = skm.log_loss(y_true, np.clip(proba, 1e-6, 1 - 1e-6), labels=[0, 1]) if len(y_true) else float("nan")
    return {k: float(v) for k, v in out.items()}


def log_and_register(model: DelayModel, train: pd.DataFrame, holdout: pd.DataFrame,
                     model_cfg: dict[str, Any], model_name: str, run_tags: dict[str, str]) -> ModelRef:
    """Log params, held-out metrics and the model (with signature) to MLflow; register it.

    Returns the new version, tagged model_validation_status=PENDING.
    """
    from mlflow.models import infer_signature

    label = model_cfg["label"]
    columns = model.columns
    holdout_metrics = classification_metrics(
        holdout[label], model.predict(None, holdout), model_cfg["inference"]["decision_threshold"]
    )
    example = train[columns].head(5)
    signature = infer_signature(example, model.predict(None, example))
    with mlflow.start_run(run_name=f"train {run_tags.get('as_of', '')}".strip()) as run:
        mlflow.set_tags(run_tags)
        mlflow.log_params({**model_cfg["hyperparameters"], "features": ",".join(columns),
                           "train_rows": len(train), "holdout_rows": len(holdout)})
        mlflow.log_metrics({f"holdout_{k}": v for k, v in holdout_metrics.items() if np.isfinite(v)})
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=model,
            signature=signature,
            input_example=example,
            registered_model_name=model_name,
            pip_requirements=[f"{p}=={importlib.metadata.version(p)}" for p in _REQUIREMENTS],
        )
    ref = ModelRef(model_name, str(info.registered_model_version))
    registry.set_tags(ref, {**run_tags, "run_id": run.info.run_id, VALIDATION_STATUS: "PENDING"})
    return ref
