"""Shared fixtures: one Spark session for the whole run; every test gets its own lakehouse."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # before MLflow is imported: no calls out

from lib.core import names
from lib.core.config import load_env, load_hyperparameters, load_model_config
from lib.core.config.sources import load_sources
from lib.core.names import CHALLENGER
from lib.features import ingest
from lib.features import store as feature_store
from lib.features import tables as features
from lib.lifecycle import deployment, training, validation
from lib.platform import registry
from lib.platform.catalog import Lakehouse
from lib.platform.services import kafka_client as kafka
from lib.platform.services import kafka_server, postgres, processes
from lib.platform.spark import builder as lspark
from lib.platform.spark import server as lspark_server

# The services a test needs, told by its fixtures: `make unit` leaves out the tests marked with
# any of them, so it starts no JVM, PostgreSQL or Kafka and runs on a machine without Java.
SERVICE_MARKERS = {"spark_server": "spark", "postgres_server": "postgres", "kafka_broker": "kafka"}


def pytest_collection_modifyitems(items):
    """Mark each test by the services its fixtures start (`spark`, `postgres`, `kafka`).

    A test that needs the `seed` waits for a whole ingest-and-train run first: it is slow
    (left out of `make unit`), like the tests that start kernels or run jobs.
    """
    for item in items:
        needs = getattr(item, "fixturenames", ())
        for fixture, marker in SERVICE_MARKERS.items():
            if fixture in needs:
                item.add_marker(marker)
        if "seed" in needs:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def services_environment():
    """No service of the developer's shell leaks into the run: a test reaches Spark, PostgreSQL
    or Kafka only through the session fixture it asks for; serving servers take free ports."""
    os.environ["LAKEHOUSE_SERVING_PORT"] = "0"
    for name in (
        "LAKEHOUSE_SERVING_TOKEN",
        lspark.REMOTE_ENV_VAR,
        lspark_server.MODE_ENV_VAR,
        postgres.URL_ENV_VAR,
        kafka_server.SERVERS_ENV_VAR,
    ):
        os.environ.pop(name, None)


@pytest.fixture(scope="session")
def spark_server(tmp_path_factory):
    """One Spark Connect server for the whole run, as a cluster: this process, every notebook
    kernel and every run_pipeline.py subprocess attach to it through $SPARK_REMOTE, from the
    first test that asks for it (directly or through `spark`, `lakehouse`, `seed`...) on."""
    root = tmp_path_factory.mktemp("spark-server")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAKEHOUSE_HOME", str(root))
        mp.setenv(lspark_server.PORT_ENV_VAR, "0")
        running = lspark_server.ensure(load_env("staging"), say=lambda line: None)
    os.environ[lspark.REMOTE_ENV_VAR] = running.url
    yield running
    lspark_server.stop(root, say=lambda line: None)
    os.environ.pop(lspark.REMOTE_ENV_VAR, None)


def _session_service(tmp_path_factory, name: str, port_var: str, address_var: str, start, remove):
    """A service of the project's own for the whole run, on a free port: this process, every
    kernel and every run_pipeline.py subprocess use it through $<address_var>."""
    os.environ.pop(address_var, None)
    root = tmp_path_factory.mktemp(name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(port_var, "0")
        address = start(root, say=lambda line: None)
    os.environ[address_var] = address
    yield address
    remove(root)
    os.environ.pop(address_var, None)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """One PostgreSQL server (the jdbc destination, switched on in staging), started by the
    first test that asks for it: a test that publishes in staging, or runs a job that does, must."""
    yield from _session_service(
        tmp_path_factory, "postgres", postgres.PORT_ENV_VAR, postgres.URL_ENV_VAR, postgres.base_url, postgres.remove
    )


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """One Kafka broker (the stream's kafka destination, switched on in staging), started by
    the first test that asks for it: a test that streams in staging must (`make unit` needs none)."""
    yield from _session_service(
        tmp_path_factory,
        "kafka",
        kafka_server.PORT_ENV_VAR,
        kafka_server.SERVERS_ENV_VAR,
        kafka_server.servers,
        kafka_server.remove,
    )


@pytest.fixture
def kafka_records(kafka_broker):
    """records(topic, query): (key, value) of each record of the topic that a stream's query
    wrote, read back with a Kafka client (librdkafka)."""
    return lambda topic, query: kafka.read(kafka_broker, topic, query)


@pytest.fixture(scope="session")
def spark(spark_server):
    session = lspark.attach(spark_server.url)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory):
    """An MLflow database with every schema migration applied, made once (~3 s) and copied."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def home(tmp_path, monkeypatch, mlflow_template, request):
    """A fresh lakehouse root for this test (inherited by notebook kernels and subprocesses).

    It starts with an empty, migrated MLflow database. A serving server that the test started
    there (e.g. by the deployment job) is stopped after it. A PostgreSQL server started there
    is removed, and fails the test unless it is marked `postgres`: a test that publishes to
    the jdbc destination asks for `postgres_server` (else `make unit` would start one).
    """
    root = tmp_path / "lakehouse"
    root.mkdir()
    shutil.copy(mlflow_template, root / "mlflow.db")
    monkeypatch.setenv("LAKEHOUSE_HOME", str(root))
    yield root
    for state in root.glob("serving/*/server.json"):
        processes.terminate(json.loads(state.read_text())["pid"], timeout=120)
    lspark_server.stop(root, say=lambda line: None)  # one a test's run_pipeline.py started there
    kafka_server.stop(root, say=lambda line: None)  # one a test that forgot `kafka_broker` started
    if postgres.has_data(root):
        postgres.remove(root)
        if request.node.get_closest_marker("postgres") is None:
            pytest.fail("this test started a PostgreSQL server of its own: ask for the `postgres_server` fixture")


@pytest.fixture
def staging(home):
    return load_env("staging")


@pytest.fixture
def model_cfg(model_cfg_session):
    return copy.deepcopy(model_cfg_session)


@pytest.fixture
def hyper(hyper_session):
    """The production hyperparameters (conf/hyperparameters.yml)."""
    return copy.deepcopy(hyper_session)


@pytest.fixture
def lakehouse(spark, staging):
    return Lakehouse(spark, staging)


@pytest.fixture
def mlflow_env(staging):
    """MLflow tracking and registry in this test's lakehouse."""
    registry.configure(staging)
    return staging


@pytest.fixture(scope="session")
def seed(spark, tmp_path_factory, model_cfg_session, hyper_session, mlflow_template):
    """Staging ingested, featurized and trained once per session; tests get copies of it.

    Ingesting and training take ~30 s; copying the Delta folders and registering the seed's
    model artifacts as a new version takes well under a second. The seed's version is validated
    once too: `challenger` records that report on each test's own version.
    """
    root = tmp_path_factory.mktemp("seed") / "lakehouse"
    root.mkdir()
    shutil.copy(mlflow_template, root / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAKEHOUSE_HOME", str(root))
        env = load_env("staging")
        lakehouse = Lakehouse(spark, env)
        ingest.ingest(lakehouse, env.data.start, env.data.end)
        raw = features.read_sources(lakehouse, env, model_cfg_session, load_sources())
        features.write_tables(lakehouse, env, model_cfg_session, features.build(raw, model_cfg_session))
        windows = env.data.split(env.data.as_of)
        train, holdout = features.load_labelled(lakehouse, env, model_cfg_session, windows.train, windows.holdout)
        registry.configure(env)
        ref = register(env, model_cfg_session, hyper_session, train, holdout)
        version = registry.require_version(ref)
        source = registry.client().get_model_version_download_uri(ref.name, ref.version)
        report = validate(ref, lakehouse, holdout, model_cfg_session)  # the Challenger's verdict, recorded per test
    return {
        "warehouse": env.warehouse / env.catalog,
        "train": train,
        "holdout": holdout,
        "source": source,
        "tags": dict(version.tags),
        "description": version.description,
        "validation": report,
    }


@pytest.fixture(scope="session")
def model_cfg_session():
    return load_model_config()


@pytest.fixture(scope="session")
def hyper_session(model_cfg_session):
    return load_hyperparameters(None, model_cfg_session)[1]


@pytest.fixture
def ingested(lakehouse, staging, seed):
    """The staging raw tables (a copy of the seed's)."""
    shutil.copytree(seed["warehouse"] / "raw", staging.warehouse / staging.catalog / "raw")
    return lakehouse


@pytest.fixture
def featurized(lakehouse, staging, seed):
    """The staging raw, feature and label tables (a copy of the seed's)."""
    shutil.copytree(seed["warehouse"], staging.warehouse / staging.catalog)
    return lakehouse


@pytest.fixture
def holdout(seed):
    return seed["holdout"].copy()


@pytest.fixture
def train_set(seed):
    return seed["train"].copy()


def register(env, model_cfg, hyper, train, holdout, **tags):
    """Fit on train and register like the train task does (every tag compliance asks for)."""
    windows = env.data.split(env.data.as_of)
    tags = {
        "as_of": str(env.data.as_of),
        "train_window": "/".join(map(str, windows.train)),
        "holdout_window": "/".join(map(str, windows.holdout)),
        "hyperparameters_file": "test",
        **tags,
    }
    return training.log_and_register(
        training.fit(train, model_cfg, hyper),
        train,
        holdout,
        model_cfg,
        hyper,
        feature_store.lookups(model_cfg.feature_lookups, env.catalog, env.schema),
        env.model_name,
        tags,
    )


@pytest.fixture
def trained(featurized, mlflow_env, seed):
    """Version 1 of the staging model, registered and PENDING validation (the seed's model)."""
    registry.client().create_registered_model(mlflow_env.model_name)
    mv = registry.client().create_model_version(
        mlflow_env.model_name, source=seed["source"], tags=seed["tags"], description=seed["description"]
    )
    return registry.ModelRef(mlflow_env.model_name, str(mv.version))


def validate(ref, lakehouse, holdout, model_cfg, mode="enabled"):
    champion = registry.version_of(ref.name, names.CHAMPION)
    return validation.validate(ref, lakehouse, holdout, champion, model_cfg, training.input_columns(model_cfg), mode)


@pytest.fixture
def make_version(featurized, mlflow_env, model_cfg, hyper, holdout):
    """`make_version(train)` fits on a training frame and registers a new staging version."""
    return lambda train, **tags: register(mlflow_env, model_cfg, hyper, train, holdout, **tags)


@pytest.fixture
def run_validation(featurized, holdout):
    """`run_validation(ref, model_cfg, mode)` runs the validation checks against the Champion."""
    return lambda ref, model_cfg, mode="enabled": validate(ref, featurized, holdout, model_cfg, mode)


@pytest.fixture
def challenger(trained, seed):
    """Version 1, validated: the seed's validation report (every check passed), recorded here."""
    validation.record(dataclasses.replace(seed["validation"], ref=trained))
    assert registry.version_of(trained.name, CHALLENGER) == trained
    return trained


NO_APPROVAL = deployment.Approval(required=False, approved=False, detail="approval not required")


@pytest.fixture
def champion(challenger, holdout, model_cfg):
    decision = deployment.compare(challenger, None, holdout, model_cfg)
    assert deployment.apply(decision, challenger, None, NO_APPROVAL, run="fixture") == challenger
    return challenger


@pytest.fixture
def webhook():
    """A real HTTP server on a free localhost port taking JSON POSTs: (url, the bodies received)."""
    import http.server
    import threading

    received = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()
