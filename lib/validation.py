"""Validation: check a newly registered version before it may become the Challenger.

Each check is reported by name with its measured value, threshold and verdict. The outcome
is written on the version as `model_validation_status` (PENDING -> PASSED | FAILED) and
`validation.<check>` tags; only a passing version gets the Challenger alias.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lib import registry
from lib.errors import ValidationFailedError
from lib.registry import CHALLENGER, VALIDATION_STATUS, ModelRef
from lib.training import classification_metrics


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    threshold: float
    passed: bool

    def describe(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return f"{self.name} {self.value:.4f} (minimum {self.threshold}) {verdict}"


@dataclass(frozen=True)
class Report:
    ref: ModelRef
    metrics: dict[str, float]
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([c.__dict__ for c in self.checks])

    def summary(self) -> str:
        return "; ".join(c.describe() for c in self.checks)


def check_thresholds(metrics: dict[str, float], thresholds: dict[str, float]) -> list[Check]:
    """One check per threshold: the metric must be at least the threshold (NaN fails)."""
    checks = []
    for name, minimum in thresholds.items():
        value = float(metrics.get(name, float("nan")))
        checks.append(Check(name, value, float(minimum), not math.isnan(value) and value >= minimum))
    return checks


def evaluate(ref: ModelRef, holdout: pd.DataFrame, model_cfg: dict[str, Any]) -> Report:
    """Load the version as pyfunc (the format check) and measure it on the held-out data."""
    proba = registry.predict(ref, holdout)
    metrics = classification_metrics(holdout[model_cfg["label"]], proba,
                                     model_cfg["inference"]["decision_threshold"])
    return Report(ref, metrics, check_thresholds(metrics, model_cfg["validation"]["thresholds"]))


def record(report: Report) -> None:
    """Write the outcome on the version; Challenger alias on pass, ValidationFailedError on fail."""
    tags = {f"validation.{c.name}": f"{c.value:.4f} >= {c.threshold}: {'PASS' if c.passed else 'FAIL'}"
            for c in report.checks}
    status = "PASSED" if report.passed else "FAILED"
    registry.set_tags(report.ref, {**tags, VALIDATION_STATUS: status})
    if not report.passed:
        raise ValidationFailedError(f"{report.ref.uri} failed validation: {report.summary()}")
    registry.move_alias(report.ref, CHALLENGER, f"validation passed: {report.summary()}")
