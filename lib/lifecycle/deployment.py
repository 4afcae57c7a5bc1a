"""Deployment: Challenger vs Champion on the same held-out data; move Champion on a win.

On the first deployment there is no Champion, so the Challenger must beat the configured
baseline instead (model.yml deployment.baseline: a rule, the label's mean or median, a group
mean, or none). "Beat" is in the metric's direction (lower is better for rmse, log_loss, ...).
Both sides' metrics are logged side by side to MLflow and on the version.
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
from pyspark.sql import functions as F

from lib.core import metrics as metric_registry
from lib.core import names
from lib.core.config import APPROVAL_MODES, ConfigError, ModelConfig
from lib.core.config.model import Baseline, GroupMeanBaseline, LabelBaseline, RuleBaseline
from lib.core.errors import ConcurrentDeploymentError, ModelNotFoundError, ValidationFailedError
from lib.core.names import APPROVAL, CHALLENGER, CHAMPION, DECISION, PREVIOUS, REASON
from lib.features import tables
from lib.lifecycle.evaluation import metrics as evaluation_metrics
from lib.platform import registry
from lib.platform.registry import ModelRef
from lib.platform.spark.builder import to_pandas
from lib.serving.client import Client
from lib.serving.rollout import Outcome, RolloutFailedError, capture_config, deploy, served_name
from lib.serving.settings import Settings

_ROW = "__baseline_row"


@dataclass(frozen=True)
class Scores:
    """What the first Challenger is compared with: a baseline's name and its score per held-out row."""

    name: str
    values: np.ndarray | None  # None: no baseline (kind none), nothing to beat


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
        return metric_registry.get(self.metric).better(self.challenger, self.incumbent, self.min_improvement)

    def reason(self) -> str:
        verb = "beats" if self.promote else "does not beat"
        sign = "+" if metric_registry.get(self.metric).higher_is_better else "-"
        return (
            f"challenger {self.metric} {self.challenger:.4f} {verb} {self.incumbent_name} "
            f"{self.incumbent:.4f} {sign} {self.min_improvement}"
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


def baseline_name(cfg: Baseline) -> str:
    """How the baseline is called in the decision and on the version."""
    if isinstance(cfg, GroupMeanBaseline):
        return f"{cfg.kind} by {cfg.by} baseline"
    return f"{cfg.kind} baseline"


def rule_scores(spark, expr: str, rows: pd.DataFrame) -> np.ndarray:
    """A Spark SQL expression over the rows' columns, one score per row, in the rows' order.

    Spark, not pandas: the expression is Spark SQL like every other expression in the config, and
    the engine that reads it should be the one that runs it. The held-out rows are already pandas
    here (the models score them so), so they go to Spark once, on the first deployment only.
    """
    frame = spark.createDataFrame(rows.assign(**{_ROW: np.arange(len(rows))}))
    try:
        scored = frame.select(_ROW, F.expr(expr).cast("double").alias("score"))
        values = to_pandas(scored.orderBy(_ROW))["score"]
    except Exception as exc:  # an AnalysisException names the unknown column or the syntax error
        raise ConfigError(f"model.yml deployment.baseline.expr {expr!r} does not evaluate: {exc}") from exc
    return values.to_numpy(dtype=float)


def baseline_scores(lakehouse, env, model_cfg: ModelConfig, train_window, holdout: pd.DataFrame) -> Scores:
    """The configured baseline's scores on the held-out rows.

    mean, median and group_mean are the label's over the training window (read with Spark);
    a group the training window did not see gets the overall mean.
    """
    cfg, label = model_cfg.deployment.baseline, model_cfg.label
    name = baseline_name(cfg)
    if isinstance(cfg, RuleBaseline):
        return Scores(name, rule_scores(lakehouse.spark, cfg.expr, holdout))
    if not isinstance(cfg, LabelBaseline | GroupMeanBaseline):
        return Scores(name, None)
    # The labels alone unless the groups are features: no point-in-time lookup to pay for then.
    train = tables.labels_in(lakehouse, env, model_cfg, train_window)
    if isinstance(cfg, GroupMeanBaseline) and cfg.by not in train.columns:
        train = tables.training_set(lakehouse, env, model_cfg, train_window)
    y = F.col(label).cast("double")
    if isinstance(cfg, LabelBaseline):
        value = train.agg((F.avg(y) if cfg.kind == "mean" else F.median(y)).alias("v")).collect()[0]["v"]
        return Scores(name, np.full(len(holdout), np.nan if value is None else float(value)))
    groups = to_pandas(train.groupBy(cfg.by).agg(F.sum(y).alias("total"), F.count(y).alias("n")))
    overall = groups["total"].sum() / groups["n"].sum() if groups["n"].sum() else np.nan
    means = dict(zip(groups[cfg.by], groups["total"] / groups["n"], strict=True))
    return Scores(name, holdout[cfg.by].map(means).astype(float).fillna(overall).to_numpy())


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


def compare(
    challenger: ModelRef,
    champion: ModelRef | None,
    holdout: pd.DataFrame,
    model_cfg: ModelConfig,
    baseline: Scores | None = None,
) -> Decision:
    """Score both on the same held-out rows and decide on the configured metric.

    Without a Champion the Challenger is compared with `baseline` (baseline_scores); without
    either, or with the `none` baseline, there is nothing to beat and a measurable Challenger wins.
    """
    cfg, kind = model_cfg.deployment, model_cfg.problem_type
    metric, threshold, label = cfg.metric, model_cfg.inference.decision_threshold, model_cfg.label
    y = holdout[label]
    ours = evaluation_metrics(kind, y, registry.predict(challenger, holdout), threshold)
    if champion is not None:
        theirs = evaluation_metrics(kind, y, registry.predict(champion, holdout), threshold)
        incumbent_name = f"Champion v{champion.version}"
    else:
        baseline = baseline or Scores("no baseline", None)
        incumbent_name = baseline.name
        if baseline.values is None:
            theirs = {k: math.nan for k in ours}
        else:
            theirs = evaluation_metrics(kind, y, baseline.values, threshold)
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
