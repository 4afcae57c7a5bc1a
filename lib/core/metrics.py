"""The metrics registry: each metric the stages report and model.yml may name, with the problem
type(s) it applies to, its direction (higher or lower is better), how to compute it from
(y_true, score), and its column in a Lakehouse Monitoring profile table.

One place for the direction: validation gates, slices, the Challenger vs Champion decision,
the exploration ranking and monitoring all ask here instead of assuming higher is better.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

CLASSIFICATION = "binary_classification"
REGRESSION = "regression"
PROBLEM_TYPES = (CLASSIFICATION, REGRESSION)

# compute(y_true, score, threshold, weights) -> float; the threshold turns a probability into a
# class (classification only); weights count a row that many times (None: once each).
Compute = Callable[[np.ndarray, np.ndarray, float, "np.ndarray | None"], float]


def _skm() -> Any:
    # scikit-learn takes ~3 s to import: loading the config (the CLI's --validate) must not pay for it.
    from sklearn import metrics

    return metrics


def _some(fn: Callable[..., float]) -> Compute:
    """fn(y_true, score, threshold, weights), NaN when there are no rows (scikit-learn refuses them)."""

    def compute(y_true: Any, score: Any, threshold: float = 0.5, weights: Any = None) -> float:
        y, s = np.asarray(y_true), np.asarray(score, dtype=float)
        if len(y) == 0:
            return float("nan")
        w = None if weights is None else np.asarray(weights, dtype=float)
        return float(fn(y, s, threshold, w))

    return compute


def _classes(y: np.ndarray, score: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    return y.astype(int), (score >= threshold).astype(int)


def _roc_auc(y: np.ndarray, score: np.ndarray, threshold: float, w: np.ndarray | None) -> float:
    y = y.astype(int)
    return _skm().roc_auc_score(y, score, sample_weight=w) if len(np.unique(y)) == 2 else float("nan")


def _log_loss(y: np.ndarray, score: np.ndarray, threshold: float, w: np.ndarray | None) -> float:
    return _skm().log_loss(y.astype(int), np.clip(score, 1e-6, 1 - 1e-6), labels=[0, 1], sample_weight=w)


def _thresholded(name: str, **kwargs: Any) -> Compute:
    def fn(y: np.ndarray, score: np.ndarray, threshold: float, w: np.ndarray | None) -> float:
        return getattr(_skm(), name)(*_classes(y, score, threshold), sample_weight=w, **kwargs)

    return _some(fn)


def _regression(name: str, root: bool = False) -> Compute:
    def fn(y: np.ndarray, score: np.ndarray, threshold: float, w: np.ndarray | None) -> float:
        value = getattr(_skm(), name)(y.astype(float), score, sample_weight=w)
        return float(np.sqrt(value)) if root else value

    return _some(fn)


@dataclass(frozen=True)
class Metric:
    name: str
    problem_types: tuple[str, ...]
    higher_is_better: bool
    compute: Compute
    monitoring_column: str | None = None  # its column in a profile metrics table, if monitoring has one

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"

    def better(self, value: float, than: float, by: float = 0.0) -> bool:
        """Whether `value` beats `than` by more than `by` in this metric's direction."""
        return value > than + by if self.higher_is_better else value < than - by


REGISTRY: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("roc_auc", (CLASSIFICATION,), True, _some(_roc_auc), "roc_auc"),
        Metric("accuracy", (CLASSIFICATION,), True, _thresholded("accuracy_score"), "accuracy"),
        Metric("precision", (CLASSIFICATION,), True, _thresholded("precision_score", zero_division=0), "precision"),
        Metric("recall", (CLASSIFICATION,), True, _thresholded("recall_score", zero_division=0), "recall"),
        Metric("f1", (CLASSIFICATION,), True, _thresholded("f1_score", zero_division=0), "f1"),
        Metric("log_loss", (CLASSIFICATION,), False, _some(_log_loss), "log_loss"),
        Metric("rmse", (REGRESSION,), False, _regression("mean_squared_error", root=True), "root_mean_squared_error"),
        Metric("mse", (REGRESSION,), False, _regression("mean_squared_error"), "mean_squared_error"),
        Metric("mae", (REGRESSION,), False, _regression("mean_absolute_error"), "mean_absolute_error"),
        Metric("mape", (REGRESSION,), False, _regression("mean_absolute_percentage_error"), "mean_absolute_percentage_error"),
        Metric("r2", (REGRESSION,), True, _regression("r2_score"), "r2_score"),
    )
}
NAMES = tuple(REGISTRY)


def get(name: str) -> Metric:
    """The metric called `name` (KeyError naming the known ones otherwise)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(NAMES)}") from None


def of(problem_type: str) -> list[Metric]:
    """The metrics of a problem type, in registry order."""
    return [m for m in REGISTRY.values() if problem_type in m.problem_types]


def compute_all(problem_type: str, y_true: Any, score: Any, threshold: float = 0.5, weights: Any = None) -> dict[str, float]:
    """Every metric of a problem type on (y_true, score)."""
    return {m.name: m.compute(y_true, score, threshold, weights) for m in of(problem_type)}
