import pytest

from lib import registry
from lib.registry import CHALLENGER, CHAMPION

pytestmark = pytest.mark.slow


def test_first_deployment_promotes_the_challenger(executed, challenger, task_values):
    with executed("pipelines/05_deploy.ipynb", env="staging", model_uri=challenger.uri) as tb:
        assert tb.value("decision.incumbent_name") == "business-rule baseline"
    assert task_values() == {"promoted": True, "champion_uri": challenger.uri}
    assert registry.version_of(challenger.name, CHAMPION) == challenger
    assert registry.version_of(challenger.name, CHALLENGER) is None
