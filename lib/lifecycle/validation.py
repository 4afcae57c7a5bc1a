"""Validation: the checks a newly registered version must pass before it may be the Challenger.

Checks, each reported by name with its measured value, threshold and verdict (in MLflow, as
`validation.<check>` tags on the version, and in the notebook):
  format          the version loads as a pyfunc model
  signature       it has a signature whose inputs are the configured input columns (training.input_columns)
  input_example   it was logged with an input example
  feature_lookups its feature lookups resolve (tables, keys and columns exist)
  performance.*   mlflow.models.evaluate on the held-out window, judged by
                  mlflow.validate_evaluation_results: absolute bounds (`min`, `max`) per metric, and
                  a minimum change (in the metric's direction) against the Champion when one exists
                  and one is configured; a bound against the metric's direction is compared plainly
  slice.<column>  the slice metric per value of each slice column within min/max
  compliance.*    required tags and a description are present
Run modes: `enabled` (a failure blocks: FAILED, no Challenger, the task fails), `dry_run`
(report, never block: the Challenger alias is given either way) and `disabled` (no checks;
the Challenger alias is given and the status stays PENDING).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from lib.core import metrics as metric_registry
from lib.core import names
from lib.core.config import VALIDATION_MODES, ConfigError, check_param
from lib.core.config.model import Compliance, Metric, ModelConfig, Slices, Threshold
from lib.core.errors import ValidationFailedError, first_line
from lib.core.names import CHALLENGER, VALIDATION_STATUS
from lib.features import store as feature_store
from lib.platform import registry
from lib.platform.registry import ModelRef


@dataclass(frozen=True)
class Check:
    name: str
    value: str
    threshold: str
    passed: bool

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def describe(self) -> str:
        return f"{self.name} {self.value} (needs {self.threshold}) {self.verdict}"


@dataclass
class Report:
    ref: ModelRef
    mode: str
    checks: list[Check] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    slices: pd.DataFrame | None = None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [{**c.__dict__, "verdict": c.verdict} for c in self.checks],
            columns=["name", "value", "threshold", "passed", "verdict"],
        )

    def summary(self) -> str:
        return "; ".join(c.describe() for c in (self.failed or self.checks))


def _first_line(exc: Exception) -> str:
    return first_line(exc)[:200]


def run_mode(override: str, configured: str) -> str:
    """The run mode: the notebook parameter if given, else `configured` (conf/model.yml validation.mode)."""
    mode = check_param("run_mode", override, str) or configured
    if mode not in VALIDATION_MODES:
        raise ConfigError(f"parameter run_mode must be one of {', '.join(VALIDATION_MODES)} or '', got {mode!r}")
    return mode


def check_model(ref: ModelRef, expected_columns: list[str]):
    """Format and metadata: loads as pyfunc, signature inputs, input example. Returns (model, checks)."""
    import mlflow

    try:
        model = mlflow.pyfunc.load_model(ref.uri)
    except Exception as exc:  # any load failure is the verdict, not a crash
        return None, [Check("format", f"does not load: {_first_line(exc)}", "loads as pyfunc", False)]
    checks = [Check("format", "loads as pyfunc", "loads as pyfunc", True)]
    signature = model.metadata.signature
    inputs = signature.inputs.input_names() if signature is not None else None
    if inputs is None:
        checks.append(Check("signature", "missing", f"inputs = the {len(expected_columns)} input columns", False))
    else:
        missing = [c for c in expected_columns if c not in inputs]
        extra = [c for c in inputs if c not in expected_columns]
        value = (
            f"{len(inputs)} inputs match"
            if not missing and not extra
            else f"missing {missing or 'none'}, unexpected {extra or 'none'}"
        )
        checks.append(Check("signature", value, f"inputs = the {len(expected_columns)} input columns", not missing and not extra))
    has_example = model.metadata.saved_input_example_info is not None
    checks.append(Check("input_example", "present" if has_example else "missing", "present", has_example))
    return model, checks


def check_feature_lookups(model, lakehouse) -> Check:
    """The lookups packaged with the model resolve against the lakehouse's feature tables."""
    specs = (model.metadata.metadata or {}).get("feature_lookups") if model is not None else None
    if not specs:
        return Check("feature_lookups", "none packaged", "lookups that resolve", False)
    lookups = [feature_store.FeatureLookup.from_dict(d) for d in specs]
    found = feature_store.problems(lakehouse, lookups)
    value = "; ".join(found) if found else f"{len(lookups)} lookups resolve ({', '.join(lk.table for lk in lookups)})"
    return Check("feature_lookups", value, "lookups that resolve", not found)


def _metric(metric: metric_registry.Metric, threshold: float):
    from mlflow.models import make_metric

    return make_metric(
        eval_fn=lambda predictions, targets, metrics=None: metric.compute(targets, predictions, threshold, None),
        greater_is_better=metric.higher_is_better,
        name=metric.name,
    )


def evaluate(
    frame: pd.DataFrame, label: str, threshold: float, run_name: str, problem_type: str = metric_registry.CLASSIFICATION
):
    """mlflow.models.evaluate of a frame with a `prediction` column, in its own nested run."""
    import mlflow

    with mlflow.start_run(run_name=run_name, nested=True):
        return mlflow.models.evaluate(
            data=frame[["prediction", label]],
            predictions="prediction",
            targets=label,
            model_type=None,
            extra_metrics=[_metric(m, threshold) for m in metric_registry.of(problem_type)],
        )


def _plain(name: str, value: float, rule: str, bound: float) -> Check:
    """A bound against the metric's direction, which MLflow cannot express: compared as written."""
    if not math.isfinite(value):
        return Check(name, f"{value} (not measurable)", f"{rule} {bound}", False)
    return Check(name, f"{value:.4f}", f"{rule} {bound}", value >= bound if rule == ">=" else value <= bound)


def check_performance(candidate, baseline, thresholds: dict[Metric, Threshold], champion: str | None) -> list[Check]:
    """One check per configured rule, each judged by mlflow.validate_evaluation_results."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import MetricThreshold

    checks = []

    def judge(name: str, metric: str, rule: MetricThreshold, value: str, needs: str, base=None) -> None:
        measured = [candidate.metrics.get(metric, math.nan)] + ([base.metrics.get(metric, math.nan)] if base else [])
        if not all(math.isfinite(v) for v in measured):
            checks.append(Check(name, f"{value} (not measurable)", needs, False))  # MLflow cannot compare NaN
            return
        try:
            mlflow.validate_evaluation_results({metric: rule}, candidate, base)
            passed = True
        except MlflowException:  # ModelValidationFailedException: the rule was not met
            passed = False
        checks.append(Check(name, value, needs, passed))

    for metric, rule in thresholds.items():
        value = candidate.metrics.get(metric, math.nan)
        up = metric_registry.get(metric).higher_is_better
        # The bound in the metric's direction first: it keeps the check name performance.<metric>.
        bounds = [(">=", rule.min), ("<=", rule.max)] if up else [("<=", rule.max), (">=", rule.min)]
        named = [(op, bound) for op, bound in bounds if bound is not None]
        for i, (op, bound) in enumerate(named):
            name = f"performance.{metric}" if i == 0 else f"performance.{metric}_{'min' if op == '>=' else 'max'}"
            if (op == ">=") == up:
                judge(name, metric, MetricThreshold(threshold=bound, greater_is_better=up), f"{value:.4f}", f"{op} {bound}")
            else:
                checks.append(_plain(name, value, op, bound))
        if rule.min_change_vs_champion is not None and baseline is not None:
            base = baseline.metrics.get(metric, math.nan)
            change = rule.min_change_vs_champion
            judge(
                f"performance.{metric}_vs_champion",
                metric,
                MetricThreshold(min_absolute_change=change, greater_is_better=up),
                f"{value - base:+.4f} vs {champion}",
                f">= +{change}" if up else f"<= -{change}",
                baseline,
            )
    return checks


def slice_metrics(frame: pd.DataFrame, columns: list[str], metric: str, label: str, threshold: float) -> pd.DataFrame:
    """The metric per value of each slice column: slice_key, slice_value, rows, value."""
    compute = metric_registry.get(metric).compute
    rows = []
    for column in columns:
        for value, part in frame.groupby(column, dropna=False):
            m = compute(part[label], part["prediction"], threshold, None)
            rows.append({"slice_key": column, "slice_value": str(value), "rows": len(part), metric: m})
    return pd.DataFrame(rows, columns=["slice_key", "slice_value", "rows", metric])


def check_slices(table: pd.DataFrame, cfg: Slices) -> list[Check]:
    """Per slice column: every judged slice (>= min_rows, measurable) must stay within min/max.

    Reported by the worst slice in the metric's direction (the lowest roc_auc, the highest rmse),
    and, for a bound against the direction, the slice nearest to breaking it.
    """
    metric, min_rows = cfg.metric, cfg.min_rows
    up = metric_registry.get(metric).higher_is_better
    bounds = [(op, b) for op, b in ((">=", cfg.min), ("<=", cfg.max)) if b is not None]
    bounds.sort(key=lambda ob: (ob[0] == ">=") != up)  # the bound in the metric's direction first
    needs = " and ".join(f"{metric} {op} {b}" for op, b in bounds)
    checks = []
    for column, part in table.groupby("slice_key", sort=False):
        judged = part[(part["rows"] >= min_rows) & part[metric].notna()]
        if judged.empty:
            checks.append(Check(f"slice.{column}", f"no slice has {min_rows}+ rows", needs, True))
            continue
        found, passed = [], True
        for op, bound in bounds:
            at = judged.loc[judged[metric].idxmin() if op == ">=" else judged[metric].idxmax()]
            passed &= bool(at[metric] >= bound if op == ">=" else at[metric] <= bound)
            word = "worst" if (op == ">=") == up else ("lowest" if op == ">=" else "highest")
            found.append(f"{word} {at['slice_value']} {metric} {at[metric]:.4f}")
        checks.append(
            Check(
                f"slice.{column}", f"{', '.join(found)} of {len(judged)} slices", f"{needs} in slices of {min_rows}+ rows", passed
            )
        )
    return checks


def check_compliance(ref: ModelRef, cfg: Compliance) -> list[Check]:
    """Required tags present (non-empty) and, if configured, a description."""
    version = registry.require_version(ref)
    required = list(cfg.required_tags)
    missing = [t for t in required if not version.tags.get(t)]
    checks = [
        Check(
            "compliance.tags",
            f"missing {', '.join(missing)}" if missing else f"{len(required)} present",
            f"tags {', '.join(required)}",
            not missing,
        )
    ]
    if cfg.require_description:
        text = (version.description or "").strip()
        checks.append(
            Check("compliance.description", f"{len(text)} characters" if text else "missing", "a description", bool(text))
        )
    return checks


def _score(model, holdout: pd.DataFrame, report: Report) -> pd.DataFrame | None:
    """The held-out rows with the model's predictions, or None (and a FAIL check) if it cannot score."""
    try:
        return holdout.assign(prediction=model.predict(holdout))
    except Exception as exc:  # the verdict, not a crash
        report.checks.append(Check("scoring", f"fails: {_first_line(exc)}", "scores the held-out window", False))
        return None


def validate(
    ref: ModelRef,
    lakehouse,
    holdout: pd.DataFrame,
    champion: ModelRef | None,
    model_cfg: ModelConfig,
    expected_columns: list[str],
    mode: str,
) -> Report:
    """Run every check (none when mode is disabled) in an MLflow run; returns the report."""
    import mlflow

    report = Report(ref, mode)
    if mode == "disabled":
        return report
    cfg, label = model_cfg.validation, model_cfg.label
    threshold = model_cfg.inference.decision_threshold
    with mlflow.start_run(run_name=f"validate v{ref.version}"):
        mlflow.set_tags({"model_name": ref.name, "model_version": ref.version, names.VALIDATION_MODE: mode})
        model, report.checks = check_model(ref, expected_columns)
        report.checks.append(check_feature_lookups(model, lakehouse))
        scored = _score(model, holdout, report) if all(c.passed for c in report.checks[:2]) else None
        if scored is None:
            report.checks.append(
                Check("performance", "not scored (see the checks above)", "scored on the held-out window", False)
            )
        else:
            candidate = evaluate(scored, label, threshold, f"candidate v{ref.version}", model_cfg.problem_type)
            report.metrics = dict(candidate.metrics)
            baseline = against = None
            if champion is not None and champion != ref:
                against = f"Champion v{champion.version}"
                scored_champion = holdout.assign(prediction=registry.predict(champion, holdout))
                baseline = evaluate(scored_champion, label, threshold, against, model_cfg.problem_type)
            report.checks += check_performance(candidate, baseline, cfg.thresholds, against)
            if cfg.slices is not None:
                sl = cfg.slices
                report.slices = slice_metrics(scored, sl.columns, sl.metric, label, threshold)
                report.checks += check_slices(report.slices, sl)
                mlflow.log_table(report.slices, "validation_slices.json")
        report.checks += check_compliance(ref, cfg.compliance)
        mlflow.log_metrics({k: v for k, v in report.metrics.items() if isinstance(v, float) and math.isfinite(v)})
        mlflow.log_table(report.table(), "validation_checks.json")
        mlflow.set_tag(VALIDATION_STATUS, "PASSED" if report.passed else "FAILED")
    return report


def record(report: Report, by: str | None = None) -> str:
    """Write the outcome on the version and give the Challenger alias as the mode says.

    Returns the status. In `enabled` mode a failure raises ValidationFailedError after the
    tags are written (and the Challenger alias is not touched).
    """
    ref = report.ref
    tags = {names.validation_tag(c.name): f"{c.verdict}: {c.value} (needs {c.threshold})"[:4000] for c in report.checks}
    status = "PENDING" if report.mode == "disabled" else ("PASSED" if report.passed else "FAILED")
    registry.set_tags(ref, {**tags, names.VALIDATION_MODE: report.mode, VALIDATION_STATUS: status})
    if status == "FAILED" and report.mode == "enabled":
        raise ValidationFailedError(f"{ref.uri} failed validation: {report.summary()}")
    reason = {
        "PASSED": f"validation passed ({len(report.checks)} checks)",
        "FAILED": f"dry run: failed checks not enforced ({report.summary()})",
        "PENDING": "validation disabled",
    }[status]
    with registry.alias_lock(ref.name):
        registry.move_alias(ref, CHALLENGER, reason, by)
    return status
