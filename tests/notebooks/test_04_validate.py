import pytest

from lib import registry
from lib.registry import CHALLENGER

pytestmark = pytest.mark.slow


def test_validate_passes_and_names_the_challenger(executed, trained, task_values):
    with executed("pipelines/04_validate.ipynb", env="staging", model_uri=trained.uri) as tb:
        assert tb.value("report.passed") is True
    assert task_values() == {"model_uri": trained.uri, "validation_status": "PASSED"}
    assert registry.require_version(trained).tags["model_validation_status"] == "PASSED"
    assert registry.version_of(trained.name, CHALLENGER) == trained
