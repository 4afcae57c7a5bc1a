"""Evaluation: the metrics every stage speaks, and the pictures people look at in MLflow."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, threshold: float = 0.5, weights: np.ndarray | None = None
) -> dict[str, float]:
    """roc_auc, accuracy, precision, recall, f1, log_loss, positive_rate and count.

    `weights` counts each row that many times (e.g. distinct (label, prediction) pairs and how
    often each occurred). No rows: every metric but the count is NaN (scikit-learn refuses them).
    """
    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype=float)
    w = np.ones(len(y_true)) if weights is None else np.asarray(weights, dtype=float)
    predicted = (proba >= threshold).astype(int)
    some = len(y_true) > 0
    out = {
        "accuracy": skm.accuracy_score(y_true, predicted, sample_weight=w) if some else float("nan"),
        "precision": (skm.precision_score(y_true, predicted, zero_division=0, sample_weight=w) if some else float("nan")),
        "recall": skm.recall_score(y_true, predicted, zero_division=0, sample_weight=w) if some else float("nan"),
        "f1": skm.f1_score(y_true, predicted, zero_division=0, sample_weight=w) if some else float("nan"),
        "positive_rate": float(np.average(y_true, weights=w)) if some else float("nan"),
        "count": float(w.sum()),
    }
    both = len(np.unique(y_true)) == 2
    out["roc_auc"] = skm.roc_auc_score(y_true, proba, sample_weight=w) if both else float("nan")
    out["log_loss"] = (
        skm.log_loss(y_true, np.clip(proba, 1e-6, 1 - 1e-6), labels=[0, 1], sample_weight=w) if some else float("nan")
    )
    return {k: float(v) for k, v in out.items()}


def feature_importance(
    pipeline: Any, frame: pd.DataFrame, y: np.ndarray, columns: list[str], max_rows: int = 3000, seed: int = 0
) -> pd.Series:
    """Permutation importance (drop in ROC AUC when a column is shuffled), largest first."""
    from sklearn.inspection import permutation_importance

    sample = frame[columns].sample(n=min(max_rows, len(frame)), random_state=seed)
    result = permutation_importance(
        pipeline, sample, np.asarray(y)[frame.index.get_indexer(sample.index)], scoring="roc_auc", n_repeats=3, random_state=seed
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
