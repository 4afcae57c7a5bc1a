"""MLflow edge: tracking/registry URIs, the environment's experiment, aliases and tags."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import getpass
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from lib.core import names
from lib.core.config import EnvConfig
from lib.core.errors import AccessDeniedError, ConfigError, LakehouseError, ModelNotFoundError
from lib.core.names import CHALLENGER, CHAMPION

LOCK_TIMEOUT_S = 300.0
_writer: tuple[str, str] | None = None  # (catalog, who) of configure(): what this process may write


@dataclass(frozen=True)
class ModelRef:
    """A registered model version and how to load it."""

    name: str
    version: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @staticmethod
    def parse(uri: str) -> ModelRef:
        """Read `models:/<name>/<version>`, the form task values hand on."""
        body = uri[len("models:/") :] if isinstance(uri, str) and uri.startswith("models:/") else ""
        name, _, version = body.rpartition("/")
        if not name or not version.isdigit():
            raise ModelNotFoundError(f"model URI {uri!r} must look like models:/<catalog.schema.model>/<version>")
        return ModelRef(name, version)


def no_telemetry() -> None:
    """Keep MLflow from calling out: nothing here reaches the internet, and its background
    telemetry lookup has crashed the interpreter (getaddrinfo) next to gRPC's threads."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def configure(env: EnvConfig) -> str:
    """Point MLflow at the environment's stores and experiment; returns the experiment id."""
    import mlflow

    global _writer
    env.home.mkdir(parents=True, exist_ok=True)
    _writer = (env.catalog, f"environment {env.name}")
    mlflow.set_tracking_uri(env.tracking_uri)
    mlflow.set_registry_uri(env.registry_uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(env.experiment)
    if experiment is None:
        artifacts = (env.home / "mlartifacts" / env.name).as_uri()
        experiment_id = client.create_experiment(env.experiment, artifact_location=artifacts)
    else:
        experiment_id = experiment.experiment_id
        if experiment.lifecycle_stage == "deleted":  # wiped staging: bring its name back
            client.restore_experiment(experiment_id)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def client():
    import mlflow

    return mlflow.MlflowClient()


def version_of(name: str, alias: str) -> ModelRef | None:
    """The version behind `name@alias`, or None when the alias (or model) does not exist. Any
    other registry error is raised: a stream waiting for a Champion must not wait on a broken store."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client().get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in _ABSENT:
            return None
        raise
    return ModelRef(name, str(mv.version))


# What MLflow's registry answers for a model that does not exist, and for an alias it does not
# have (a model with no Champion yet).
_ABSENT = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def require_alias(name: str, alias: str) -> ModelRef:
    """The version behind `name@alias`, or a ModelNotFoundError saying what to run first."""
    ref = version_of(name, alias)
    if ref is None:
        hint = {
            CHAMPION: "run the deployment job (approve first if approval is required)",
            CHALLENGER: "run the training job (it validates)",
        }.get(alias, "see --history")
        raise ModelNotFoundError(f"{name} has no {alias} yet: {hint}")
    return ref


def require_version(ref: ModelRef):
    """The ModelVersion entity of ref, or a ModelNotFoundError saying which is missing."""
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version(ref.name, ref.version)
    except MlflowException:
        raise ModelNotFoundError(f"model version {ref.uri} is not registered") from None


def artifact_uri(ref: ModelRef) -> str:
    """Where a version's files are (a file: URI under the lakehouse): unique to the version and
    to this lakehouse, and loadable without the registry, e.g. by Spark's Python workers."""
    return client().get_model_version_download_uri(ref.name, ref.version)


def predict(ref: ModelRef, frame):
    """Load a version as a pyfunc model and score a pandas frame with its signature's columns."""
    import mlflow
    import numpy as np

    model = mlflow.pyfunc.load_model(ref.uri)
    return np.asarray(model.predict(frame[model.metadata.get_input_schema().input_names()]))


def check_writable(name: str) -> None:
    """The own-catalog rule, in the registry itself: a process registers versions, sets tags and
    moves aliases only on models of the catalog of the environment it was configured for."""
    if _writer is None:
        raise AccessDeniedError(
            f"may not write model {name}: the registry is not configured for an environment (registry.configure(env) first)"
        )
    names.check_own(_writer[0], name, _writer[1])


def set_tags(ref: ModelRef, tags: Mapping[str, object]) -> None:
    check_writable(ref.name)
    c = client()
    for key, value in tags.items():
        c.set_model_version_tag(ref.name, ref.version, key, str(value))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def actor(run: str | None = None) -> str:
    """Who moves an alias: the job run, or the user at the command line."""
    if run is not None and not isinstance(run, str):
        raise ConfigError(f"parameter run_id must be str, got {type(run).__name__} {run!r}")
    return run or f"{getpass.getuser()} (by hand)"


def move_alias(ref: ModelRef, alias: str, reason: str, by: str | None = None) -> None:
    """Point `alias` at ref and record on the version when, by whom (which job run) and why.

    The version that held the alias before records that it lost it. Call this holding
    alias_lock(ref.name) when the move depends on where aliases point.
    """
    check_writable(ref.name)
    who = actor(by)  # a bad run id fails here, before the alias moves
    before = version_of(ref.name, alias)
    client().set_registered_model_alias(ref.name, alias, ref.version)
    at, by_tag, reason_tag = names.alias_tags(alias)
    set_tags(ref, {at: _now(), by_tag: who, reason_tag: reason})
    if before is not None and before != ref:
        _record_loss(before, alias, f"moved to v{ref.version}: {reason}", by)


def _record_loss(ref: ModelRef, alias: str, reason: str, by: str | None) -> None:
    at, by_tag, reason_tag = names.alias_tags(alias, removed=True)
    set_tags(ref, {at: _now(), by_tag: actor(by), reason_tag: reason})


def remove_alias(ref: ModelRef, alias: str, reason: str, by: str | None = None) -> None:
    """Delete `alias` if it still points at ref, recording on the version when, by whom and why."""
    check_writable(ref.name)
    if version_of(ref.name, alias) == ref:
        client().delete_registered_model_alias(ref.name, alias)
        _record_loss(ref, alias, reason, by)


def _lock_dir() -> Path:
    import tempfile

    import mlflow

    uri = mlflow.get_registry_uri()
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :]).parent / "locks"
    return Path(tempfile.gettempdir()) / "lakehouse-mlops-locks"


@contextlib.contextmanager
def alias_lock(name: str, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Serialize alias moves of one model across processes on this machine (an flock).

    Deployments, rollbacks and approvals read where aliases point and then move them; holding
    this lock makes each read-then-move atomic, so no move is lost and no two runs both see
    the same Champion as "current" while replacing it.
    """
    folder = _lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.lock"
    deadline = time.monotonic() + timeout_s
    with open(path, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LakehouseError(
                        f"another run holds the alias lock of {name} ({path}) for over "
                        f"{timeout_s:.0f}s: wait for it to finish, then re-run"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def aliases(name: str) -> dict[str, str]:
    """Every alias of a registered model and the version it points at."""
    from mlflow.exceptions import MlflowException

    try:
        model = client().get_registered_model(name)
    except MlflowException:
        return {}
    return {alias: str(version) for alias, version in model.aliases.items()}


class VersionRow(TypedDict):
    """A model version as `history` lists it (status, decision and reasons are among its tags)."""

    version: str
    created: str  # ISO 8601, UTC, to the second
    aliases: list[str]
    tags: dict[str, str]
    description: str


def history(name: str) -> list[VersionRow]:
    """Every version of a model, oldest first: created, status, decision, aliases and their reasons."""
    held = aliases(name)
    versions = client().search_model_versions(f"name = '{name}'", max_results=1000)
    rows: list[VersionRow] = []
    for mv in sorted(versions, key=lambda v: int(v.version)):
        tags = dict(mv.tags)
        rows.append(
            {
                "version": str(mv.version),
                "created": dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.UTC).isoformat(timespec="seconds"),
                "aliases": sorted(a for a, v in held.items() if v == str(mv.version)),
                "tags": tags,
                "description": mv.description or "",
            }
        )
    return rows


def purge(env: EnvConfig) -> list[str]:
    """Permanently delete the environment's registered models, experiment, runs and artifacts.

    Returns the names of the deleted models. MLflow only soft-deletes experiments, so the
    experiment is garbage-collected too: a later run starts from an empty experiment.
    """
    import shutil
    import subprocess
    import sys

    configure(env)
    c = client()
    prefix = f"{env.catalog}."
    found = c.search_registered_models(filter_string=f"name LIKE '{prefix}%'", max_results=1000)
    names = [m.name for m in found if m.name.startswith(prefix)]
    for name in names:
        c.delete_registered_model(name)
    experiment = c.get_experiment_by_name(env.experiment)
    c.delete_experiment(experiment.experiment_id)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "gc",
            "--backend-store-uri",
            env.tracking_uri,
            "--experiment-ids",
            experiment.experiment_id,
        ],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(env.home / "mlartifacts" / env.name, ignore_errors=True)
    return names
