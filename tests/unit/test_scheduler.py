"""Job schedules: Quartz cron through croniter, time zones, missed runs, a simulated clock."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from lib.core.errors import ConfigError
from lib.platform.workflows import spec
from lib.platform.workflows.scheduler import Schedule, Scheduler, run

T = dt.datetime


def _fires(expression: str, after: T, until: T, zone: str = "UTC") -> list[T]:
    return Schedule(quartz_cron_expression=expression, timezone_id=zone).fire_times(after, until)


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("0 0 6 ? * MON", [T(2013, 6, 3, 6), T(2013, 6, 10, 6)]),
        ("0 0 6 ? * 2", [T(2013, 6, 3, 6), T(2013, 6, 10, 6)]),  # Quartz: 2 is Monday
        ("0 0 6 ? * 1", [T(2013, 6, 2, 6), T(2013, 6, 9, 6)]),  # 1 is Sunday
        ("0 0 6 ? * 7", [T(2013, 6, 1, 6), T(2013, 6, 8, 6)]),  # 7 is Saturday
        ("0 0 6 ? * 2-3", [T(2013, 6, 3, 6), T(2013, 6, 4, 6), T(2013, 6, 10, 6), T(2013, 6, 11, 6)]),
        ("0 0 6 ? * 6L", []),  # last Friday: 28 June, after the range
        ("0 30 2 1 1/3 ?", []),  # quarterly: 1 July, after the range
        ("0 0 6 * * ? 2014", []),  # a year field
    ],
)
def test_quartz_fields_map_onto_croniter(expression, expected):
    assert _fires(expression, T(2013, 6, 1), T(2013, 6, 12)) == expected


def test_last_weekday_nth_weekday_and_quarters():
    assert _fires("0 0 6 ? * 6L", T(2013, 6, 1), T(2013, 8, 31)) == [T(2013, 6, 28, 6), T(2013, 7, 26, 6), T(2013, 8, 30, 6)]
    assert _fires("0 0 6 ? * 2#1", T(2013, 6, 1), T(2013, 7, 31)) == [T(2013, 6, 3, 6), T(2013, 7, 1, 6)]
    assert _fires("0 0 6 1 1/3 ?", T(2013, 1, 1), T(2013, 12, 31)) == [T(2013, m, 1, 6) for m in (1, 4, 7, 10)]


def test_a_time_zone_moves_fire_times_with_daylight_saving():
    # 06:00 in New York is 10:00 UTC in summer (EDT) and 11:00 UTC in winter (EST).
    fires = _fires("0 0 6 ? * MON", T(2013, 10, 27), T(2013, 11, 12), "America/New_York")
    assert fires == [T(2013, 10, 28, 10), T(2013, 11, 4, 11), T(2013, 11, 11, 11)]


@pytest.mark.parametrize(
    "schedule, message",
    [
        ("{quartz_cron_expression: '0 6 * * *'}", "needs 6 or 7 fields"),
        ("{quartz_cron_expression: '0 0 25 * * ?'}", "does not parse"),
        ("{quartz_cron_expression: '0 0 6 * * ?', timezone_id: Mars/Olympus}", "unknown time zone"),
        ("{quartz_cron_expression: '0 0 6 * * ?', pause_status: SOMETIMES}", "pause_status"),
        ("{quartz_cron_expression: '0 0 6 * * ?', every: 2}", "every"),
        ("{timezone_id: UTC}", "quartz_cron_expression"),
    ],
)
def test_a_bad_schedule_is_one_line_naming_the_job(tmp_path, schedule, message):
    path = tmp_path / "jobs.yml"
    path.write_text(
        textwrap.dedent(f"""\
        jobs:
          nightly:
            schedule: {schedule}
            tasks:
              - task_key: ingest
                notebook_task: {{notebook_path: notebooks/pipelines/01_ingest.ipynb}}
        """)
    )
    with pytest.raises(ConfigError) as err:
        spec.load_jobs(path)
    assert "jobs.nightly.schedule" in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_misspelt_job_setting_is_refused(tmp_path):
    path = tmp_path / "jobs.yml"
    path.write_text(
        "jobs:\n  nightly:\n    schedul: {}\n    tasks:\n      - task_key: a\n"
        "        notebook_task: {notebook_path: notebooks/pipelines/01_ingest.ipynb}\n"
    )
    with pytest.raises(ConfigError, match=r"jobs.yml: jobs.nightly.schedul: unknown key \(did you mean schedule\?\)$"):
        spec.load_jobs(path)


def test_the_shipped_schedules_parse():
    scheduled = {name: job.schedule for name, job in spec.load_jobs().items() if job.schedule}
    assert scheduled, "conf/jobs.yml declares at least one schedule"
    for schedule in scheduled.values():
        assert schedule.next_after(T(2013, 6, 1)) > T(2013, 6, 1)


WEEKLY = Schedule(quartz_cron_expression="0 0 6 ? * MON")
MONTHLY = Schedule(quartz_cron_expression="0 0 3 1 * ?")


def test_a_first_start_runs_nothing_from_the_past(tmp_path):
    scheduler = Scheduler({"weekly": WEEKLY}, tmp_path / "state.json")
    scheduler.start(T(2013, 6, 5))
    assert scheduler.due(T(2013, 6, 5)) == []
    assert scheduler.due(T(2013, 6, 10, 6)) == [("weekly", T(2013, 6, 10, 6))]


def test_missed_runs_while_down_run_once_for_the_newest_fire_time(tmp_path):
    state = tmp_path / "state.json"
    first = Scheduler({"weekly": WEEKLY, "monthly": MONTHLY}, state)
    first.start(T(2013, 6, 1))
    first.ran("weekly", T(2013, 6, 3, 6))
    # Down from 4 June to 15 July: six Mondays and two firsts of the month (1 June 03:00, 1 July).
    again = Scheduler({"weekly": WEEKLY, "monthly": MONTHLY}, state)
    now = T(2013, 7, 15, 12)
    assert again.due(now) == [("monthly", T(2013, 7, 1, 3)), ("weekly", T(2013, 7, 15, 6))]
    assert again.missed("weekly", now) == 5 and again.missed("monthly", now) == 1
    again.ran("weekly", T(2013, 7, 15, 6))
    assert Scheduler({"weekly": WEEKLY}, state).due(now) == []


def test_a_paused_schedule_never_runs(tmp_path):
    paused = WEEKLY.model_copy(update={"pause_status": "PAUSED"})
    scheduler = Scheduler({"weekly": paused, "monthly": MONTHLY}, tmp_path / "s.json")
    scheduler.start(T(2013, 6, 1))
    assert scheduler.paused == ["weekly"]
    assert [name for name, _ in scheduler.due(T(2013, 8, 1))] == ["monthly"]


def test_an_unreadable_state_file_says_how_to_recover(tmp_path):
    state = tmp_path / "s.json"
    state.write_text("{not json")
    with pytest.raises(ConfigError, match="delete it to start afresh"):
        Scheduler({"weekly": WEEKLY}, state)


def test_the_loop_on_a_simulated_clock_runs_each_fire_time_in_order(tmp_path):
    clock = [T(2013, 6, 1)]
    ran: list[tuple[str, T]] = []

    def sleep(seconds: float) -> None:
        clock[0] += dt.timedelta(seconds=seconds)

    def run_job(name: str, fire: T) -> None:
        ran.append((name, fire))
        clock[0] += dt.timedelta(minutes=20)  # the job takes time on the clock too

    lines: list[str] = []
    runs = run(
        Scheduler({"weekly": WEEKLY, "monthly": MONTHLY}, tmp_path / "s.json"),
        run_job,
        clock=lambda: clock[0],
        sleep=sleep,
        until=T(2013, 7, 2),
        say=lines.append,
    )
    assert runs == 7
    assert ran == [
        ("monthly", T(2013, 6, 1, 3)),
        ("weekly", T(2013, 6, 3, 6)),
        ("weekly", T(2013, 6, 10, 6)),
        ("weekly", T(2013, 6, 17, 6)),
        ("weekly", T(2013, 6, 24, 6)),
        ("monthly", T(2013, 7, 1, 3)),
        ("weekly", T(2013, 7, 1, 6)),
    ]
    assert any(line.startswith("scheduler: next weekly at 2013-06-03 06:00:00") for line in lines)
