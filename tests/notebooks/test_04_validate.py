import re

import pytest
from nbclient.exceptions import CellExecutionError

from lib.core.names import CHALLENGER, CHAMPION
from lib.platform import registry

pytestmark = pytest.mark.slow


def test_validate_passes_and_names_the_challenger(executed, trained, task_values):
    with executed("pipelines/04_validate.ipynb", env="staging", model_uri=trained.uri, run_id="job-42") as tb:
        assert tb.value("report.passed") is True
        assert tb.value("len(report.checks)") == 10
    assert task_values() == {"model_uri": trained.uri, "validation_status": "PASSED"}
    tags = registry.require_version(trained).tags
    assert tags["model_validation_status"] == "PASSED" and tags["alias.Challenger.by"] == "job-42"
    assert registry.version_of(trained.name, CHALLENGER) == trained


def test_a_degraded_model_fails_end_to_end_and_the_champion_stays(executed, champion, make_version, train_set, task_values):
    """Trained on shuffled labels: FAILED, no Challenger, Champion untouched, the hand-on cell never runs."""
    degraded = make_version(train_set.assign(delayed=train_set["delayed"].sample(frac=1.0, random_state=0).to_numpy()))
    with pytest.raises(CellExecutionError) as failed:
        with executed("pipelines/04_validate.ipynb", env="staging", model_uri=degraded.uri):
            pass
    assert failed.value.ename == "ValidationFailedError"
    prefix = f"{degraded.uri} failed validation: "
    assert failed.value.evalue.startswith(prefix), failed.value.evalue
    checks = failed.value.evalue.removeprefix(prefix).split("; ")
    assert re.fullmatch(r"performance.roc_auc 0\.\d+ \(needs >= 0.6\) FAIL", checks[0]), checks
    tags = registry.require_version(degraded).tags
    recorded = {
        f"{k.removeprefix('validation.')} {v.removeprefix('FAIL: ')} FAIL"
        for k, v in tags.items()
        if k.startswith("validation.") and v.startswith("FAIL: ")
    }
    assert set(checks) == recorded  # the message names every check that failed, as recorded on the version
    assert tags["model_validation_status"] == "FAILED"
    assert registry.aliases(degraded.name) == {CHAMPION: champion.version}
    assert task_values() == {}


def test_dry_run_mode_never_blocks(executed, make_version, train_set, task_values, mlflow_env):
    degraded = make_version(train_set.assign(delayed=train_set["delayed"].sample(frac=1.0, random_state=0).to_numpy()))
    with executed("pipelines/04_validate.ipynb", env="staging", model_uri=degraded.uri, run_mode="dry_run"):
        pass
    assert task_values() == {"model_uri": degraded.uri, "validation_status": "FAILED"}
    assert registry.version_of(degraded.name, CHALLENGER) == degraded
