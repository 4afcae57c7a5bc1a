"""Replay: production through 2013 on a simulated clock, one step at a time.

    python run_pipeline.py --env prod --replay 2013-06-01:2013-12-31 --every 7d

The first step runs the whole workflow (ingest, train, deploy, score, monitor) as of the first
day. Every later step moves the clock on by `every` days and runs, as of that day, the jobs
whose schedules (conf/jobs.yml) came due since the previous step (each once, however many of
its fire times passed), then the step job: score the period, refresh the monitors, evaluate
the alerts; the jobs an alert asks for (retraining) run right after it. Validation and
deployment decide about every retrained model as they always do.

Each job run is one row of the timeline: the Champion before and after, each alert's value and
state, the versions trained and what became of them. It is printed as it goes and written to
the `replay_timeline` Delta table at the end (also when the replay is stopped early).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lib.core import names
from lib.core.config import DataWindow
from lib.core.errors import ConfigError, LakehouseError
from lib.core.names import DECISION, REASON
from lib.platform import registry

TABLE = "replay_timeline"
SCHEMA = (
    "run int, step int, as_of date, event string, job string, seconds double, ok boolean, error string, "
    "champion_before string, champion_after string, alert_values map<string,double>, "
    "alert_states map<string,string>, alerts_fired array<string>, trained array<string>, outcome string"
)
FIRST_JOB = "workflow"  # step 0: everything, so that there is a Champion to score with
STEP_JOB = "score_and_monitor"  # every later step


def parse_span(text: str) -> tuple[dt.date, dt.date]:
    """`START:END` (ISO dates, both inclusive)."""
    try:
        start, end = (dt.date.fromisoformat(part) for part in text.split(":"))
    except ValueError:
        raise ConfigError(f"--replay takes START:END as ISO dates, e.g. 2013-06-01:2013-12-31; got {text!r}") from None
    if end <= start:
        raise ConfigError(f"--replay {text}: END must be after START")
    return start, end


def parse_every(text: str) -> int:
    """`7d` -> 7 (whole days)."""
    match = re.fullmatch(r"([1-9]\d*)d", text.strip())
    if not match:
        raise ConfigError(f"--every takes a number of days such as 7d; got {text!r}")
    return int(match.group(1))


def steps(start: dt.date, end: dt.date, every: int, window: DataWindow) -> list[dt.date]:
    """The as-of date of each step: START, START + every, ... up to END, each a valid run date
    (at least the training window after the data's start; its scored period inside the data)."""
    if start < window.earliest_as_of():
        raise ConfigError(
            f"--replay starts {start}, before the first day a model can be trained as of "
            f"({window.earliest_as_of()}: {window.train_days + window.holdout_days} days of data first)"
        )
    last = min(end, window.latest_as_of())
    days = []
    day = start
    while day <= last:
        days.append(day)
        day += dt.timedelta(days=every)
    return days


@dataclass
class Event:
    """One job run of the replay: a timeline row."""

    step: int
    as_of: dt.date
    event: str  # first | scheduled | step | triggered
    job: str
    seconds: float = 0.0
    ok: bool = True
    error: str = ""
    champion_before: str = ""
    champion_after: str = ""
    alert_values: dict[str, float] = field(default_factory=dict)
    alert_states: dict[str, str] = field(default_factory=dict)
    alerts_fired: list[str] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    outcome: str = ""
    values: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)  # the job's task values

    def record(self) -> tuple:
        return (
            self.step,
            self.as_of,
            self.event,
            self.job,
            round(self.seconds, 1),
            self.ok,
            self.error,
            self.champion_before,
            self.champion_after,
            self.alert_values,
            self.alert_states,
            self.alerts_fired,
            self.trained,
            self.outcome,
        )

    def line(self) -> str:
        champion = (
            f"Champion v{self.champion_before}"
            if self.champion_before == self.champion_after
            else f"Champion v{self.champion_before or '-'} -> v{self.champion_after or '-'}"
        )
        alerts = ", ".join(
            f"{name} {_num(self.alert_values.get(name))}{'!' if state == 'TRIGGERED' else ''}"
            for name, state in self.alert_states.items()
        )
        parts = [f"{self.as_of}  {self.event:<9} {self.job:<17} {self.seconds:5.0f}s  {champion}"]
        if alerts:
            parts.append(alerts)
        if self.alerts_fired:
            parts.append(f"fired: {', '.join(self.alerts_fired)}")
        if self.outcome:
            parts.append(self.outcome)
        if not self.ok:
            parts.append(f"FAILED: {self.error}")
        return "  |  ".join(parts)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _versions(model: str) -> dict[str, dict[str, str]]:
    return {str(row["version"]): row["tags"] for row in registry.history(model)}


def _outcome(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> tuple[list[str], str]:
    """The versions a job trained and what became of each (validation, deployment and why)."""
    new = [v for v in after if v not in before]
    words = []
    for version in new:
        tags = after[version]
        status = tags.get(names.VALIDATION_STATUS, "PENDING")
        text = f"v{version}: validation {status}"
        if tags.get(DECISION):
            text += f", {tags[DECISION]} ({tags.get(REASON, '')})"
        words.append(text)
    return new, "; ".join(words)


def replay(
    model: str,
    days: list[dt.date],
    run_job: Callable[[str, dt.date], dict[str, dict[str, Any]]],
    scheduler,
    triggered: Callable[[dict[str, dict[str, Any]]], list[str]],
    notebooks: Callable[[str], set],
    events: list[Event],
    say: Callable[[str], None] = print,
) -> list[Event]:
    """Run the replay, appending each job run to `events` (so a caller has them also when it
    stops early), and return them.

    `run_job(name, as_of)` runs a job without following its triggers and returns its task
    values (raises LakehouseError on failure); `scheduler` (lib.platform.workflows.scheduler.Scheduler) says
    which scheduled jobs came due; `triggered(values)` names the jobs a run asked for;
    `notebooks(job)` the notebooks a job runs: a job asked for whose notebooks all ran already
    in this step, as of the same day, is skipped (it would repeat their work on the same data).
    """
    for step, day in enumerate(days):
        clock = dt.datetime.combine(day, dt.time())
        if step == 0:
            scheduler.start(clock)
            planned = [("first", FIRST_JOB)]
        else:
            planned = []
            for name, fire in scheduler.due(clock):
                scheduler.ran(name, fire)
                planned.append(("scheduled", name))
            planned.append(("step", STEP_JOB))
        say(f"--- step {step + 1}/{len(days)}: as of {day} ---")
        ran: set = set()  # the notebooks this step has run (as of `day`)
        while planned:
            kind, job = planned.pop(0)
            if kind == "triggered" and notebooks(job) <= ran:
                say(f"{day}  {kind:<9} {job:<17} skipped: its notebooks ran as of {day} in this step already")
                continue
            event = _run(step, day, kind, job, model, run_job)
            events.append(event)
            say(event.line())
            if step == 0 and not event.ok:
                raise LakehouseError(f"the replay's first step ({FIRST_JOB} as of {day}) failed: {event.error}")
            if event.ok:
                ran |= notebooks(job)
            for name in triggered(event.values) if event.ok else []:
                if all(name != j for _, j in planned):
                    planned.append(("triggered", name))
    return events


def _run(
    step: int, day: dt.date, kind: str, job: str, model: str, run_job: Callable[[str, dt.date], dict[str, dict[str, Any]]]
) -> Event:
    event = Event(step, day, kind, job)
    before = _versions(model)
    event.champion_before = registry.aliases(model).get(names.CHAMPION, "")
    started = time.monotonic()
    values: dict[str, dict[str, Any]] = {}
    try:
        values = run_job(job, day)
    except LakehouseError as exc:
        event.ok, event.error = False, str(exc).splitlines()[0]
    event.seconds = time.monotonic() - started
    event.values = values
    event.champion_after = registry.aliases(model).get(names.CHAMPION, "")
    event.trained, event.outcome = _outcome(before, _versions(model))
    monitoring = values.get("monitoring", {})
    event.alert_states = dict(monitoring.get("alerts") or {})
    event.alert_values = {k: float(v) for k, v in (monitoring.get("alert_values") or {}).items() if v is not None}
    event.alerts_fired = list(monitoring.get("alerts_fired") or [])
    return event


def write(lakehouse, env, events: list[Event]) -> str:
    """The timeline as the `replay_timeline` table (replaced); returns its name."""
    name = env.table(TABLE)
    records = [(i, *e.record()) for i, e in enumerate(events)]
    lakehouse.write(lakehouse.spark.createDataFrame(records, SCHEMA), name)
    return name


def display(timeline: pd.DataFrame) -> pd.DataFrame:
    """The timeline table as people read it: one row per job run, the alerts in one column."""

    def alerts(row) -> str:
        values, states = row["alert_values"] or {}, row["alert_states"] or {}
        return ", ".join(
            f"{n} {_num(values.get(n))}{' TRIGGERED' if s == 'TRIGGERED' else ''}" for n, s in sorted(states.items())
        )

    def champion(row) -> str:
        before, after = row["champion_before"] or "-", row["champion_after"] or "-"
        return f"v{after}" if before == after else f"v{before} -> v{after}"

    if timeline.empty:
        return pd.DataFrame(columns=["as_of", "event", "job", "seconds", "champion", "alerts", "fired", "outcome"])
    return pd.DataFrame(
        {
            "as_of": timeline["as_of"],
            "event": timeline["event"],
            "job": timeline["job"],
            "seconds": timeline["seconds"],
            "champion": timeline.apply(champion, axis=1),
            "alerts": timeline.apply(alerts, axis=1),
            "fired": timeline["alerts_fired"].map(lambda v: ", ".join(v) if v is not None else ""),
            "outcome": [o if ok else f"FAILED: {e}" for o, ok, e in zip(timeline["outcome"], timeline["ok"], timeline["error"])],
        }
    )


def summary(events: list[Event]) -> list[str]:
    """What happened, in a few lines: steps, retrains and why, promotions, alerts fired."""
    retrains = [e for e in events if e.event in ("scheduled", "triggered") and e.trained]
    promoted = [e for e in events if e.champion_after != e.champion_before]
    lines = [f"{len({e.step for e in events})} steps, {len(events)} job runs, {sum(not e.ok for e in events)} failed"]
    fired = [f"{e.as_of} {', '.join(e.alerts_fired)}" for e in events if e.alerts_fired]
    lines.append("alerts fired: " + ("; ".join(fired) if fired else "none"))
    lines.append(f"retrains: {len(retrains)} (" + ", ".join(f"{e.as_of} {e.event}" for e in retrains) + ")")
    for e in promoted:
        lines.append(
            f"promotion {e.as_of}: Champion v{e.champion_before or '-'} -> v{e.champion_after} ({e.event} {e.job}): {e.outcome}"
        )
    return lines
