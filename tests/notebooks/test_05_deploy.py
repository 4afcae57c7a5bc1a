import pytest

from lib.core.names import CHALLENGER, CHAMPION
from lib.platform import registry

pytestmark = pytest.mark.slow


def test_first_deployment_waits_for_approval_then_promotes_the_challenger(executed, challenger, task_values):
    with executed("pipelines/05_deploy.ipynb", env="staging", require_approval="required", run_id="job-1") as tb:
        assert tb.value("decision.incumbent_name") == "rule baseline"  # model.yml deployment.baseline
        assert tb.value("decision.promote") is True
    assert task_values() == {"promoted": False, "decision": "AWAITING_APPROVAL", "champion_uri": ""}
    assert registry.aliases(challenger.name) == {CHALLENGER: challenger.version}

    from lib.lifecycle import deployment

    deployment.approve(challenger, by="reviewer")
    with executed("pipelines/05_deploy.ipynb", env="staging", require_approval="required", run_id="job-2"):
        pass
    assert task_values() == {"promoted": True, "decision": "PROMOTED", "champion_uri": challenger.uri}
    assert registry.aliases(challenger.name) == {CHAMPION: challenger.version}
    assert registry.require_version(challenger).tags["alias.Champion.by"] == "job-2"
