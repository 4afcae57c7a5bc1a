"""Exploration helpers for the dev notebooks: quick looks at production data, read-only,
and a small search over algorithms and hyperparameters whose winner goes to the config file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import yaml

from lib.core import metrics as metric_registry
from lib.core import names
from lib.core.config import ConfigError, Hyperparameters, ModelConfig, conf_dir
from lib.core.config.loading import schema_comment
from lib.lifecycle import training
from lib.lifecycle.evaluation import metrics as evaluation_metrics
from lib.monitoring import monitors, views
from lib.monitoring.metrics import SHOWN_QUALITY
from lib.platform import registry

# The held-out metrics the ranking shows per problem type (the deployment metric first).
_SHOWN = {metric_registry.CLASSIFICATION: ["roc_auc", "accuracy", "f1"], metric_registry.REGRESSION: ["rmse", "mae", "r2"]}

# What the exploration notebook tries, per problem type: name -> hyperparameters file content
# (the gradient boosting parameters fit its classifier and its regressor alike).
_BOOSTING = {
    "hgb_default": Hyperparameters(
        algorithm="hist_gradient_boosting",
        params={"learning_rate": 0.1, "max_iter": 150, "max_leaf_nodes": 31, "l2_regularization": 0.0, "random_state": 42},
    ),
    "hgb_slow_deep": Hyperparameters(
        algorithm="hist_gradient_boosting",
        params={"learning_rate": 0.05, "max_iter": 300, "max_leaf_nodes": 63, "l2_regularization": 1.0, "random_state": 42},
    ),
}
CANDIDATES: dict[str, dict[str, Hyperparameters]] = {
    metric_registry.CLASSIFICATION: {
        **_BOOSTING,
        "logistic_regression": Hyperparameters(algorithm="logistic_regression", params={"C": 1.0}),
    },
    metric_registry.REGRESSION: {**_BOOSTING, "ridge": Hyperparameters(algorithm="ridge", params={"alpha": 1.0})},
}
NOTEBOOK = "notebooks/dev/explore.ipynb"


def label_by(frame: pd.DataFrame, by: str, label: str) -> pd.DataFrame:
    """Per value of `by` (missing values as one group): the labelled rows and the label's mean
    (for a 0/1 label, the positive share), in the order of `by`."""
    grouped = frame.groupby(by, dropna=False, sort=True)[label]
    return pd.DataFrame({"rows": grouped.size(), f"mean_{label}": grouped.mean().astype(float).round(4)}).reset_index()


def windows(
    start: str, end: str, holdout_days: int, before: dt.date | None = None
) -> tuple[tuple[dt.date, dt.date], tuple[dt.date, dt.date]]:
    """Split [start, end) into a training window and the last holdout_days held out.

    `before` is where production's held-out window starts: exploring on it would tune the
    hyperparameters on the very data the validation gates and the Champion comparison use.
    """
    try:
        lo, hi = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    except (TypeError, ValueError):
        raise ConfigError(f"explore_from/explore_to must be YYYY-MM-DD dates, got {start!r} and {end!r}") from None
    if before is not None and hi > before:
        raise ConfigError(
            f"explore_to {hi} reaches into production's held-out window (from {before}), "
            "which the validation gates judge: end the exploration by then"
        )
    split = hi - dt.timedelta(days=holdout_days)
    if not lo < split < hi:
        raise ConfigError(f"explore window {lo}..{hi} is too short to hold out {holdout_days} days")
    return (lo, split), (split, hi)


def try_candidates(
    train: pd.DataFrame, holdout: pd.DataFrame, model_cfg: ModelConfig, candidates: dict[str, Hyperparameters] | None = None
) -> pd.DataFrame:
    """Fit each candidate, log it as an MLflow run, and rank them, best first, by the held-out
    deployment metric (model.yml deployment.metric, in its direction): the metric the Champion is chosen by."""
    import mlflow

    label, threshold, kind = model_cfg.label, model_cfg.inference.decision_threshold, model_cfg.problem_type
    candidates = CANDIDATES[kind] if candidates is None else candidates
    ranked_by = metric_registry.get(model_cfg.deployment.metric)
    shown = list(dict.fromkeys([ranked_by.name, *_SHOWN[kind]]))
    rows = []
    for name, hyper in candidates.items():
        with mlflow.start_run(run_name=f"explore {name}") as run:
            model = training.fit(train, model_cfg, hyper)
            m = evaluation_metrics(kind, holdout[label], model.predict(None, holdout), threshold)
            mlflow.log_params({**hyper.params, "algorithm": hyper.algorithm, "train_rows": len(train)})
            mlflow.log_metrics({f"holdout_{k}": v for k, v in m.items() if pd.notna(v)})
        rows.append({"candidate": name, "algorithm": hyper.algorithm, **{k: m[k] for k in shown}, "run_id": run.info.run_id})
    return rank(pd.DataFrame(rows), ranked_by.name)


def rank(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Results best first by `metric` in its direction (highest roc_auc, lowest rmse); unmeasured last."""
    higher = metric_registry.get(metric).higher_is_better
    ranked = results.sort_values(metric, ascending=not higher, na_position="last", ignore_index=True)
    ranked.attrs["ranked_by"] = metric
    return ranked


def write_best(results: pd.DataFrame, path: str, model_cfg: ModelConfig) -> Path | None:
    """Write the best-ranked candidate of `rank` to `path` (relative: to the conf folder; nothing
    if path is ""); returns where."""
    if not path:
        return None
    best, metric = results.iloc[0], results.attrs["ranked_by"]
    hyper = CANDIDATES[model_cfg.problem_type][best["candidate"]]
    return write_hyperparameters(hyper, path, f"{best['candidate']}, held-out {metric} {best[metric]:.4f} (run {best['run_id']})")


def write_hyperparameters(hyper: Hyperparameters, path: str | Path, note: str) -> Path:
    """Write the chosen hyperparameters where the training pipeline reads them (a relative `path`:
    in the conf folder in use, as model.yml's training.hyperparameters_file)."""
    target = Path(path).expanduser()
    if not target.is_absolute():
        target = conf_dir() / target
    header = (
        f"{schema_comment(target, 'hyperparameters')}\n# Production hyperparameters, read by the training task (conf/model.yml "
        f"training.hyperparameters_file).\n# Written by {NOTEBOOK}: "
        f"{note}\n# Review the diff before committing it.\n"
    )
    body = yaml.safe_dump(hyper.model_dump(mode="json"), sort_keys=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header + body)
    return target


def production_quality(lakehouse, env, monitor_name: str = "predictions") -> pd.DataFrame:
    """Production's model quality per window, read from the metric tables of the catalog this
    environment reads (`raw_catalog`: prod for dev); empty, with a line saying why, before the
    production workflow has monitored anything."""

    monitor = monitors.load_monitors()[monitor_name]
    table = names.profile_metrics_table(names.full_name(env.raw_catalog, env.schema, monitor.table_name))
    if not lakehouse.exists(table):
        print(f"{table} does not exist yet: run the production workflow (make pipeline) first")
        return pd.DataFrame(columns=["window", "model_id", "count", "labelled_count", *SHOWN_QUALITY[monitor.problem_type]])
    return views.quality_over_time(lakehouse, table, monitor.granularities[0], monitor.problem_type)


def production_champion(env, holdout: pd.DataFrame, model_cfg: ModelConfig) -> pd.DataFrame:
    """Production's Champion (the model of `raw_catalog`), loaded read-only, scored on a held-out
    frame: one row with its URI and held-out metrics; empty before production has a Champion.

    Read-only: the model is loaded as a pyfunc to predict with; nothing here tags it or moves
    an alias.
    """
    name = f"{env.raw_catalog}.{env.schema}.{env.model}"
    ref = registry.version_of(name, names.CHAMPION)
    if ref is None:
        print(f"{name} has no Champion yet: run the production workflow (make pipeline) first")
        return pd.DataFrame(columns=["model", *_SHOWN[model_cfg.problem_type]])
    kind, threshold = model_cfg.problem_type, model_cfg.inference.decision_threshold
    m = evaluation_metrics(kind, holdout[model_cfg.label], registry.predict(ref, holdout), threshold)
    return pd.DataFrame([{"model": ref.uri, **{k: m[k] for k in _SHOWN[kind]}}])
