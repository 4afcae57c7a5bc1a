"""Deployment: Challenger vs Champion on the same held-out data; move Champion on a win.

On the first deployment there is no Champion, so the Challenger must beat a business-rule
baseline instead. Both sides' metrics are logged side by side to MLflow and on the version.
With approval required, a winning version moves only once `--approve` recorded an approval.
Alias moves happen under the model's alias lock and only if the Champion is still the one
compared against, so concurrent deployments can neither leave a stale Champion in place nor
lose a move; the replaced Champion keeps the `Previous` alias, which `rollback` returns to.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lib.core import names
from lib.core.config import APPROVAL_MODES, ConfigError, ModelConfig
from lib.core.errors import ConcurrentDeploymentError, ModelNotFoundError, ValidationFailedError
from lib.core.names import APPROVAL, CHALLENGER, CHAMPION, DECISION, PREVIOUS, REASON
from lib.lifecycle.evaluation import classification_metrics
from lib.platform import registry
from lib.platform.registry import ModelRef
from lib.serving.client import Client
from lib.serving.rollout import Outcome, RolloutFailedError, capture_config, deploy, served_name
from lib.serving.settings import Settings

BASELINE = "business-rule baseline"


@dataclass(frozen=True)
class Decision:
    metric: str
    challenger: float
    incumbent: float
    incumbent_name: str
    min_improvement: float
    challenger_metrics: dict[str, float] = field(default_factory=dict)
    incumbent_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def promote(self) -> bool:
        if math.isnan(self.challenger):
            return False
        if math.isnan(self.incumbent):
            return True
        return self.challenger > self.incumbent + self.min_improvement

    def reason(self) -> str:
        verb = "beats" if self.promote else "does not beat"
        return (
            f"challenger {self.metric} {self.challenger:.4f} {verb} {self.incumbent_name} "
            f"{self.incumbent:.4f} + {self.min_improvement}"
        )

    def table(self) -> pd.DataFrame:
        """Both sides' metrics side by side."""
        return pd.DataFrame({"challenger": self.challenger_metrics, self.incumbent_name: self.incumbent_metrics})


@dataclass(frozen=True)
class Approval:
    required: bool
    approved: bool
    detail: str

    @property
    def ok(self) -> bool:
        return self.approved or not self.required


def business_rule_score(features: pd.DataFrame) -> np.ndarray:
    """What operations would say without a model: evening departures and bad weather run late."""
    evening = (features["dep_hour"] >= 15).astype(float)
    rain = (features["precip"].fillna(0) > 0).astype(float)
    fog = (features["visib"].fillna(10) < 3).astype(float)
    return (0.1 + 0.4 * evening + 0.3 * rain + 0.2 * fog).to_numpy()


def challenger_to_deploy(name: str, model_uri: str, own_model) -> ModelRef:
    """The version to deploy: model_uri if given (checked by own_model), else the current Challenger."""
    ref = own_model(model_uri) if model_uri else registry.version_of(name, CHALLENGER)
    if ref is None:
        raise ModelNotFoundError(f"{name} has no {CHALLENGER}: run the training job (it validates) first")
    return require_challenger(ref)


def require_challenger(ref: ModelRef) -> ModelRef:
    """Refuse a version that did not pass validation (or skip it by mode) or is not the Challenger."""
    tags = registry.require_version(ref).tags
    status, mode = tags.get(names.VALIDATION_STATUS), tags.get(names.VALIDATION_MODE, "enabled")
    if status != "PASSED" and mode == "enabled":
        raise ValidationFailedError(f"{ref.uri} has {names.VALIDATION_STATUS}={status}: only PASSED versions deploy")
    holder = registry.version_of(ref.name, CHALLENGER)
    if holder != ref:
        held = f"v{holder.version}" if holder else "no version"
        raise ValidationFailedError(f"{ref.uri} is not the Challenger ({ref.name}@{CHALLENGER} is {held})")
    return ref


def compare(challenger: ModelRef, champion: ModelRef | None, holdout: pd.DataFrame, model_cfg: ModelConfig) -> Decision:
    """Score both on the same held-out rows and decide on the configured metric."""
    cfg = model_cfg.deployment
    metric, threshold, label = cfg.metric, model_cfg.inference.decision_threshold, model_cfg.label
    y = holdout[label]
    ours = classification_metrics(y, registry.predict(challenger, holdout), threshold)
    if champion is None:
        incumbent_scores, incumbent_name = business_rule_score(holdout), BASELINE
    else:
        incumbent_scores, incumbent_name = registry.predict(champion, holdout), f"Champion v{champion.version}"
    theirs = classification_metrics(y, incumbent_scores, threshold)
    return Decision(metric, ours[metric], theirs[metric], incumbent_name, cfg.min_improvement, ours, theirs)


def log_comparison(decision: Decision, challenger: ModelRef, run: str | None = None) -> str:
    """An MLflow run with both sides' metrics (challenger_*, incumbent_*) and the decision."""
    import mlflow

    with mlflow.start_run(run_name=f"deploy v{challenger.version}") as active:
        mlflow.set_tags(
            {
                "model_name": challenger.name,
                "model_version": challenger.version,
                "incumbent": decision.incumbent_name,
                "decision": "WIN" if decision.promote else "NO WIN",
                "reason": decision.reason(),
                "job_run": registry.actor(run),
            }
        )
        for side, values in (("challenger", decision.challenger_metrics), ("incumbent", decision.incumbent_metrics)):
            mlflow.log_metrics({f"{side}_{k}": v for k, v in values.items() if math.isfinite(v)})
        mlflow.log_table(decision.table().reset_index(names="metric"), "comparison.json")
        return active.info.run_id


def approval_required(configured: str, override: str = "") -> bool:
    """Approval mode: the notebook parameter if given ("required"/"not_required"), else
    `configured` (model.yml deployment.approval)."""
    mode = override or configured
    if mode not in APPROVAL_MODES:
        raise ConfigError(f"parameter require_approval must be one of {', '.join(APPROVAL_MODES)} or '', got {mode!r}")
    return mode == "required"


def check_approval(ref: ModelRef, required: bool) -> Approval:
    """Whether ref may move to Champion as far as approval goes."""
    tags = registry.require_version(ref).tags
    if tags.get(APPROVAL) == "APPROVED":
        return Approval(required, True, f"approved by {tags.get(names.APPROVAL_BY)} at {tags.get(names.APPROVAL_AT)}")
    return Approval(required, False, "approval required, none recorded" if required else "approval not required")


def approve(ref: ModelRef, by: str | None = None) -> None:
    """Record a human approval on the Challenger version (the `--approve` command)."""
    require_challenger(ref)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    registry.set_tags(ref, {APPROVAL: "APPROVED", names.APPROVAL_BY: registry.actor(by), names.APPROVAL_AT: now})


def apply(
    decision: Decision,
    challenger: ModelRef,
    compared_with: ModelRef | None,
    approval: Approval,
    run: str | None = None,
    env_name: str = "",
) -> ModelRef | None:
    """Move Champion to the challenger if it won (and is approved); returns the new Champion or None.

    Raises ConcurrentDeploymentError, moving nothing, if the Champion changed since the comparison.
    """
    with registry.alias_lock(challenger.name):
        current = registry.version_of(challenger.name, CHAMPION)
        if current != compared_with:
            was = f"v{compared_with.version}" if compared_with else "none"
            now = f"v{current.version}" if current else "none"
            raise ConcurrentDeploymentError(
                f"the Champion of {challenger.name} changed from {was} to {now} during this deployment: "
                "nothing was moved; re-run the deployment to compare against the new Champion"
            )
        outcome = "PROMOTED" if decision.promote else "REJECTED"
        reason = decision.reason()
        if decision.promote and not approval.ok:
            outcome = "AWAITING_APPROVAL"
            reason += (
                f"; approval required: python run_pipeline.py --env {env_name or '<env>'} "
                f"--approve {challenger.version}, then --job deployment"
            )
        tags = {DECISION: outcome, REASON: reason, names.DECISION_RUN: registry.actor(run)}
        if outcome != "PROMOTED":
            registry.set_tags(challenger, tags)
            return None
        # Champion first: if a later step fails, the new Champion serves and the decision
        # tag is simply missing, rather than a PROMOTED tag on a version that never moved.
        registry.move_alias(challenger, CHAMPION, f"{reason} ({approval.detail})", run)
        if current is not None:
            registry.move_alias(current, PREVIOUS, f"replaced as Champion by v{challenger.version}", run)
        registry.remove_alias(challenger, CHALLENGER, "promoted to Champion", run)
        registry.set_tags(challenger, tags)
        return challenger


def rollback(name: str, by: str | None = None) -> tuple[ModelRef, ModelRef]:
    """Swap Champion and Previous: the Previous version serves again. Returns (new, replaced).

    Running it twice rolls forward again, since Previous then names the version rolled back from.
    """
    with registry.alias_lock(name):
        champion = registry.require_alias(name, CHAMPION)
        previous = registry.version_of(name, PREVIOUS)
        if previous is None or previous == champion:
            raise ModelNotFoundError(
                f"{name} has no {PREVIOUS} version to roll back to (Champion v{champion.version} is the only one deployed)"
            )
        registry.move_alias(previous, CHAMPION, f"rollback: replaces v{champion.version}", by)
        registry.move_alias(champion, PREVIOUS, f"rolled back: replaced as Champion by v{previous.version}", by)
        return previous, champion


def serve_champion(
    client: Client | None,
    name: str,
    champion: ModelRef | None,
    cfg: Settings,
    env,
    run: str | None = None,
    wait: Callable[[float], None] = time.sleep,
) -> Outcome:
    """deploy(), and if the rollout fails, give Champion back to the version still serving."""
    if champion is None or client is None:
        return Outcome("skipped", "")
    try:
        return deploy(client, name, champion, cfg, capture_config(env, name, cfg), wait)
    except RolloutFailedError as exc:
        previous = registry.version_of(champion.name, names.PREVIOUS)
        serving = client.get(name) or {}
        routes = (serving.get("config") or {}).get("traffic_config", {}).get("routes", [])
        if previous is not None and [r["served_model_name"] for r in routes] == [served_name(previous)]:
            rollback(champion.name, by=run)
            raise RolloutFailedError(f"{exc}; Champion moved back to v{previous.version}") from None
        raise
