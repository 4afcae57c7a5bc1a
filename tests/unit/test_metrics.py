"""The metrics registry (lib/core/metrics.py): problem types, directions and values worked out by hand."""

import math

import numpy as np
import pytest

from lib.core import metrics
from lib.core.config import METRICS

Y = np.array([3.0, 5.0, 2.0, 8.0])
PRED = np.array([2.0, 5.0, 4.0, 7.0])  # errors -1, 0, 2, -1


def test_the_config_names_the_registry():
    assert METRICS == metrics.NAMES
    assert [m.name for m in metrics.of(metrics.CLASSIFICATION)] == "roc_auc accuracy precision recall f1 log_loss".split()
    assert [m.name for m in metrics.of(metrics.REGRESSION)] == "rmse mse mae mape r2".split()


@pytest.mark.parametrize(
    "name,direction,column",
    [
        ("roc_auc", "higher", "roc_auc"),
        ("f1", "higher", "f1"),
        ("log_loss", "lower", "log_loss"),
        ("rmse", "lower", "root_mean_squared_error"),
        ("mse", "lower", "mean_squared_error"),
        ("mae", "lower", "mean_absolute_error"),
        ("mape", "lower", "mean_absolute_percentage_error"),
        ("r2", "higher", "r2_score"),
    ],
)
def test_direction_and_monitoring_column(name, direction, column):
    m = metrics.get(name)
    assert (m.direction, m.monitoring_column) == (direction, column)


def test_better_and_worst_follow_the_direction():
    auc, rmse = metrics.get("roc_auc"), metrics.get("rmse")
    assert auc.better(0.70, 0.65) and not auc.better(0.65, 0.70) and not auc.better(0.66, 0.65, by=0.02)
    assert rmse.better(3.0, 4.0) and not rmse.better(4.0, 3.0) and not rmse.better(3.9, 4.0, by=0.5)
    assert not rmse.better(4.0, 4.0)  # a tie is not better


def test_regression_values_worked_out_by_hand():
    m = metrics.compute_all(metrics.REGRESSION, Y, PRED)
    assert m["mse"] == pytest.approx((1 + 0 + 4 + 1) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt(6 / 4))
    assert m["mae"] == pytest.approx((1 + 0 + 2 + 1) / 4)
    assert m["mape"] == pytest.approx((1 / 3 + 0 + 2 / 2 + 1 / 8) / 4)
    assert m["r2"] == pytest.approx(1 - 6 / np.sum((Y - Y.mean()) ** 2))


def test_classification_values_and_no_rows():
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9])
    m = metrics.compute_all(metrics.CLASSIFICATION, y, p, threshold=0.5)
    assert (m["accuracy"], m["roc_auc"]) == (0.5, 0.75)
    assert all(math.isnan(v) for v in metrics.compute_all(metrics.REGRESSION, [], []).values())
    assert math.isnan(metrics.get("roc_auc").compute(np.array([1, 1]), np.array([0.2, 0.9]), 0.5, None))  # one class


def test_an_unknown_metric_names_the_known_ones():
    with pytest.raises(KeyError, match="unknown metric 'auc'; known: roc_auc, accuracy"):
        metrics.get("auc")
