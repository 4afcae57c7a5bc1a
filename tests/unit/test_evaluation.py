"""The metrics every stage speaks (lib/lifecycle/evaluation.py), on cases worked out by hand."""

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.linear_model import LogisticRegression

from lib.lifecycle.evaluation import classification_metrics, feature_importance, figures, regression_figures, regression_metrics

# Five flights: labels and scores. At 0.5 the predictions are 0 1 0 1 1:
# TP = 2 (0.8, 0.9), FP = 1 (0.7), FN = 1 (0.4), TN = 1 (0.2).
Y = np.array([0, 0, 1, 1, 1])
P = np.array([0.2, 0.7, 0.4, 0.8, 0.9])
NAMES = ["accuracy", "precision", "recall", "f1", "positive_rate", "count", "roc_auc", "log_loss"]


def test_metrics_of_five_rows_worked_out_by_hand():
    m = classification_metrics(Y, P, 0.5)
    assert list(m) == NAMES and all(type(v) is float for v in m.values())
    assert m["accuracy"] == 3 / 5 and m["positive_rate"] == 3 / 5 and m["count"] == 5.0
    assert m["precision"] == 2 / 3 and m["recall"] == 2 / 3 and m["f1"] == 2 / 3
    # Of the 3 x 2 (positive, negative) pairs, the positive scores higher in all but (0.4, 0.7).
    assert m["roc_auc"] == pytest.approx(5 / 6, abs=1e-15)
    assert m["log_loss"] == pytest.approx(
        -(math.log(0.8) + math.log(0.3) + math.log(0.4) + math.log(0.8) + math.log(0.9)) / 5, abs=1e-15
    )


def test_the_threshold_moves_only_the_thresholded_metrics():
    m = classification_metrics(Y, P, 0.8)  # a score equal to the threshold is positive: 0 0 0 1 1
    assert (m["accuracy"], m["precision"], m["recall"], m["f1"]) == (4 / 5, 1.0, 2 / 3, 0.8)
    assert m["roc_auc"] == classification_metrics(Y, P, 0.5)["roc_auc"]
    assert m["log_loss"] == classification_metrics(Y, P, 0.5)["log_loss"]
    assert classification_metrics(Y, P, 0.95)["precision"] == 0.0  # nothing predicted positive: 0, not an error


def test_weights_count_rows_that_many_times():
    weighted = classification_metrics(Y, P, 0.5, weights=np.array([1, 1, 1, 1, 2]))
    repeated = classification_metrics(np.append(Y, 1), np.append(P, 0.9), 0.5)
    assert weighted == pytest.approx(repeated, abs=1e-15)
    # Six rows, four positive, TP = 3, FP = 1, FN = 1; 7 of the 8 pairs ordered right.
    assert weighted["count"] == 6.0 and weighted["positive_rate"] == pytest.approx(4 / 6, abs=1e-15)
    assert (weighted["precision"], weighted["recall"], weighted["f1"]) == (0.75, 0.75, 0.75)
    assert weighted["roc_auc"] == pytest.approx(7 / 8, abs=1e-15)


def test_one_class_has_no_roc_auc_and_the_rest_is_defined():
    ones = classification_metrics(np.array([1, 1]), np.array([0.2, 0.9]))
    assert math.isnan(ones["roc_auc"])
    assert {k: ones[k] for k in ("accuracy", "precision", "recall", "positive_rate", "count")} == {
        "accuracy": 0.5,
        "precision": 1.0,
        "recall": 0.5,
        "positive_rate": 1.0,
        "count": 2.0,
    }
    assert ones["f1"] == pytest.approx(2 / 3, abs=1e-15)
    assert ones["log_loss"] == pytest.approx(-(math.log(0.2) + math.log(0.9)) / 2, abs=1e-15)

    zeros = classification_metrics(np.array([0, 0]), np.array([0.1, 0.6]))  # no positives: 0, not an error
    assert math.isnan(zeros["roc_auc"])
    assert {k: zeros[k] for k in ("accuracy", "precision", "recall", "f1", "positive_rate")} == {
        "accuracy": 0.5,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "positive_rate": 0.0,
    }


def test_no_rows_give_no_numbers_but_a_count_of_zero():
    m = classification_metrics(np.array([]), np.array([]))
    assert list(m) == NAMES and m["count"] == 0.0
    assert [k for k, v in m.items() if math.isnan(v)] == [k for k in NAMES if k != "count"]


def test_certain_wrong_scores_are_clipped_not_infinite():
    m = classification_metrics(np.array([1, 0]), np.array([0.0, 1.0]))
    assert m["log_loss"] == pytest.approx(-(math.log(1e-6) + math.log(1 - (1 - 1e-6))) / 2, rel=1e-15)
    assert m["roc_auc"] == 0.0 and m["accuracy"] == 0.0
    assert classification_metrics(np.array([True, False]), [0.5, 0.49])["accuracy"] == 1.0  # booleans and lists


def test_feature_importance_ranks_the_signal_and_keeps_rows_with_their_labels():
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame(
        {"noise": rng.normal(size=n), "signal": rng.normal(size=n), "other": rng.normal(size=n)},
        index=rng.permutation(np.arange(1000, 1000 + n)),
    )  # labels found by index, not position
    y = (frame["signal"] + 0.3 * rng.normal(size=n) > 0).astype(int).to_numpy()
    model = LogisticRegression().fit(frame[["noise", "signal", "other"]], y)
    importance = feature_importance(model, frame, y, ["noise", "signal", "other"], max_rows=400)
    assert list(importance.index)[0] == "signal" and sorted(importance.index) == ["noise", "other", "signal"]
    assert importance.is_monotonic_decreasing
    assert importance["signal"] > 0.3 and abs(importance["noise"]) < 0.02 and abs(importance["other"]) < 0.02


def test_figures_are_the_five_pictures_with_the_confusion_matrix_of_the_threshold():
    importance = pd.Series({"signal": 0.4, "noise": 0.01})
    out = figures(Y, P, 0.5, importance)
    assert list(out) == [
        "roc_curve.png",
        "precision_recall_curve.png",
        "confusion_matrix.png",
        "calibration_curve.png",
        "feature_importance.png",
    ]
    assert all(isinstance(fig, Figure) for fig in out.values())
    matrix = out["confusion_matrix.png"].axes[0]
    assert [t.get_text() for t in matrix.texts] == ["1", "1", "1", "2"]  # TN FP / FN TP, row by row
    bars = out["feature_importance.png"].axes[0]
    assert [t.get_text() for t in bars.get_yticklabels()] == ["noise", "signal"]  # largest on top
    assert [p.get_width() for p in bars.patches] == [0.01, 0.4]


def test_regression_metrics_and_figures():
    y, predicted = np.array([3.0, 5.0, 2.0, 8.0]), np.array([2.0, 5.0, 4.0, 7.0])  # errors -1, 0, 2, -1
    m = regression_metrics(y, predicted)
    assert (m["mae"], m["mse"], m["count"]) == (1.0, 1.5, 4.0)
    importance = pd.Series({"a": 0.2, "b": 0.1})
    out = regression_figures(y, predicted, {"origin": pd.Series(["EWR", "JFK", "EWR", "JFK"])}, importance)
    assert sorted(out) == ["feature_importance.png", "predicted_vs_actual.png", "residuals_by_origin.png"]
    assert all(isinstance(f, Figure) for f in out.values())
    (ax,) = out["residuals_by_origin.png"].axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["EWR", "JFK"]
