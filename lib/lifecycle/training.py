"""Training: fit the model (a classifier or a regressor, by model.yml problem_type), evaluate it,
log it to MLflow and register it.

The registered version carries everything needed to trust and use it: its run, data
windows, git commit, hyperparameters file, a description, and the feature lookups that
turn keys into features (in the model's metadata, so scoring needs only the keys).
"""

from __future__ import annotations

import importlib.metadata
import subprocess

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from lib.core import metrics as metric_registry
from lib.core.config import PROJECT_DIR, Hyperparameters, ModelConfig
from lib.core.config.model import ALGORITHMS_OF
from lib.core.errors import ConfigError, LakehouseError
from lib.core.names import VALIDATION_STATUS
from lib.features import on_demand
from lib.features.on_demand import OnDemandFeature
from lib.features.store import FeatureLookup
from lib.lifecycle import evaluation
from lib.platform import registry
from lib.platform.registry import ModelRef

# Pinned so that log_model skips its slow requirement inference (~4 s).
_REQUIREMENTS = ["mlflow", "scikit-learn", "pandas", "numpy", "cloudpickle"]


class TabularModel(PythonModel):  # by name: mypy cannot see through mlflow's lazily loaded `mlflow.pyfunc` attribute
    """The pyfunc that is logged: features in; out, the probability of the positive class for a
    classifier, the predicted value for a regressor.

    It computes its on-demand features itself, with the functions it was trained with. Registered
    versions pickle this class by reference: versions logged under its first name load through
    the module's `__getattr__` below.
    """

    on_demand: tuple[OnDemandFeature, ...] = ()  # versions logged before on-demand features have none

    def __init__(self, pipeline: Pipeline, columns: list[str], features: tuple[OnDemandFeature, ...] = ()):
        self.pipeline = pipeline
        self.columns = columns  # what the estimator sees, on-demand features included
        self.on_demand = tuple(features)

    @property
    def inputs(self) -> list[str]:
        """What the model is given: its columns but the on-demand ones, and what those are computed from."""
        return on_demand.model_inputs(self.columns, list(self.on_demand))

    def features(self, model_input: pd.DataFrame) -> pd.DataFrame:
        """The estimator's input: model_input with the on-demand features computed."""
        return on_demand.compute(model_input, list(self.on_demand))[self.columns]

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        features = self.features(model_input)
        # A Pipeline has predict_proba only when its estimator has: versions logged before
        # regression (all classifiers) need no new attribute to keep predicting probabilities.
        if hasattr(self.pipeline, "predict_proba"):
            return self.pipeline.predict_proba(features)[:, 1]
        return np.asarray(self.pipeline.predict(features), dtype=float)


# Versions registered before the rename pickled the class by its first name; unpickling looks
# that name up here. (The one dataset name left in lib/ on purpose: tests/unit/test_names.py
# allows this line.)
LEGACY_NAMES = {"DelayModel": TabularModel}


def __getattr__(name: str):
    if name in LEGACY_NAMES:
        return LEGACY_NAMES[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def feature_columns(model_cfg: ModelConfig) -> list[str]:
    """What the estimator sees, on-demand features included."""
    return model_cfg.features.columns


def input_columns(model_cfg: ModelConfig) -> list[str]:
    """What the logged model is given (its signature): the feature columns but the on-demand
    ones, and the columns those are computed from."""
    return on_demand.model_inputs(feature_columns(model_cfg), on_demand.of_model(model_cfg))


def make_pipeline(model_cfg: ModelConfig, hyper: Hyperparameters) -> Pipeline:
    """The estimator named by hyper.algorithm for model.yml's problem_type, with its encoding, built from hyper.params."""
    categorical = list(model_cfg.features.categorical)
    numeric = list(model_cfg.features.numeric)
    params, kind = hyper.params, model_cfg.problem_type
    if hyper.algorithm not in ALGORITHMS_OF[kind]:
        raise ConfigError(
            f"algorithm {hyper.algorithm} does not fit problem_type {kind}: use one of {', '.join(ALGORITHMS_OF[kind])}"
        )
    regression = kind == metric_registry.REGRESSION
    try:
        if hyper.algorithm == "hist_gradient_boosting":
            encode = ColumnTransformer(
                [
                    (
                        "categorical",
                        OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1),
                        categorical,
                    )
                ],
                remainder="passthrough",
                verbose_feature_names_out=False,
            )
            boosting = HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
            estimator = boosting(categorical_features=list(range(len(categorical))), **params)
        else:
            encode = ColumnTransformer(
                [
                    ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
                    ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric),
                ]
            )
            estimator = Ridge(**params) if regression else LogisticRegression(**{"max_iter": 1000, **params})
    except TypeError as exc:
        raise ConfigError(f"hyperparameters for {hyper.algorithm}: {exc}") from None
    return Pipeline([("encode", encode), ("regress" if regression else "classify", estimator)])


def fit(train: pd.DataFrame, model_cfg: ModelConfig, hyper: Hyperparameters) -> TabularModel:
    """Fit on a labelled pandas frame; refuses an empty or one-class training set."""
    label = model_cfg.label
    if len(train) == 0:
        raise LakehouseError("the training window holds no labelled rows: check the as-of date and ingestion")
    if model_cfg.problem_type == metric_registry.CLASSIFICATION and train[label].nunique() < 2:
        raise LakehouseError(f"the training window has only one class of {label}: widen train_days")
    if model_cfg.problem_type == metric_registry.REGRESSION and not pd.api.types.is_numeric_dtype(train[label]):
        raise LakehouseError(f"the regression label {label} is not numeric ({train[label].dtype}): cast it in the labels")
    columns = feature_columns(model_cfg)
    features = on_demand.of_model(model_cfg)
    missing = [c for c in on_demand.inputs(features) if c not in train.columns]
    if missing:
        raise ConfigError(f"on-demand features need column(s) {', '.join(missing)}, which the training set lacks")
    for warning in uninformative(train, [c for c in columns if c in train.columns]):
        print(f"warning: {warning}", flush=True)
    pipeline = make_pipeline(model_cfg, hyper)
    try:
        pipeline.fit(on_demand.compute(train, features)[columns], train[label])
    except ValueError as exc:
        raise ConfigError(f"training failed, check the hyperparameters: {exc}") from None
    return TabularModel(pipeline, columns, tuple(features))


def uninformative(train: pd.DataFrame, columns: list[str]) -> list[str]:
    """One line per feature that cannot help the model: all null, or one value, in the training window."""
    found = []
    for column in columns:
        values = train[column].dropna()
        if values.empty:
            found.append(f"feature {column} is null in all {len(train):,} rows of the training window")
        elif values.nunique() == 1:
            found.append(f"feature {column} is constant ({values.iloc[0]}) in the training window")
    return found


def scored(model: TabularModel, frame: pd.DataFrame, model_cfg: ModelConfig) -> pd.DataFrame:
    """The keys, features and label of a labelled frame with the model's predictions: what
    batch inference publishes, so monitoring can compare the two (the model's baseline)."""
    columns = [*model_cfg.keys, *[c for c in model.inputs if c not in model_cfg.keys], model_cfg.label]
    return frame[columns].assign(prediction=model.predict(None, frame))


def git_commit() -> str:
    """The project's commit, `-dirty` if tracked files changed; `unknown` outside git."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_DIR, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def describe(model_cfg: ModelConfig, hyper: Hyperparameters, tags: dict[str, str], holdout_metrics: dict[str, float]) -> str:
    """The model version's description: what it predicts, from what, trained how, how good."""
    metric = model_cfg.deployment.metric
    if model_cfg.description:
        what = model_cfg.description.rstrip(".")
    elif model_cfg.problem_type == metric_registry.REGRESSION:
        what = f"Predicted {model_cfg.label}"
    else:
        what = f"Probability that {model_cfg.label} is 1"
    how_good = f"held-out {metric} {holdout_metrics[metric]:.4f}"
    return (
        f"{what}. "
        f"{hyper.algorithm} on {len(feature_columns(model_cfg))} features{_on_demand_note(model_cfg)}, looked up from "
        f"{tags.get('feature_lookups', 'the feature tables')}; trained on {tags.get('train_window', '?')}, "
        f"{how_good} on {tags.get('holdout_window', '?')}."
    )


def _on_demand_note(model_cfg: ModelConfig) -> str:
    made = [f.output for f in on_demand.of_model(model_cfg)]
    return f" ({', '.join(made)} computed on demand)" if made else ""


def log_and_register(
    model: TabularModel,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    model_cfg: ModelConfig,
    hyper: Hyperparameters,
    lookups: list[FeatureLookup],
    model_name: str,
    tags: dict[str, str],
) -> ModelRef:
    """Log params, held-out metrics, plots and the model to MLflow; register it PENDING.

    Args:
        tags: run facts to put on the run and the version (as_of, windows, hyperparameters_file).
    Returns:
        The new version, tagged model_validation_status=PENDING, with run, git commit and lookups.
    """
    import cloudpickle
    from mlflow.models import infer_signature

    registry.check_writable(model_name)  # before anything is logged: a version only in this environment's catalog
    label, threshold, kind = model_cfg.label, model_cfg.inference.decision_threshold, model_cfg.problem_type
    columns = model.columns
    score = model.predict(None, holdout)
    holdout_metrics = evaluation.metrics(kind, holdout[label], score, threshold)
    example = train[model.inputs].head(5)
    signature = infer_signature(example, model.predict(None, example))
    tags = {
        **tags,
        "git_commit": git_commit(),
        "algorithm": hyper.algorithm,
        "feature_lookups": "; ".join(
            f"{lk.table} by {','.join(lk.lookup_key)} as of {lk.timestamp_lookup_key}" for lk in lookups
        ),
    }
    with mlflow.start_run(run_name=f"train {tags.get('as_of', '')}".strip()) as run:
        mlflow.set_tags(tags)
        mlflow.log_params(
            {
                **hyper.params,
                "algorithm": hyper.algorithm,
                "features": ",".join(columns),
                "train_rows": len(train),
                "holdout_rows": len(holdout),
            }
        )
        mlflow.log_metrics({f"holdout_{k}": v for k, v in holdout_metrics.items() if np.isfinite(v)})
        if kind == metric_registry.REGRESSION and len(holdout) > 1:
            importance = evaluation.feature_importance(
                model.pipeline, model.features(holdout), holdout[label].to_numpy(), columns, scoring="neg_root_mean_squared_error"
            )
            mlflow.log_dict(importance.round(5).to_dict(), "feature_importance.json")
            slices = model_cfg.validation.slices.columns if model_cfg.validation.slices else []
            by = {c: holdout[c] for c in slices if c in holdout.columns}
            for name, figure in evaluation.regression_figures(holdout[label], score, by, importance).items():
                mlflow.log_figure(figure, name)
        elif kind == metric_registry.CLASSIFICATION and holdout[label].nunique() == 2:
            importance = evaluation.feature_importance(
                model.pipeline, model.features(holdout), holdout[label].to_numpy(), columns
            )
            mlflow.log_dict(importance.round(5).to_dict(), "feature_importance.json")
            for name, figure in evaluation.figures(holdout[label], score, threshold, importance).items():
                mlflow.log_figure(figure, name)
        carried = [on_demand, *on_demand.project_modules(model.on_demand)]  # lib's and the project's functions
        for module in carried:
            cloudpickle.register_pickle_by_value(module)  # the version carries its functions' code
        try:
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=model,
                signature=signature,
                input_example=example,
                metadata={
                    "feature_lookups": [lk.to_dict() for lk in lookups],
                    "keys": list(model_cfg.keys),
                    "on_demand_features": [f.to_dict() for f in model.on_demand],
                },
                registered_model_name=model_name,
                pip_requirements=[f"{p}=={importlib.metadata.version(p)}" for p in _REQUIREMENTS],
            )
        finally:
            for module in carried:
                cloudpickle.unregister_pickle_by_value(module)
    ref = ModelRef(model_name, str(info.registered_model_version))
    registry.set_tags(ref, {**tags, "run_id": run.info.run_id, VALIDATION_STATUS: "PENDING"})
    registry.client().update_model_version(ref.name, ref.version, description=describe(model_cfg, hyper, tags, holdout_metrics))
    return ref
