"""Alerts: rules over the monitoring metric tables, in the spirit of Databricks SQL alerts.

A rule (conf/alerts.yml) is a Spark SQL query that returns one `value` per `window`, a
condition with a threshold, and "M of the last N windows": when at least M of the newest N
windows meet the condition the rule is TRIGGERED, otherwise OK. A query that fails makes the
rule ERROR, with the reason, and the other rules are evaluated all the same.

Every evaluation is appended to the environment's `alerts` Delta table (the history). A rule
acts when it enters TRIGGERED (or ERROR), not again while it stays there, and is re-armed
once it is OK again. Actions: `notify` (a console line, and a JSON POST to the environment's
webhook) and `run_job: <job>` (the job runs after the current one, e.g. retraining).
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lib.core.config import conf_dir, display_path, parse_model, read_yaml
from lib.core.config.loading import invalid
from lib.core.errors import ConfigError, first_line
from lib.platform.spark.builder import to_pandas
from lib.platform.workflows import notify

OK, TRIGGERED, ERROR = "OK", "TRIGGERED", "ERROR"
TABLE = "alerts"  # <catalog>.<schema>.alerts: one row per rule per evaluation
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
SCHEMA = (
    "name string, evaluated_at timestamp, as_of date, state string, previous_state string, "
    "value double, met int, windows int, reason string, severity string, acted boolean, actions string"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Condition(_Strict):
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    threshold: float


class Trigger(_Strict):
    """At least `m` of the newest `n` windows meet the condition."""

    m: int = Field(1, ge=1)
    n: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _m_of_n(self) -> Trigger:
        if self.m > self.n:
            raise ValueError(f"m ({self.m}) cannot exceed n ({self.n})")
        return self


class RunJob(_Strict):
    run_job: str


Action = Literal["notify"] | RunJob


def _notify() -> list[Action]:
    return ["notify"]


class Rule(_Strict):
    """One alert of conf/alerts.yml."""

    name: str = Field(pattern=r"^\w+$")
    description: str = ""
    query: str
    condition: Condition
    trigger: Trigger = Field(default_factory=Trigger)
    severity: Literal["info", "warning", "critical"] = "warning"
    actions: list[Action] = Field(default_factory=_notify)


class AlertsFile(_Strict):
    """conf/alerts.yml: the rules, each named once."""

    alerts: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> AlertsFile:
        names = [r.name for r in self.alerts]
        if len(set(names)) != len(names):
            raise invalid("alerts", "alert names must be unique")
        return self


def load_rules(folder: Path | None = None, known_jobs: set[str] | None = None) -> list[Rule]:
    """conf/alerts.yml (of `folder`, default the conf folder in use), checked: a wrong key or
    value is one line naming its path; a `run_job` must name a job of conf/jobs.yml (when
    `known_jobs` is given)."""
    path = (folder or conf_dir()) / "alerts.yml"
    rules = parse_model(AlertsFile, read_yaml(path), str(path)).alerts
    for i, rule in enumerate(rules):
        for action in rule.actions:
            if isinstance(action, RunJob) and known_jobs is not None and action.run_job not in known_jobs:
                raise ConfigError(
                    f"{display_path(path)}: alerts.{i}.actions ({rule.name}): run_job names unknown job {action.run_job!r}"
                )
    return rules


def check(spark, rules: list[Rule], schemas: dict[str, str], source: str = "conf/alerts.yml") -> None:
    """Compile each rule's query against empty tables of the metric tables' schemas (`schemas`:
    placeholder name -> DDL): an unknown metric, column or function is one ConfigError line, before
    anything is evaluated or written. A rule naming another table is checked when it runs."""
    for i, rule in enumerate(rules):
        names = set(_PLACEHOLDER.findall(rule.query))
        if not names <= set(schemas):
            continue
        views = {}
        for name in sorted(names):
            views[name] = f"_alert_check_{name}"
            spark.createDataFrame([], schemas[name]).createOrReplaceTempView(views[name])
        try:
            columns = spark.sql(_PLACEHOLDER.sub(lambda m: views[m.group(1)], rule.query)).columns  # noqa: B023 - used at once
        except Exception as exc:  # Spark's analysis error: its first line names what is wrong
            first = first_line(exc)
            raise ConfigError(f"{source} alerts.{i} ({rule.name}): the query does not compile: {first}") from None
        if not {"window", "value"} <= set(columns):
            raise ConfigError(
                f"{source} alerts.{i} ({rule.name}): the query must return columns window and value, "
                f"it returns {', '.join(columns)}"
            )


@dataclass
class Outcome:
    """One rule's evaluation."""

    rule: Rule
    state: str
    previous_state: str | None
    reason: str
    value: float | None = None
    met: int = 0
    windows: int = 0
    jobs: list[str] = field(default_factory=list)

    @property
    def acts(self) -> bool:
        """It entered TRIGGERED or ERROR just now."""
        return self.state in (TRIGGERED, ERROR) and self.state != self.previous_state


def judge(rule: Rule, rows: pd.DataFrame, previous_state: str | None) -> Outcome:
    """The state of a rule given its query's rows (`window`, `value`): M of the newest N windows."""
    if not {"window", "value"} <= set(rows.columns):
        return Outcome(
            rule,
            ERROR,
            previous_state,
            f"the query must return columns window and value, got {', '.join(rows.columns) or 'none'}",
        )
    newest = rows.dropna(subset=["value"]).sort_values("window", ascending=False).head(rule.trigger.n)
    check = _OPS[rule.condition.op]
    met = int(sum(check(float(v), rule.condition.threshold) for v in newest["value"]))
    value = float(newest["value"].iloc[0]) if len(newest) else None
    state = TRIGGERED if met >= rule.trigger.m else OK
    cond = f"value {rule.condition.op} {rule.condition.threshold:g}"
    if not len(newest):
        reason = "no windows to judge yet"
    else:
        needs = f"needs {rule.trigger.m} of {rule.trigger.n}"
        reason = f"{met} of the last {len(newest)} windows meet {cond} ({needs}); newest {value:.4g}"
    return Outcome(rule, state, previous_state, reason, value, met, len(newest))


def resolve_query(query: str, lakehouse, env) -> str:
    """`{table}` placeholders become the Delta path of that table of the environment's schema."""

    def table(match: re.Match) -> str:
        name = env.table(match.group(1))
        if not lakehouse.exists(name):
            raise ConfigError(f"table {name} does not exist")
        return f"delta.`{lakehouse.path(name)}`"

    return _PLACEHOLDER.sub(table, query)


def last_states(lakehouse, env) -> dict[str, str]:
    """Each rule's state at its latest evaluation."""
    name = env.table(TABLE)
    if not lakehouse.exists(name):
        return {}
    rows = to_pandas(lakehouse.read(name).select("name", "evaluated_at", "state"))
    latest = rows.sort_values("evaluated_at").drop_duplicates("name", keep="last")
    return dict(zip(latest["name"], latest["state"]))


def evaluate(lakehouse, env, rules: list[Rule], as_of: dt.date, say: Callable[[str], None] = print) -> list[Outcome]:
    """Evaluate every rule, act on those that entered TRIGGERED or ERROR, append the history.

    Returns the outcomes; `Outcome.jobs` lists the jobs a rule asks to run.
    """

    before = last_states(lakehouse, env)
    outcomes = []
    for rule in rules:
        try:
            rows = to_pandas(lakehouse.spark.sql(resolve_query(rule.query, lakehouse, env)))
            outcome = judge(rule, rows, before.get(rule.name))
        except Exception as exc:  # a failing rule is ERROR with its reason; the others go on
            first = first_line(exc)
            outcome = Outcome(rule, ERROR, before.get(rule.name), f"query failed: {first}")
        say(f"alert {rule.name}: {outcome.state} ({outcome.reason})")
        if outcome.acts:
            for action in rule.actions:
                if action == "notify":
                    notify.notify(
                        env,
                        f"alert {rule.name} [{rule.severity}] is {outcome.state}: {outcome.reason}",
                        say,
                        details={
                            "alert": rule.name,
                            "state": outcome.state,
                            "severity": rule.severity,
                            "value": outcome.value,
                            "as_of": as_of.isoformat(),
                        },
                    )
                elif outcome.state == TRIGGERED:  # a job runs on a real trigger, not on an error
                    outcome.jobs.append(action.run_job)
        outcomes.append(outcome)
    _append(lakehouse, env, outcomes, as_of)
    return outcomes


def _append(lakehouse, env, outcomes: list[Outcome], as_of: dt.date) -> None:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = [
        (
            o.rule.name,
            now,
            as_of,
            o.state,
            o.previous_state,
            o.value,
            o.met,
            o.windows,
            o.reason,
            o.rule.severity,
            o.acts,
            ", ".join(a if isinstance(a, str) else f"run_job {a.run_job}" for a in o.rule.actions),
        )
        for o in outcomes
    ]
    if rows:
        lakehouse.write(lakehouse.spark.createDataFrame(rows, SCHEMA), env.table(TABLE), mode="append")


def history(lakehouse, env) -> pd.DataFrame:
    """The alerts table, oldest first (empty before the first evaluation)."""
    name = env.table(TABLE)
    if not lakehouse.exists(name):
        return pd.DataFrame(columns=[c.split()[0] for c in SCHEMA.split(", ")])
    return to_pandas(lakehouse.read(name).orderBy("evaluated_at", "name"))


def as_records(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """Outcomes as plain dicts (task values, timelines)."""
    return [{"name": o.rule.name, "state": o.state, "acted": o.acts, "reason": o.reason, "jobs": o.jobs} for o in outcomes]
