"""The MLflow edge (lib/platform/registry.py) against a real SQL-backed registry in the test's lakehouse."""

import datetime as dt
import getpass
import sqlite3
import threading
import time

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

from lib.core import names
from lib.core.errors import ConfigError, LakehouseError, ModelNotFoundError
from lib.core.names import CHALLENGER, CHAMPION
from lib.platform import registry
from lib.platform.registry import ModelRef


def new_versions(name: str, count: int, tmp_path) -> list[ModelRef]:
    """`count` versions of a newly registered model (empty sources: nothing here loads them)."""
    registry.client().create_registered_model(name)
    refs = []
    for i in range(count):
        source = tmp_path / f"v{i + 1}"
        source.mkdir(parents=True)
        refs.append(ModelRef(name, str(registry.client().create_model_version(name, source=str(source)).version)))
    return refs


def tags_of(ref: ModelRef) -> dict[str, str]:
    return dict(registry.client().get_model_version(ref.name, ref.version).tags)


def alias_record(ref: ModelRef, alias: str, removed: bool = False) -> dict[str, str]:
    """The at/by/reason tags recording an alias move on ref, keyed "at", "by", "reason"."""
    tags = tags_of(ref)
    return {k: tags[key] for k, key in zip(("at", "by", "reason"), names.alias_tags(alias, removed)) if key in tags}


@pytest.mark.parametrize(
    "uri,ref",
    [
        ("models:/staging.flights.delay_model/3", ModelRef("staging.flights.delay_model", "3")),
        ("models:/a/b/12", ModelRef("a/b", "12")),  # the version is what follows the last slash
    ],
)
def test_a_model_uri_parses_and_round_trips(uri, ref):
    assert ModelRef.parse(uri) == ref and ref.uri == uri


@pytest.mark.parametrize(
    "uri",
    [
        "models:/staging.flights.delay_model",
        "models:/staging.flights.delay_model/x",
        "models:/staging.flights.delay_model@Champion",
        "runs:/abc/model",
        "models:/7",
        "",
        None,
        3,
    ],
)
def test_a_malformed_model_uri_is_one_line(uri):
    with pytest.raises(ModelNotFoundError) as error:
        ModelRef.parse(uri)
    assert str(error.value) == f"model URI {uri!r} must look like models:/<catalog.schema.model>/<version>"


def test_configure_points_mlflow_at_the_environment_and_brings_a_deleted_experiment_back(staging):
    mlflow.set_tracking_uri("sqlite:///elsewhere.db")
    experiment_id = registry.configure(staging)
    assert mlflow.get_tracking_uri() == staging.tracking_uri == f"sqlite:///{staging.home}/mlflow.db"
    assert mlflow.get_registry_uri() == staging.registry_uri
    experiment = registry.client().get_experiment(experiment_id)
    assert experiment.name == staging.experiment == "/lakehouse-mlops/staging/delay_model"
    assert experiment.artifact_location == (staging.home / "mlartifacts" / "staging").as_uri()
    assert registry.configure(staging) == experiment_id  # found, not made twice
    registry.client().delete_experiment(experiment_id)  # what a wipe of staging leaves
    assert registry.configure(staging) == experiment_id
    assert registry.client().get_experiment(experiment_id).lifecycle_stage == "active"
    assert mlflow.get_experiment_by_name(staging.experiment).experiment_id == experiment_id


def test_version_of_is_none_for_a_missing_model_or_alias(mlflow_env, tmp_path):
    name = mlflow_env.model_name
    assert registry.version_of(name, CHAMPION) is None  # no such model
    assert registry.aliases(name) == {}
    [v1] = new_versions(name, 1, tmp_path)
    assert registry.version_of(name, CHAMPION) is None  # a model without the alias
    registry.client().set_registered_model_alias(name, CHAMPION, "1")
    assert registry.version_of(name, CHAMPION) == v1
    assert registry.version_of(name, CHALLENGER) is None


def test_a_broken_registry_is_raised_not_taken_for_a_missing_alias(mlflow_env, tmp_path):
    name = mlflow_env.model_name
    new_versions(name, 1, tmp_path)
    with sqlite3.connect(mlflow_env.home / "mlflow.db") as db:
        db.execute("DROP TABLE registered_model_aliases")  # the store answers, but not with "absent"
    with pytest.raises(MlflowException) as error:
        registry.version_of(name, CHAMPION)
    assert error.value.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
    assert "registered_model_aliases" in str(error.value)


@pytest.mark.parametrize(
    "alias,hint",
    [
        (CHAMPION, "run the deployment job (approve first if approval is required)"),
        (CHALLENGER, "run the training job (it validates)"),
        ("Shadow", "see --history"),
    ],
)
def test_require_alias_says_what_to_run_first(mlflow_env, tmp_path, alias, hint):
    name = mlflow_env.model_name
    [v1] = new_versions(name, 1, tmp_path)
    with pytest.raises(ModelNotFoundError) as error:
        registry.require_alias(name, alias)
    assert str(error.value) == f"{name} has no {alias} yet: {hint}"
    registry.client().set_registered_model_alias(name, alias, "1")
    assert registry.require_alias(name, alias) == v1


def test_require_version_names_the_missing_version(mlflow_env, tmp_path):
    [v1] = new_versions(mlflow_env.model_name, 1, tmp_path)
    assert str(registry.require_version(v1).version) == "1"
    for missing in (ModelRef(v1.name, "2"), ModelRef("staging.flights.nothing", "1")):
        with pytest.raises(ModelNotFoundError) as error:
            registry.require_version(missing)
        assert str(error.value) == f"model version {missing.uri} is not registered"


def test_tags_are_stored_as_text(mlflow_env, tmp_path):
    [v1] = new_versions(mlflow_env.model_name, 1, tmp_path)
    registry.set_tags(v1, {"validation.auc": 0.75, "rows": 12, "ok": True, "note": "x"})
    assert tags_of(v1) == {"validation.auc": "0.75", "rows": "12", "ok": "True", "note": "x"}


def test_the_alias_tags_keep_their_format():
    """run_pipeline.py --history and the replay's timeline read these keys back."""
    assert names.alias_tags(CHAMPION) == ("alias.Champion.at", "alias.Champion.by", "alias.Champion.reason")
    assert names.alias_tags(CHAMPION, removed=True) == (
        "alias.Champion.removed_at",
        "alias.Champion.removed_by",
        "alias.Champion.removed_reason",
    )


def test_moving_an_alias_records_when_by_whom_and_why_and_the_loser_records_its_loss(mlflow_env, tmp_path):
    name = mlflow_env.model_name
    v1, v2 = new_versions(name, 2, tmp_path)
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    registry.move_alias(v1, CHAMPION, "first deployment", by="job-1")
    moved = alias_record(v1, CHAMPION)
    assert {k: moved[k] for k in ("by", "reason")} == {"by": "job-1", "reason": "first deployment"}
    at = dt.datetime.fromisoformat(moved["at"])
    assert at.tzinfo is not None and before <= at <= dt.datetime.now(dt.UTC)
    assert alias_record(v1, CHAMPION, removed=True) == {}  # it lost nothing
    assert registry.version_of(name, CHAMPION) == v1

    registry.move_alias(v2, CHAMPION, "better AUC")  # by hand: no job run
    assert registry.version_of(name, CHAMPION) == v2
    assert {k: v for k, v in alias_record(v2, CHAMPION).items() if k != "at"} == {
        "by": f"{getpass.getuser()} (by hand)",
        "reason": "better AUC",
    }
    lost = alias_record(v1, CHAMPION, removed=True)
    assert {k: lost[k] for k in ("by", "reason")} == {"by": f"{getpass.getuser()} (by hand)", "reason": "moved to v2: better AUC"}
    assert dt.datetime.fromisoformat(lost["at"]) >= at
    assert alias_record(v1, CHAMPION)["reason"] == "first deployment"  # its own move stays on record
    assert registry.aliases(name) == {CHAMPION: "2"}

    registry.move_alias(v2, CHAMPION, "again", by="job-3")  # onto the holder itself: nobody lost it
    assert alias_record(v2, CHAMPION, removed=True) == {}
    assert alias_record(v2, CHAMPION)["reason"] == "again"


def test_a_run_id_that_is_not_text_is_refused(mlflow_env, tmp_path):
    [v1] = new_versions(mlflow_env.model_name, 1, tmp_path)
    with pytest.raises(ConfigError) as error:
        registry.move_alias(v1, CHAMPION, "why", by=42)
    assert str(error.value) == "parameter run_id must be str, got int 42"
    assert registry.actor("job-7") == "job-7" and registry.actor() == f"{getpass.getuser()} (by hand)"


def test_remove_alias_only_while_it_still_points_there(mlflow_env, tmp_path):
    name = mlflow_env.model_name
    v1, v2 = new_versions(name, 2, tmp_path)
    registry.move_alias(v2, CHALLENGER, "validated", by="job-1")
    registry.remove_alias(v1, CHALLENGER, "stale", by="job-2")  # someone else holds it: nothing happens
    assert registry.version_of(name, CHALLENGER) == v2
    assert alias_record(v1, CHALLENGER, removed=True) == {} and alias_record(v2, CHALLENGER, removed=True) == {}

    registry.remove_alias(v2, CHALLENGER, "failed approval", by="job-2")
    assert registry.version_of(name, CHALLENGER) is None and registry.aliases(name) == {}
    lost = alias_record(v2, CHALLENGER, removed=True)
    assert {k: lost[k] for k in ("by", "reason")} == {"by": "job-2", "reason": "failed approval"}
    registry.remove_alias(v2, CHALLENGER, "twice", by="job-3")  # gone already: the record stays as it was
    assert alias_record(v2, CHALLENGER, removed=True)["reason"] == "failed approval"


def test_history_lists_versions_oldest_first_with_their_aliases(mlflow_env, tmp_path):
    name = mlflow_env.model_name
    assert registry.history(name) == []
    v1, v2, v3 = new_versions(name, 3, tmp_path)
    registry.client().update_model_version(name, "2", description="the second")
    registry.move_alias(v2, CHAMPION, "won", by="job-1")
    registry.move_alias(v2, CHALLENGER, "validated", by="job-1")
    registry.move_alias(v3, names.PREVIOUS, "kept", by="job-1")
    rows = registry.history(name)
    assert [r["version"] for r in rows] == ["1", "2", "3"]
    assert [r["aliases"] for r in rows] == [[], [CHALLENGER, CHAMPION], [names.PREVIOUS]]
    assert [r["description"] for r in rows] == ["", "the second", ""]
    assert rows[1]["tags"] == tags_of(v2) and rows[0]["tags"] == {}
    created = [dt.datetime.fromisoformat(r["created"]) for r in rows]
    assert created == sorted(created) and all(c.tzinfo is not None for c in created)
    assert registry.aliases(name) == {CHAMPION: "2", CHALLENGER: "2", names.PREVIOUS: "3"}


def test_the_alias_lock_serializes_moves_of_one_model(mlflow_env):
    name = mlflow_env.model_name
    with registry.alias_lock(name):
        assert (mlflow_env.home / "locks" / f"{name}.lock").exists()  # beside the registry's database
        with registry.alias_lock("staging.flights.other_model", timeout_s=1):
            pass  # another model's lock is free
        started = time.monotonic()
        with pytest.raises(LakehouseError) as error:
            with registry.alias_lock(name, timeout_s=1):
                pytest.fail("the lock was taken twice")
        assert time.monotonic() - started >= 1
    assert str(error.value) == (
        f"another run holds the alias lock of {name} ({mlflow_env.home / 'locks'}/{name}.lock) "
        "for over 1s: wait for it to finish, then re-run"
    )

    taken, released = threading.Event(), threading.Event()

    def hold():
        with registry.alias_lock(name):
            taken.set()
            time.sleep(0.5)
            released.set()

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(10)
    with registry.alias_lock(name, timeout_s=10):  # waits for the holder instead of failing
        assert released.is_set()
    holder.join()


def test_predict_scores_with_the_signature_columns_in_their_order(mlflow_env):
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    y = (train["a"] - train["b"] > 0).astype(int)
    model = LogisticRegression().fit(train, y)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(train, y),
            pip_requirements=["scikit-learn"],
            registered_model_name=mlflow_env.model_name,
        )
    ref = ModelRef(mlflow_env.model_name, str(info.registered_model_version))
    frame = pd.DataFrame({"extra": ["x"] * 3, "b": [0.0, 2.0, -2.0], "a": [0.0, -1.0, 1.0]})  # other order, a column more
    assert registry.predict(ref, frame).tolist() == model.predict(frame[["a", "b"]]).tolist() == [0, 0, 1]
    assert registry.artifact_uri(ref).startswith((mlflow_env.home / "mlartifacts" / "staging").as_uri())


@pytest.mark.slow  # `mlflow gc` in a subprocess: ~10 s
def test_purge_deletes_the_environments_models_experiment_and_artifacts_only(mlflow_env, tmp_path):
    experiment_id = registry.configure(mlflow_env)
    with mlflow.start_run():
        mlflow.log_text("hello", "note.txt")
    new_versions(mlflow_env.model_name, 1, tmp_path / "ours")
    registry.client().create_registered_model("staging.flights.second")
    registry.client().create_registered_model("prod.flights.delay_model")  # another catalog's: kept
    assert (mlflow_env.home / "mlartifacts" / "staging").exists()
    assert sorted(registry.purge(mlflow_env)) == [mlflow_env.model_name, "staging.flights.second"]
    assert [m.name for m in registry.client().search_registered_models()] == ["prod.flights.delay_model"]
    assert not (mlflow_env.home / "mlartifacts" / "staging").exists()
    with pytest.raises(MlflowException):
        registry.client().get_experiment(experiment_id)  # collected, not only deleted
    again = registry.configure(mlflow_env)  # a later run starts from a new, empty experiment
    assert registry.client().search_runs([again]) == [] and registry.client().get_experiment(again).lifecycle_stage == "active"
