"""The replay's orchestration: steps, scheduled and triggered jobs, the timeline and its table.

The jobs here are stand-ins that register versions and move aliases in a real MLflow registry
the way training and deployment do; the real jobs run in the integration test's replay.
"""

from __future__ import annotations

import datetime as dt

import pytest

from lib.core import names
from lib.core.config import DataWindow
from lib.core.errors import ConfigError, JobFailedError, LakehouseError
from lib.core.names import DECISION, REASON
from lib.platform import registry
from lib.platform.workflows import replay
from lib.platform.workflows.scheduler import Schedule, Scheduler

D = dt.date
WINDOW = DataWindow(start=D(2013, 1, 1), end=D(2014, 1, 1), as_of=D(2013, 10, 1), train_days=120, holdout_days=14, horizon_days=7)
NOTEBOOKS = {
    "workflow": {"ingest", "features", "train", "validate", "deploy", "serve", "score", "monitor"},
    "retraining": {"features", "train", "validate", "deploy", "serve"},
    "score_and_monitor": {"score", "monitor"},
}


def test_steps_parse_and_stay_inside_the_data():
    assert replay.parse_span("2013-06-01:2013-12-31") == (D(2013, 6, 1), D(2013, 12, 31))
    assert replay.parse_every("7d") == 7
    days = replay.steps(D(2013, 6, 1), D(2013, 12, 31), 7, WINDOW)
    # The last step scores [as_of, as_of + 7 days): 21 December is the last one inside 2013.
    assert (days[0], days[-1], len(days)) == (D(2013, 6, 1), D(2013, 12, 21), 30)
    with pytest.raises(ConfigError, match="before the first day a model can be trained as of"):
        replay.steps(D(2013, 3, 1), D(2013, 6, 1), 7, WINDOW)


@pytest.mark.parametrize(
    "flag, text, message",
    [
        ("span", "2013-06-01", "START:END as ISO dates"),
        ("span", "2013-06-01:2013-02-30", "START:END as ISO dates"),
        ("span", "2013-06-01:2013-05-01", "END must be after START"),
        ("every", "7", "a number of days such as 7d"),
        ("every", "0d", "a number of days such as 7d"),
        ("every", "1w", "a number of days such as 7d"),
    ],
)
def test_bad_replay_arguments_are_one_line(flag, text, message):
    with pytest.raises(ConfigError, match=message):
        replay.parse_span(text) if flag == "span" else replay.parse_every(text)


class Jobs:
    """Stand-in jobs on a real registry: training registers a version, deployment promotes it
    when `promote(as_of)` says so; score_and_monitor reports alerts as 07_monitoring does."""

    def __init__(self, model: str, fire_on: set[D], fail_on: set[D], promote: set[D]):
        self.model, self.fire_on, self.fail_on, self.promote = model, fire_on, fail_on, promote
        self.ran: list[tuple[str, D]] = []

    def __call__(self, job: str, as_of: D) -> dict:
        self.ran.append((job, as_of))
        if as_of in self.fail_on and job == "score_and_monitor":
            raise JobFailedError(f"task batch_inference failed in cell In [4]: no flights on {as_of}")
        values: dict = {}
        if job in ("workflow", "retraining"):
            c = registry.client()
            if not c.search_registered_models(f"name = '{self.model}'"):
                c.create_registered_model(self.model)
            mv = c.create_model_version(self.model, source="file:///nowhere", tags={names.VALIDATION_STATUS: "PASSED"})
            ref = registry.ModelRef(self.model, str(mv.version))
            won = job == "workflow" or as_of in self.promote
            registry.set_tags(
                ref,
                {DECISION: "PROMOTED" if won else "REJECTED", REASON: f"challenger roc_auc {0.8 if won else 0.7} vs Champion"},
            )
            if won:
                registry.move_alias(ref, names.CHAMPION, "won", by="test")
        if job in ("workflow", "score_and_monitor"):
            fired = as_of in self.fire_on
            values["monitoring"] = {
                "alerts": {"temperature_drift": "TRIGGERED" if fired else "OK"},
                "alert_values": {"temperature_drift": 12.5 if fired else 3.0},
                "alerts_fired": ["temperature_drift"] if fired else [],
                "run_jobs": ["retraining"] if fired else [],
            }
        return values


def _triggered(values: dict) -> list[str]:
    return [job for v in values.values() for job in v.get("run_jobs", [])]


def test_a_replay_runs_steps_schedules_and_triggers_and_records_each_run(mlflow_env, tmp_path):
    model = mlflow_env.model_name
    days = replay.steps(D(2013, 6, 1), D(2013, 6, 29), 7, WINDOW)
    # The first step's alert asks for retraining the workflow just did (skipped); on 22 June an
    # alert triggers a retrain that is rejected; the scheduled retrain of 15 June is promoted.
    jobs = Jobs(model, fire_on={D(2013, 6, 1), D(2013, 6, 22)}, fail_on={D(2013, 6, 29)}, promote={D(2013, 6, 15)})
    scheduler = Scheduler({"retraining": Schedule(quartz_cron_expression="0 0 6 10 * ?")}, tmp_path / "s.json")
    events: list[replay.Event] = []
    said: list[str] = []
    returned = replay.replay(model, days, jobs, scheduler, _triggered, NOTEBOOKS.__getitem__, events, said.append)
    assert returned is events
    assert jobs.ran == [
        ("workflow", D(2013, 6, 1)),
        ("score_and_monitor", D(2013, 6, 8)),
        ("retraining", D(2013, 6, 15)),
        ("score_and_monitor", D(2013, 6, 15)),
        ("score_and_monitor", D(2013, 6, 22)),
        ("retraining", D(2013, 6, 22)),
        ("score_and_monitor", D(2013, 6, 29)),
    ]
    assert [(e.as_of, e.event, e.champion_before, e.champion_after, e.trained, e.ok) for e in events] == [
        (D(2013, 6, 1), "first", "", "1", ["1"], True),
        (D(2013, 6, 8), "step", "1", "1", [], True),
        (D(2013, 6, 15), "scheduled", "1", "2", ["2"], True),
        (D(2013, 6, 15), "step", "2", "2", [], True),
        (D(2013, 6, 22), "step", "2", "2", [], True),
        (D(2013, 6, 22), "triggered", "2", "2", ["3"], True),
        (D(2013, 6, 29), "step", "2", "2", [], False),
    ]
    assert events[2].outcome == "v2: validation PASSED, PROMOTED (challenger roc_auc 0.8 vs Champion)"
    assert events[5].outcome == "v3: validation PASSED, REJECTED (challenger roc_auc 0.7 vs Champion)"
    assert events[4].alerts_fired == ["temperature_drift"] and events[4].alert_values == {"temperature_drift": 12.5}
    assert events[6].error == "task batch_inference failed in cell In [4]: no flights on 2013-06-29"
    assert any(line.startswith("2013-06-01  triggered retraining") and "skipped" in line for line in said)
    assert "Champion v2 -> v3" not in "\n".join(said) and "Champion v1 -> v2" in "\n".join(said)
    summary = replay.summary(events)
    assert summary[0] == "5 steps, 7 job runs, 1 failed"
    assert summary[1] == "alerts fired: 2013-06-01 temperature_drift; 2013-06-22 temperature_drift"
    assert summary[2] == "retrains: 2 (2013-06-15 scheduled, 2013-06-22 triggered)"


def test_a_failed_first_step_stops_the_replay(mlflow_env, tmp_path):
    def failing(job: str, as_of: D) -> dict:
        raise JobFailedError("task ingest failed in cell In [2]: no data")

    events: list[replay.Event] = []
    with pytest.raises(LakehouseError, match=r"first step \(workflow as of 2013-06-01\) failed: task ingest failed"):
        replay.replay(
            mlflow_env.model_name,
            [D(2013, 6, 1), D(2013, 6, 8)],
            failing,
            Scheduler({}, tmp_path / "s.json"),
            _triggered,
            NOTEBOOKS.__getitem__,
            events,
            lambda _: None,
        )
    assert len(events) == 1 and not events[0].ok


def test_the_timeline_table_round_trips_and_reads_as_a_table(lakehouse, staging, mlflow_env, tmp_path):
    jobs = Jobs(mlflow_env.model_name, fire_on={D(2013, 6, 8)}, fail_on=set(), promote={D(2013, 6, 8)})
    events: list[replay.Event] = []
    replay.replay(
        mlflow_env.model_name,
        [D(2013, 6, 1), D(2013, 6, 8)],
        jobs,
        Scheduler({}, tmp_path / "s.json"),
        _triggered,
        NOTEBOOKS.__getitem__,
        events,
        lambda _: None,
    )
    table = replay.write(lakehouse, staging, events)
    assert table == "staging.flights.replay_timeline"
    rows = lakehouse.read(table).orderBy("run").toPandas()
    assert list(rows["run"]) == [0, 1, 2] and list(rows["step"]) == [0, 1, 1]
    assert list(rows["job"]) == ["workflow", "score_and_monitor", "retraining"]
    assert rows["alert_values"].iloc[1] == {"temperature_drift": 12.5}
    shown = replay.display(rows)
    assert list(shown["champion"]) == ["v- -> v1", "v1", "v1 -> v2"]
    assert shown["alerts"].iloc[1] == "temperature_drift 12.5 TRIGGERED"
    assert shown["fired"].iloc[1] == "temperature_drift"
