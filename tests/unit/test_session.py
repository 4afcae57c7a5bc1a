"""What every pipeline notebook does first (lib/platform/session.py): check env and as_of, then
attach to Spark and point MLflow at the environment."""

import datetime as dt

import mlflow
import pytest

from lib.core.config import RunWindows, load_model_config
from lib.core.errors import AccessDeniedError, ConfigError, ModelNotFoundError
from lib.platform import registry, session
from lib.platform.registry import ModelRef

D = dt.date


@pytest.mark.parametrize(
    "env,as_of,message",
    [
        (3, None, "parameter env must be str, got int 3"),
        (None, None, "parameter env must be str, got NoneType None"),
        ("qa", None, "unknown environment 'qa': choose one of dev, staging, prod (conf/environments.yml)"),
        ("staging", "2013-13-01", "as-of '2013-13-01' is not a date: use YYYY-MM-DD"),
        ("staging", 20130301, "as-of must be a YYYY-MM-DD date, got int 20130301"),
        (
            "staging",
            "2013-02-18",
            "as-of 2013-02-18 is outside the data of environment staging: choose a date from "
            "2013-02-19 to 2013-03-05 (data 2013-01-01..2013-03-07, 42+7 days before, 3 after)",
        ),
        (
            "staging",
            D(2013, 3, 6),
            "as-of 2013-03-06 is outside the data of environment staging: choose a date from "
            "2013-02-19 to 2013-03-05 (data 2013-01-01..2013-03-07, 42+7 days before, 3 after)",
        ),
    ],
)
def test_bad_parameters_fail_in_one_line_before_anything_starts(home, env, as_of, message):
    """No Spark server (this test asks for none: one would be started in home), no MLflow set-up."""
    mlflow.set_tracking_uri(sentinel := f"sqlite:///{home}/not-this.db")
    with pytest.raises(ConfigError) as error:
        session.start(env, as_of, app="test")
    assert str(error.value) == message
    assert mlflow.get_tracking_uri() == sentinel
    assert sorted(p.name for p in home.iterdir()) == ["mlflow.db"]  # nothing started or written


def test_start_attaches_to_the_environments_spark_and_mlflow(spark_server, spark, home):
    s = session.start("staging", "2013-02-19", app="test")
    assert (s.env.name, s.env.home, s.as_of) == ("staging", home, D(2013, 2, 19))
    assert s.windows == RunWindows(
        train=(D(2013, 1, 1), D(2013, 2, 12)), holdout=(D(2013, 2, 12), D(2013, 2, 19)), score=(D(2013, 2, 19), D(2013, 2, 22))
    )
    assert s.model_cfg == load_model_config()
    assert s.lakehouse.env is s.env and s.spark is s.lakehouse.spark
    assert s.spark is spark  # the session's server, through $SPARK_REMOTE: no server of its own
    assert s.spark.range(5).count() == 5
    assert not (home / "spark").exists()
    assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() == f"sqlite:///{home}/mlflow.db"
    experiment = mlflow.get_experiment_by_name("/lakehouse-mlops/staging/delay_model")
    assert experiment is not None and experiment.lifecycle_stage == "active"

    default = session.start("staging", None, app="test")  # no as_of: the environment's own
    assert default.as_of == D(2013, 3, 1) and default.windows.score == (D(2013, 3, 1), D(2013, 3, 4))
    assert session.start("staging", dt.datetime(2013, 2, 20, 13, 5), app="test").as_of == D(2013, 2, 20)


def test_without_mlflow_the_tracking_uri_is_left_alone(spark_server, home):
    mlflow.set_tracking_uri(sentinel := f"sqlite:///{home}/not-this.db")
    s = session.start("dev", "2013-10-01", app="test", use_mlflow=False)
    assert (s.env.name, s.as_of) == ("dev", D(2013, 10, 1))
    assert mlflow.get_tracking_uri() == sentinel and not (home / "not-this.db").exists()


def test_a_session_takes_only_its_own_registered_models(spark_server, home, tmp_path):
    s = session.start("staging", None, app="test")
    name = s.env.model_name
    registry.client().create_registered_model(name)
    registry.client().create_model_version(name, source=str(tmp_path))
    assert s.own_model(f"models:/{name}/1") == ModelRef(name, "1")
    with pytest.raises(AccessDeniedError) as error:
        s.own_model("models:/prod.flights.delay_model/1")
    assert str(error.value) == (
        "environment staging may only validate or deploy staging.flights.delay_model, not prod.flights.delay_model"
    )
    with pytest.raises(ModelNotFoundError) as error:
        s.own_model(f"models:/{name}/2")
    assert str(error.value) == f"model version models:/{name}/2 is not registered"
    with pytest.raises(ModelNotFoundError, match="^model URI 'staging.flights.delay_model' must look like"):
        s.own_model(name)
