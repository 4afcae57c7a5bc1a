import dataclasses
import datetime as dt

import pandas as pd
import pytest

from lib.core.errors import ConfigError
from lib.monitoring import alerts, monitors, views
from lib.monitoring.alerts import ERROR, OK, TRIGGERED, Rule
from lib.platform.workflows import spec

DAYS = [dt.date(2013, 10, d) for d in range(1, 6)]


def rule(**overrides) -> Rule:
    spec = {
        "name": "temp_drift",
        "query": "SELECT day AS window, v AS value FROM {metrics}",
        "condition": {"op": ">", "threshold": 0.2},
        "trigger": {"m": 2, "n": 3},
        "actions": ["notify", {"run_job": "retraining"}],
    }
    return Rule.model_validate({**spec, **overrides})


@pytest.mark.parametrize(
    "values,state,met",
    [
        ([0.1, 0.1, 0.9, 0.3, 0.05], TRIGGERED, 2),  # the newest three: 0.9, 0.3, 0.05
        ([0.9, 0.9, 0.1, 0.3, 0.05], OK, 1),  # older windows do not count
        ([0.1, 0.1, 0.3, 0.3, 0.3], TRIGGERED, 3),
    ],
)
def test_m_of_the_last_n_windows(values, state, met):
    rows = pd.DataFrame({"window": DAYS, "value": values}).sample(frac=1.0, random_state=1)  # any order
    outcome = alerts.judge(rule(), rows, previous_state=None)
    assert (outcome.state, outcome.met, outcome.windows, outcome.value) == (state, met, 3, values[-1])
    assert outcome.reason.startswith(f"{met} of the last 3 windows meet value > 0.2 (needs 2 of 3)")


def test_no_rows_is_ok_and_wrong_columns_are_an_error():
    assert alerts.judge(rule(), pd.DataFrame({"window": [], "value": []}), None).reason == "no windows to judge yet"
    wrong = alerts.judge(rule(), pd.DataFrame({"day": DAYS, "v": [1.0] * 5}), None)
    assert (wrong.state, wrong.reason) == (ERROR, "the query must return columns window and value, got day, v")


@pytest.mark.slow  # four evaluations, each a few Delta operations: ~20 s, kept out of `make unit`
def test_a_rule_acts_once_per_trigger_and_rearms_when_ok(lakehouse, staging, webhook):
    url, received = webhook
    env = dataclasses.replace(staging, webhook_url=url)
    broken = rule(name="broken", query="SELECT window, value FROM {no_such_table}", actions=["notify"])
    rules = [rule(), broken]

    def step(values: list[float]):
        frame = pd.DataFrame({"day": DAYS, "v": values})
        lakehouse.write(lakehouse.spark.createDataFrame(frame), env.table("metrics"))
        lines = []
        outcomes = alerts.evaluate(lakehouse, env, rules, DAYS[-1], say=lines.append)
        return {o.rule.name: o for o in outcomes}, [line for line in lines if line.startswith("NOTIFY")]

    first, notified = step([0.1, 0.1, 0.9, 0.3, 0.05])
    assert (first["temp_drift"].state, first["temp_drift"].jobs) == (TRIGGERED, ["retraining"])
    # The failing rule is ERROR with its reason; it did not stop the other one.
    assert first["broken"].state == ERROR
    assert first["broken"].reason == "query failed: table staging.flights.no_such_table does not exist"
    assert notified == [
        "NOTIFY [staging] alert temp_drift [warning] is TRIGGERED: " + first["temp_drift"].reason,
        "NOTIFY [staging] alert broken [warning] is ERROR: " + first["broken"].reason,
    ]
    # Still triggered (and still broken): no second notification, no second retraining.
    again, notified = step([0.1, 0.1, 0.9, 0.3, 0.05])
    assert (again["temp_drift"].state, again["temp_drift"].acts, again["temp_drift"].jobs) == (TRIGGERED, False, [])
    assert notified == []
    # OK re-arms it; the next trigger acts again.
    calm, notified = step([0.1, 0.1, 0.1, 0.1, 0.1])
    assert calm["temp_drift"].state == OK and notified == []
    back, notified = step([0.5, 0.5, 0.5, 0.5, 0.5])
    assert back["temp_drift"].jobs == ["retraining"] and len(notified) == 1

    assert [r["state"] for r in received] == [TRIGGERED, ERROR, TRIGGERED]
    assert received[0]["alert"] == "temp_drift" and received[0]["severity"] == "warning"
    assert received[0]["value"] == 0.05 and received[0]["as_of"] == "2013-10-05"
    history = alerts.history(lakehouse, env)
    temp = history[history["name"] == "temp_drift"]
    assert list(temp["state"]) == [TRIGGERED, TRIGGERED, OK, TRIGGERED]
    assert list(temp["previous_state"].fillna("-")) == ["-", TRIGGERED, TRIGGERED, OK]
    assert list(temp["acted"]) == [True, False, False, True]
    assert list(history.loc[history["name"] == "broken", "state"]) == [ERROR] * 4


def test_bad_rules_are_one_line_naming_their_path(tmp_path):
    def load(text: str):
        (tmp_path / "alerts.yml").write_text(text)
        return alerts.load_rules(tmp_path, known_jobs={"retraining"})

    base = "alerts:\n  - name: a\n    query: SELECT 1\n    condition: {op: '>', threshold: 1}\n"
    with pytest.raises(ConfigError, match=r"alerts.yml: alerts\.0\.trigger: m \(3\) cannot exceed n \(2\)$"):
        load(base + "    trigger: {m: 3, n: 2}\n")
    with pytest.raises(
        ConfigError, match=r"alerts\.0\.condition\.op: must be one of >, >=, <, <=, ==, !=, got '=>' \(did you mean >\?\)$"
    ):
        load(base.replace("op: '>'", "op: '=>'"))
    with pytest.raises(ConfigError, match=r"alerts\.0\.actions \(a\): run_job names unknown job 'retrain'$"):
        load(base + "    actions: [{run_job: retrain}]\n")
    with pytest.raises(ConfigError, match=r"alerts\.0\.severity: must be one of info, warning, critical, got 'loud'$"):
        load(base + "    severity: loud\n")
    with pytest.raises(ConfigError, match=r"alerts\.0\.condition\.treshold: unknown key \(did you mean threshold\?\)$"):
        load(base.replace("threshold: 1", "treshold: 1"))
    with pytest.raises(ConfigError, match=r"alerts.yml: alerts: alert names must be unique$"):
        load(base + base.removeprefix("alerts:\n"))
    with pytest.raises(ConfigError, match=r"alerts\.0\.severity: must be one of info, warning, critical, got 'loud'$"):
        load(base + "    severity: loud\n")
    shipped = alerts.load_rules(known_jobs=set(spec.load_jobs()))
    assert [r.name for r in shipped] == ["temperature_drift", "prediction_drift", "model_quality"]


def test_a_rule_on_an_unknown_metric_fails_at_load_against_the_tables_schemas(spark, staging, tmp_path):

    schemas = views.metric_schemas(staging, monitors.load_monitors())
    alerts.check(spark, alerts.load_rules(known_jobs=set(spec.load_jobs())), schemas)  # the shipped rules compile

    def rules(query: str):
        (tmp_path / "alerts.yml").write_text(
            "alerts:\n  - name: ok\n    query: SELECT window.start AS window, count AS value FROM {predictions_profile_metrics}\n"
            "    condition: {op: '>', threshold: 1}\n"
            f"  - name: bad\n    query: \"{query}\"\n    condition: {{op: '>', threshold: 1}}\n"
        )
        return alerts.load_rules(tmp_path)

    with pytest.raises(ConfigError, match=r"alerts\.1 \(bad\): the query does not compile: .*population_drift"):
        alerts.check(
            spark, rules("SELECT window.start AS window, population_drift AS value FROM {predictions_drift_metrics}"), schemas
        )
    with pytest.raises(ConfigError, match=r"alerts\.1 \(bad\): the query must return columns window and value, it returns w, v"):
        alerts.check(spark, rules("SELECT window.start AS w, calibration_gap AS v FROM {predictions_profile_metrics}"), schemas)
    # A custom metric is a column like the built-in ones; a table the monitors do not make is checked when it runs.
    alerts.check(
        spark, rules("SELECT window.start AS window, calibration_gap_delta AS value FROM {predictions_drift_metrics}"), schemas
    )
    alerts.check(spark, rules("SELECT sched_dep_ts AS window, no_such AS value FROM {predictions}"), schemas)
