"""MLflow edge: tracking/registry URIs, the environment's experiment, aliases and tags."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from lib.config import EnvConfig
from lib.errors import ModelNotFoundError

CHAMPION = "Champion"
CHALLENGER = "Challenger"
VALIDATION_STATUS = "model_validation_status"


@dataclass(frozen=True)
class ModelRef:
    """A registered model version and how to load it."""

    name: str
    version: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @staticmethod
    def parse(uri: str) -> "ModelRef":
        """Read `models:/<name>/<version>`, the form task values hand on."""
        body = uri[len("models:/"):] if isinstance(uri, str) and uri.startswith("models:/") else ""
        name, _, version = body.rpartition("/")
        if not name or not version.isdigit():
            raise ModelNotFoundError(f"model URI {uri!r} must look like models:/<catalog.schema.model>/<version>")
        return ModelRef(name, version)


def configure(env: EnvConfig) -> str:
    """Point MLflow at the environment's stores and experiment; returns the experiment id."""
    import mlflow

    env.home.mkdir(parents=True, exist_ok=True)
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
    """The version behind `name@alias`, or None when the alias (or model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return ModelRef(name, str(mv.version))


def require_alias(name: str, alias: str) -> ModelRef:
    """The version behind `name@alias`, or a ModelNotFoundError saying what to run first."""
    ref = version_of(name, alias)
    if ref is None:
        raise ModelNotFoundError(f"{name} has no {alias} yet: run the training job first")
    return ref


def require_version(ref: ModelRef):
    """The ModelVersion entity of ref, or a ModelNotFoundError saying which is missing."""
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version(ref.name, ref.version)
    except MlflowException:
        raise ModelNotFoundError(f"model version {ref.uri} is not registered") from None


def predict(ref: ModelRef, frame):
    """Load a version as a pyfunc model and score a pandas frame with its signature's columns."""
    import mlflow
    import numpy as np

    model = mlflow.pyfunc.load_model(ref.uri)
    return np.asarray(model.predict(frame[model.metadata.get_input_schema().input_names()]))


def set_tags(ref: ModelRef, tags: dict[str, object]) -> None:
    c = client()
    for key, value in tags.items():
        c.set_model_version_tag(ref.name, ref.version, key, str(value))


def move_alias(ref: ModelRef, alias: str, reason: str) -> None:
    """Point `alias` at ref and record on the version when and why."""
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    client().set_registered_model_alias(ref.name, alias, ref.version)
    set_tags(ref, {f"alias.{alias}.at": now, f"alias.{alias}.reason": reason})


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
    subprocess.run([sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", env.tracking_uri,
                    "--experiment-ids", experiment.experiment_id], check=True, capture_output=True)
    shutil.rmtree(env.home / "mlartifacts" / env.name, ignore_errors=True)
    return names
