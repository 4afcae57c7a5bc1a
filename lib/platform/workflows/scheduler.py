"""Job schedules: Databricks' `schedule` block (Quartz cron, a time zone, paused or not).

A job of conf/jobs.yml may carry
    schedule: {quartz_cron_expression: "0 0 6 1 1/3 ?", timezone_id: UTC, pause_status: UNPAUSED}
Fire times come from croniter (a maintained cron library); Quartz's 6 or 7 fields (seconds
first, an optional year last) are handed to it as they are, except that Quartz numbers the
days of the week 1-7 from Sunday and cron 0-6, so numeric days are shifted.

The scheduler remembers, per job, the fire time it last ran for (a small JSON file per
environment). When it catches up (it was down, or a simulated clock jumped), a job that missed
several fire times runs once, for the newest of them. The first start records the clock and
runs nothing from the past.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Final, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, field_validator

from lib.core.errors import ConfigError

PAUSED: Final = "PAUSED"
UNPAUSED: Final = "UNPAUSED"
_DOW_NUMBER = re.compile(r"(?<![#/\d])([1-7])(?!\d)")  # a day number, not a step or an nth
_LAST_DOW = re.compile(r"^(\d)L$")


class Schedule(BaseModel):
    """A job's `schedule` block, as Databricks Jobs declare it."""

    model_config = ConfigDict(extra="forbid")

    quartz_cron_expression: str
    timezone_id: str = "UTC"
    pause_status: Literal["UNPAUSED", "PAUSED"] = UNPAUSED

    @field_validator("quartz_cron_expression")
    @classmethod
    def _parses(cls, value: str) -> str:
        fields = value.split()
        if len(fields) not in (6, 7):
            raise ValueError(
                f"{value!r} is not a Quartz cron expression: it needs 6 or 7 fields "
                "(seconds minutes hours day-of-month month day-of-week [year])"
            )
        if not croniter.is_valid(_as_cron(value), second_at_beginning=True):
            raise ValueError(f"{value!r} does not parse as a Quartz cron expression")
        return value

    @field_validator("timezone_id")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as UTC or America/New_York)") from None
        return value

    def fire_times(self, after: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
        """Fire times in (after, until], as naive UTC datetimes (the clock's)."""
        zone = zoneinfo.ZoneInfo(self.timezone_id)
        it = croniter(_as_cron(self.quartz_cron_expression), _utc(after).astimezone(zone), second_at_beginning=True)
        out: list[dt.datetime] = []
        while True:
            fire = it.get_next(dt.datetime).astimezone(dt.UTC).replace(tzinfo=None)
            if fire > until:
                return out
            out.append(fire)

    def next_after(self, after: dt.datetime) -> dt.datetime:
        """The first fire time after `after` (naive UTC)."""
        zone = zoneinfo.ZoneInfo(self.timezone_id)
        it = croniter(_as_cron(self.quartz_cron_expression), _utc(after).astimezone(zone), second_at_beginning=True)
        return it.get_next(dt.datetime).astimezone(dt.UTC).replace(tzinfo=None)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def _as_cron(expression: str) -> str:
    """Quartz to croniter: day-of-week numbers 1-7 (Sunday first) become 0-6, `nL` becomes `Ln`,
    a lone `L` (Saturday in Quartz's day-of-week) becomes 6."""
    fields = expression.split()
    dow = fields[5]
    if dow == "L":
        dow = "6"
    else:
        dow = _DOW_NUMBER.sub(lambda m: str(int(m.group(1)) - 1), dow)
        dow = ",".join(_LAST_DOW.sub(r"L\1", part) for part in dow.split(","))
    fields[5] = dow
    return " ".join(fields)


class Scheduler:
    """Which scheduled jobs are due at a clock time; remembers what ran in `state_file`."""

    def __init__(self, schedules: dict[str, Schedule], state_file: Path):
        self.schedules = {name: s for name, s in schedules.items() if s.pause_status == UNPAUSED}
        self.paused = sorted(set(schedules) - set(self.schedules))
        self.state_file = state_file
        self.last = self._load()

    def _load(self) -> dict[str, dt.datetime]:
        try:
            raw = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"scheduler state {self.state_file} is unreadable ({exc}): delete it to start afresh") from None
        return {name: dt.datetime.fromisoformat(at) for name, at in raw.items()}

    def _save(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({n: at.isoformat() for n, at in sorted(self.last.items())}, indent=1))
        os.replace(tmp, self.state_file)

    def start(self, now: dt.datetime) -> None:
        """A job seen for the first time starts counting from `now` (nothing from before runs)."""
        for name in self.schedules:
            self.last.setdefault(name, now)
        self._save()

    def due(self, now: dt.datetime) -> list[tuple[str, dt.datetime]]:
        """(job, fire time) for each job with a fire time in (its last run, now]: the newest
        one only, however many were missed. In fire-time order."""
        found = []
        for name, schedule in self.schedules.items():
            times = schedule.fire_times(self.last.get(name, now), now)
            if times:
                found.append((name, times[-1], len(times) - 1))
        return [(name, at) for name, at, _ in sorted(found, key=lambda f: f[1])]

    def missed(self, name: str, now: dt.datetime) -> int:
        """How many of a job's fire times in (its last run, now] will not run (all but the newest)."""
        schedule = self.schedules[name]
        return max(0, len(schedule.fire_times(self.last.get(name, now), now)) - 1)

    def ran(self, name: str, fire_time: dt.datetime) -> None:
        self.last[name] = fire_time
        self._save()

    def next_fire(self, now: dt.datetime) -> tuple[str, dt.datetime] | None:
        """The next (job, fire time) after `now`, or None when nothing is scheduled."""
        upcoming = [(s.next_after(max(now, self.last.get(n, now))), n) for n, s in self.schedules.items()]
        if not upcoming:
            return None
        at, name = min(upcoming)
        return name, at


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def run(
    scheduler: Scheduler,
    run_job: Callable[[str, dt.datetime], None],
    clock: Callable[[], dt.datetime] = utcnow,
    sleep: Callable[[float], None] = time.sleep,
    until: dt.datetime | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Run due jobs as the clock goes, until `until` (forever when None; Ctrl-C stops it).

    `run_job(name, fire_time)` runs one job; a failure is reported by it and does not stop the
    scheduler. A simulated clock passes `sleep` that moves the clock. Returns the runs made.
    """
    runs = 0
    scheduler.start(clock())
    if scheduler.paused:
        say(f"scheduler: paused, not run: {', '.join(scheduler.paused)}")
    while True:
        now = clock()
        for name, fire in scheduler.due(now):
            skipped = scheduler.missed(name, now)
            say(
                f"scheduler: {name} due at {fire:%Y-%m-%d %H:%M:%S} UTC"
                + (f" (missed {skipped} earlier fire time(s) while down: run once)" if skipped else "")
            )
            scheduler.ran(name, fire)  # recorded first: a run that fails is not retried at every tick
            run_job(name, fire)
            runs += 1
        upcoming = scheduler.next_fire(clock())
        if upcoming is None:
            say("scheduler: no unpaused schedule in conf/jobs.yml; nothing to do")
            return runs
        name, at = upcoming
        if until is not None and at > until:
            return runs
        wait = (at - clock()).total_seconds()
        if wait > 0:
            say(f"scheduler: next {name} at {at:%Y-%m-%d %H:%M:%S} UTC (in {wait / 3600:.1f} h)")
            sleep(wait)
