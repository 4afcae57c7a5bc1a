"""Evaluation: the metrics every stage speaks, and the pictures people look at in MLflow."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from lib.core import metrics as metric_registry

_THRESHOLDED = ("accuracy", "precision", "recall", "f1")  # first, as the stages have always listed them


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, threshold: float = 0.5, weights: np.ndarray | None = None
) -> dict[str, float]:
    """The classification metrics of the registry (roc_auc, accuracy, precision, recall, f1,
    log_loss), positive_rate and count.

    `weights` counts each row that many times (e.g. distinct (label, prediction) pairs and how
    often each occurred). No rows: every metric but the count is NaN (scikit-learn refuses them).
    """
    y_true = np.asarray(y_true).astype(int)
    w = np.ones(len(y_true)) if weights is None else np.asarray(weights, dtype=float)
    m = metric_registry.compute_all(metric_registry.CLASSIFICATION, y_true, proba, threshold, w)
    counts = {
        "positive_rate": float(np.average(y_true, weights=w)) if len(y_true) else float("nan"),
        "count": float(w.sum()),
    }
    return {**{k: m[k] for k in _THRESHOLDED}, **counts, "roc_auc": m["roc_auc"], "log_loss": m["log_loss"]}


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray, weights: np.ndarray | None = None) -> dict[str, float]:
    """The regression metrics of the registry (rmse, mse, mae, mape, r2) and count."""
    w = None if weights is None else np.asarray(weights, dtype=float)
    out = metric_registry.compute_all(metric_registry.REGRESSION, y_true, predicted, weights=w)
    out["count"] = float(len(np.asarray(y_true)) if w is None else w.sum())
    return out


def metrics(problem_type: str, y_true: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """The metrics of a problem type: a probability and its threshold for classification, a value for regression."""
    if problem_type == metric_registry.REGRESSION:
        return regression_metrics(y_true, score)
    return classification_metrics(y_true, score, threshold)


def feature_importance(
    pipeline: Any,
    frame: pd.DataFrame,
    y: np.ndarray,
    columns: list[str],
    max_rows: int = 3000,
    seed: int = 0,
    scoring: str = "roc_auc",
) -> pd.Series:
    """Permutation importance (the drop in `scoring`, a scikit-learn scorer, when a column is shuffled), largest first."""
    from sklearn.inspection import permutation_importance

    sample = frame[columns].sample(n=min(max_rows, len(frame)), random_state=seed)
    result = permutation_importance(
        pipeline, sample, np.asarray(y)[frame.index.get_indexer(sample.index)], scoring=scoring, n_repeats=3, random_state=seed
    )
    return pd.Series(result.importances_mean, index=columns).sort_values(ascending=False)


def figures(y: np.ndarray, proba: np.ndarray, threshold: float, importance: pd.Series) -> dict[str, Any]:
    """ROC and precision-recall curves, confusion matrix, calibration and feature importance.

    Figures are built without pyplot, so no display backend is needed.
    """
    from matplotlib.figure import Figure
    from sklearn.calibration import CalibrationDisplay

    out = {}
    y = np.asarray(y).astype(int)

    def new(name: str):
        fig = Figure(figsize=(5.5, 4.5), tight_layout=True)
        out[name] = fig
        return fig.add_subplot()

    skm.RocCurveDisplay.from_predictions(y, proba, ax=new("roc_curve.png"), plot_chance_level=True)
    skm.PrecisionRecallDisplay.from_predictions(y, proba, ax=new("precision_recall_curve.png"), plot_chance_level=True)
    skm.ConfusionMatrixDisplay.from_predictions(
        y, (np.asarray(proba) >= threshold).astype(int), ax=new("confusion_matrix.png"), colorbar=False
    )
    CalibrationDisplay.from_predictions(y, proba, n_bins=10, ax=new("calibration_curve.png"))
    ax = new("feature_importance.png")
    importance.iloc[::-1].plot.barh(ax=ax)
    ax.set_xlabel("drop in ROC AUC when shuffled")
    return out


def regression_figures(
    y: np.ndarray, predicted: np.ndarray, slices: dict[str, pd.Series], importance: pd.Series
) -> dict[str, Any]:
    """Predicted vs actual, residuals (actual - predicted) per value of each slice column, and
    feature importance. Built without pyplot, so no display backend is needed."""
    from matplotlib.figure import Figure

    out = {}
    y, predicted = np.asarray(y, dtype=float), np.asarray(predicted, dtype=float)

    def new(name: str):
        fig = Figure(figsize=(5.5, 4.5), tight_layout=True)
        out[name] = fig
        return fig.add_subplot()

    skm.PredictionErrorDisplay.from_predictions(
        y, predicted, kind="actual_vs_predicted", ax=new("predicted_vs_actual.png"), scatter_kwargs={"alpha": 0.3, "s": 6}
    )
    residuals = pd.Series(y - predicted)
    for column, values in slices.items():
        ax = new(f"residuals_by_{column}.png")
        groups = residuals.groupby(np.asarray(values.astype(str)))
        ax.boxplot([g.to_numpy() for _, g in groups], showfliers=False)
        ax.set_xticks(range(1, groups.ngroups + 1), [str(k) for k in groups.groups], rotation=90)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xlabel(column)
        ax.set_ylabel("actual - predicted")
    ax = new("feature_importance.png")
    importance.iloc[::-1].plot.barh(ax=ax)
    ax.set_xlabel("rise in RMSE when shuffled")
    return out
