"""Shared fixtures: one Spark session for the whole run; every test gets its own lakehouse."""

from __future__ import annotations

import pytest

from lib import deployment, features, ingest, registry, training, validation
from lib.catalog import Lakehouse
from lib.config import load_env, load_model_config
from lib.registry import CHALLENGER


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from lib.spark import get_spark

    session = get_spark("lakehouse-mlops-tests", warehouse=tmp_path_factory.mktemp("spark-warehouse"))
    yield session
    session.stop()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh lakehouse root for this test (inherited by notebook kernels and subprocesses)."""
    root = tmp_path / "lakehouse"
    monkeypatch.setenv("LAKEHOUSE_HOME", str(root))
    return root


@pytest.fixture
def staging(home):
    return load_env("staging")


@pytest.fixture
def model_cfg():
    return load_model_config()


@pytest.fixture
def lakehouse(spark, staging):
    return Lakehouse(spark, staging)


@pytest.fixture
def mlflow_env(staging):
    """MLflow tracking and registry in this test's lakehouse."""
    registry.configure(staging)
    return staging


@pytest.fixture
def ingested(lakehouse, staging):
    ingest.ingest(lakehouse, staging.data.start, staging.data.end)
    return lakehouse


@pytest.fixture
def featurized(ingested, staging):
    flights = ingested.read(staging.raw_table("flights"))
    weather = ingested.read(staging.raw_table("weather"))
    ingested.write(features.build_features(flights, weather), staging.table("flight_features"))
    ingested.write(features.build_labels(flights), staging.table("labels"))
    return ingested


@pytest.fixture
def holdout(featurized, staging):
    return features.load_labelled(featurized, staging, staging.data.split(staging.data.as_of).holdout)


@pytest.fixture
def trained(featurized, mlflow_env, model_cfg, holdout):
    """Version 1 of the staging model, registered and PENDING validation."""
    windows = mlflow_env.data.split(mlflow_env.data.as_of)
    train = features.load_labelled(featurized, mlflow_env, windows.train)
    model = training.fit(train, model_cfg)
    return training.log_and_register(model, train, holdout, model_cfg, mlflow_env.model_name, {"as_of": "test"})


@pytest.fixture
def challenger(trained, holdout, model_cfg):
    validation.record(validation.evaluate(trained, holdout, model_cfg))
    assert registry.version_of(trained.name, CHALLENGER) == trained
    return trained


@pytest.fixture
def champion(challenger, holdout, model_cfg):
    decision = deployment.compare(challenger, None, holdout, model_cfg)
    assert deployment.apply(decision, challenger, run="fixture") == challenger
    return challenger
