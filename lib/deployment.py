"""Deployment: Challenger vs Champion on the same held-out data; move Champion on a win.

On the first deployment there is no Champion, so the Challenger must beat a business-rule
baseline instead. The alias moves only after the comparison is decided, so a failed run
leaves the Champion where it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lib import registry
from lib.registry import CHALLENGER, CHAMPION, ModelRef
from lib.training import classification_metrics

BASELINE = "business-rule baseline"


@dataclass(frozen=True)
class Decision:
    metric: str
    challenger: float
    incumbent: float
    incumbent_name: str
    min_improvement: float

    @property
    def promote(self) -> bool:
        if math.isnan(self.challenger):
            return False
        if math.isnan(self.incumbent):
            return True
        return self.challenger > self.incumbent + self.min_improvement

    def reason(self) -> str:
        verb = "beats" if self.promote else "does not beat"
        return (f"challenger {self.metric} {self.challenger:.4f} {verb} {self.incumbent_name} "
                f"{self.incumbent:.4f} + {self.min_improvement}")


def business_rule_score(features: pd.DataFrame) -> np.ndarray:
    """What operations would say without a model: evening departures and bad weather run late."""
    evening = (features["dep_hour"] >= 15).astype(float)
    rain = (features["precip"].fillna(0) > 0).astype(float)
    fog = (features["visib"].fillna(10) < 3).astype(float)
    return (0.1 + 0.4 * evening + 0.3 * rain + 0.2 * fog).to_numpy()


def compare(challenger: ModelRef, champion: ModelRef | None, holdout: pd.DataFrame,
            model_cfg: dict[str, Any]) -> Decision:
    """Score both on the same held-out rows and decide on the configured metric."""
    cfg = model_cfg["deployment"]
    metric, threshold, label = cfg["metric"], model_cfg["inference"]["decision_threshold"], model_cfg["label"]
    y = holdout[label]
    challenger_value = classification_metrics(y, registry.predict(challenger, holdout), threshold)[metric]
    if champion is None:
        incumbent_scores, incumbent_name = business_rule_score(holdout), BASELINE
    else:
        incumbent_scores, incumbent_name = registry.predict(champion, holdout), f"Champion v{champion.version}"
    incumbent_value = classification_metrics(y, incumbent_scores, threshold)[metric]
    return Decision(metric, challenger_value, incumbent_value, incumbent_name, float(cfg["min_improvement"]))


def apply(decision: Decision, challenger: ModelRef, run: str) -> ModelRef | None:
    """Move Champion to the challenger if it won; returns the new Champion or None."""
    registry.set_tags(challenger, {"deployment.decision": "PROMOTED" if decision.promote else "REJECTED",
                                   "deployment.reason": decision.reason(), "deployment.run": run})
    if not decision.promote:
        return None
    registry.move_alias(challenger, CHAMPION, f"{decision.reason()} (run {run})")
    registry.client().delete_registered_model_alias(challenger.name, CHALLENGER)
    return challenger


def require_challenger(ref: ModelRef) -> ModelRef:
    """Refuse a version that did not pass validation or no longer holds the Challenger alias."""
    from lib.errors import ValidationFailedError

    status = registry.require_version(ref).tags.get(registry.VALIDATION_STATUS)
    if status != "PASSED":
        raise ValidationFailedError(f"{ref.uri} has {registry.VALIDATION_STATUS}={status}: only PASSED versions deploy")
    holder = registry.version_of(ref.name, CHALLENGER)
    if holder != ref:
        held = f"v{holder.version}" if holder else "no version"
        raise ValidationFailedError(f"{ref.uri} is not the Challenger ({ref.name}@{CHALLENGER} is {held})")
    return ref
