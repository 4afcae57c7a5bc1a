import math

import pandas as pd
import pytest

from lib import deployment, registry
from lib.deployment import Decision
from lib.errors import ValidationFailedError
from lib.registry import CHALLENGER, CHAMPION


@pytest.mark.parametrize("challenger,incumbent,min_improvement,promote", [
    (0.70, 0.65, 0.0, True),       # win
    (0.60, 0.65, 0.0, False),      # loss
    (0.65, 0.65, 0.0, False),      # tie keeps the Champion
    (0.66, 0.65, 0.02, False),     # win, but below the minimum improvement
    (0.70, math.nan, 0.0, True),   # nothing measurable to beat
    (math.nan, 0.65, 0.0, False),  # an unmeasurable challenger never wins
])
def test_decision(challenger, incumbent, min_improvement, promote):
    d = Decision("roc_auc", challenger, incumbent, "Champion v1", min_improvement)
    assert d.promote is promote
    assert ("beats" if promote else "does not beat") in d.reason()


def test_business_rule_baseline_scores_evening_and_weather():
    rows = pd.DataFrame({"dep_hour": [8.0, 18.0, 18.0], "precip": [0.0, 0.0, 0.2], "visib": [10.0, 10.0, 1.0]})
    assert list(deployment.business_rule_score(rows)) == pytest.approx([0.1, 0.5, 1.0])


def test_first_deployment_beats_the_baseline(challenger, holdout, model_cfg):
    decision = deployment.compare(challenger, None, holdout, model_cfg)
    assert decision.incumbent_name == deployment.BASELINE and decision.promote
    assert deployment.apply(decision, challenger, run="test") == challenger
    assert registry.version_of(challenger.name, CHAMPION) == challenger
    assert registry.version_of(challenger.name, CHALLENGER) is None
    tags = registry.require_version(challenger).tags
    assert tags["deployment.decision"] == "PROMOTED" and "(run test)" in tags["alias.Champion.reason"]


def test_identical_challenger_ties_and_champion_stays(champion, holdout, model_cfg):
    decision = deployment.compare(champion, champion, holdout, model_cfg)
    assert decision.challenger == decision.incumbent and not decision.promote
    assert deployment.apply(decision, champion, run="tie") is None
    assert registry.require_version(champion).tags["deployment.decision"] == "REJECTED"
    assert registry.version_of(champion.name, CHAMPION) == champion


def test_only_the_passed_challenger_deploys(trained):
    with pytest.raises(ValidationFailedError, match="model_validation_status=PENDING: only PASSED"):
        deployment.require_challenger(trained)
    registry.set_tags(trained, {registry.VALIDATION_STATUS: "PASSED"})
    with pytest.raises(ValidationFailedError, match=r"is not the Challenger \(.*@Challenger is no version\)"):
        deployment.require_challenger(trained)
