import math
import threading

import mlflow
import numpy as np
import pytest

from lib.core import names
from lib.core.config.model import GroupMeanBaseline, LabelBaseline, NoBaseline
from lib.core.errors import ConcurrentDeploymentError, ConfigError, ModelNotFoundError, ValidationFailedError
from lib.core.names import CHALLENGER, CHAMPION, PREVIOUS
from lib.lifecycle import deployment, validation
from lib.lifecycle.deployment import Approval, Decision
from lib.platform import registry
from lib.platform.registry import ModelRef

NO_APPROVAL = Approval(required=False, approved=False, detail="approval not required")


@pytest.mark.parametrize(
    "metric,challenger,incumbent,min_improvement,promote",
    [
        ("roc_auc", 0.70, 0.65, 0.0, True),  # win
        ("roc_auc", 0.60, 0.65, 0.0, False),  # loss
        ("roc_auc", 0.65, 0.65, 0.0, False),  # tie keeps the Champion
        ("roc_auc", 0.66, 0.65, 0.02, False),  # win, but below the minimum improvement
        ("roc_auc", 0.70, math.nan, 0.0, True),  # nothing measurable to beat
        ("roc_auc", math.nan, 0.65, 0.0, False),  # an unmeasurable challenger never wins
        # lower is better: a smaller log loss wins, by more than the minimum improvement
        ("log_loss", 0.50, 0.60, 0.0, True),
        ("log_loss", 0.70, 0.60, 0.0, False),
        ("log_loss", 0.60, 0.60, 0.0, False),
        ("log_loss", 0.59, 0.60, 0.02, False),
        ("log_loss", 0.55, 0.60, 0.02, True),
    ],
)
def test_decision(metric, challenger, incumbent, min_improvement, promote):
    d = Decision(metric, challenger, incumbent, "Champion v1", min_improvement)
    assert d.promote is promote
    assert ("beats" if promote else "does not beat") in d.reason()
    assert d.reason().endswith(f"{'+' if metric == 'roc_auc' else '-'} {min_improvement}")


def test_the_configured_rule_gives_the_old_business_rule_scores(spark, holdout, model_cfg):
    """The rule that used to be code (evening departures and bad weather run late), now model.yml's
    deployment.baseline.expr, scores the real held-out rows the same, missing weather included."""
    rows = holdout.copy()
    rows.loc[rows.index[:40:2], "precip"] = np.nan  # weather missing at some flights: the coalesce branches
    rows.loc[rows.index[1:40:3], "visib"] = np.nan
    old = (
        0.1
        + 0.4 * (rows["dep_hour"] >= 15).astype(float)
        + 0.3 * (rows["precip"].fillna(0) > 0).astype(float)
        + 0.2 * (rows["visib"].fillna(10) < 3).astype(float)
    ).to_numpy()
    assert len(set(old)) >= 4
    new = deployment.rule_scores(spark, model_cfg.deployment.baseline.expr, rows)
    assert new == pytest.approx(old, abs=0)
    with pytest.raises(ConfigError, match="deployment.baseline.expr 'no_such_column \\+ 1' does not evaluate"):
        deployment.rule_scores(spark, "no_such_column + 1", holdout.head(3))


def test_label_baselines_come_from_the_training_window(featurized, staging, model_cfg, holdout, train_set):
    windows = staging.data.split(staging.data.as_of)

    def scores(baseline):
        cfg = model_cfg.model_copy(update={"deployment": model_cfg.deployment.model_copy(update={"baseline": baseline})})
        return deployment.baseline_scores(featurized, staging, cfg, windows.train, holdout)

    mean = scores(LabelBaseline(kind="mean"))
    assert mean.name == "mean baseline" and mean.values == pytest.approx(np.full(len(holdout), train_set["delayed"].mean()))
    median = scores(LabelBaseline(kind="median"))
    assert median.values == pytest.approx(np.full(len(holdout), train_set["delayed"].median()))
    # origin is a key, in the labels: no feature lookup needed (a feature such as carrier takes one).
    holdout.loc[holdout.index[:3], "origin"] = "XYZ"  # unseen in training: the overall mean
    by_origin = scores(GroupMeanBaseline(kind="group_mean", by="origin"))
    expected = holdout["origin"].map(train_set.groupby("origin")["delayed"].mean()).fillna(train_set["delayed"].mean())
    assert by_origin.name == "group_mean by origin baseline" and by_origin.values == pytest.approx(expected.to_numpy())
    assert len(set(by_origin.values)) == 4
    assert scores(NoBaseline(kind="none")) == deployment.Scores("none baseline", None)


def copy_of(ref: ModelRef) -> ModelRef:
    """Another version with the same artifacts (a cheap second candidate)."""
    source = registry.require_version(ref).source
    return ModelRef(ref.name, str(registry.client().create_model_version(ref.name, source=source).version))


def test_first_deployment_beats_the_baseline_and_logs_both_sides(challenger, spark, holdout, model_cfg):
    rule = deployment.Scores("rule baseline", deployment.rule_scores(spark, model_cfg.deployment.baseline.expr, holdout))
    decision = deployment.compare(challenger, None, holdout, model_cfg, rule)
    assert decision.incumbent_name == "rule baseline" and decision.promote
    run_id = deployment.log_comparison(decision, challenger, "job-7")
    logged = mlflow.get_run(run_id).data
    assert logged.metrics["challenger_roc_auc"] == pytest.approx(decision.challenger)
    assert logged.metrics["incumbent_roc_auc"] == pytest.approx(decision.incumbent)
    assert set(decision.table().columns) == {"challenger", "rule baseline"}
    assert deployment.apply(decision, challenger, None, NO_APPROVAL, run="job-7") == challenger
    assert registry.aliases(challenger.name) == {CHAMPION: challenger.version}
    tags = registry.require_version(challenger).tags
    assert tags["deployment.decision"] == "PROMOTED" and tags["alias.Champion.by"] == "job-7"
    assert "beats rule baseline" in tags["alias.Champion.reason"]
    assert tags["alias.Challenger.removed_reason"] == "promoted to Champion"


def test_win_moves_champion_and_keeps_previous_then_rollback_swaps(champion, holdout, model_cfg, make_version, train_set):
    # A weak Champion (shuffled labels) put in place by hand, so that the good model beats it.
    weak = make_version(train_set.assign(delayed=train_set["delayed"].sample(frac=1.0, random_state=0).to_numpy()))
    registry.move_alias(weak, CHAMPION, "test setup")
    good = copy_of(champion)
    registry.set_tags(good, {names.VALIDATION_STATUS: "PASSED"})
    registry.move_alias(good, CHALLENGER, "test setup")
    decision = deployment.compare(deployment.require_challenger(good), weak, holdout, model_cfg)
    assert decision.promote and decision.incumbent_name == f"Champion v{weak.version}"
    assert deployment.apply(decision, good, weak, NO_APPROVAL, run="job-8") == good
    assert registry.aliases(good.name) == {CHAMPION: good.version, PREVIOUS: weak.version}
    assert registry.require_version(weak).tags["alias.Previous.reason"] == f"replaced as Champion by v{good.version}"

    assert deployment.rollback(good.name, by="ops") == (weak, good)
    assert registry.aliases(good.name) == {CHAMPION: weak.version, PREVIOUS: good.version}
    tags = registry.require_version(weak).tags
    assert tags["alias.Champion.by"] == "ops" and tags["alias.Champion.reason"] == f"rollback: replaces v{good.version}"
    assert deployment.rollback(good.name) == (good, weak)  # and forward again
    assert registry.aliases(good.name) == {CHAMPION: good.version, PREVIOUS: weak.version}


def test_loss_keeps_the_champion(champion, holdout, model_cfg, make_version, train_set, run_validation):
    weak = make_version(train_set.assign(delayed=train_set["delayed"].sample(frac=1.0, random_state=1).to_numpy()))
    validation.record(run_validation(weak, model_cfg, "dry_run"))  # FAILED, but Challenger in dry-run mode
    decision = deployment.compare(deployment.require_challenger(weak), champion, holdout, model_cfg)
    assert not decision.promote and decision.challenger < decision.incumbent
    assert deployment.apply(decision, weak, champion, NO_APPROVAL, run="job-9") is None
    assert registry.aliases(champion.name) == {CHAMPION: champion.version, CHALLENGER: weak.version}
    assert registry.require_version(weak).tags["deployment.decision"] == "REJECTED"


def test_identical_challenger_ties_and_champion_stays(champion, holdout, model_cfg):
    decision = deployment.compare(champion, champion, holdout, model_cfg)
    assert decision.challenger == decision.incumbent and not decision.promote
    assert deployment.apply(decision, champion, champion, NO_APPROVAL, run="tie") is None
    assert registry.require_version(champion).tags["deployment.decision"] == "REJECTED"
    assert registry.version_of(champion.name, CHAMPION) == champion


def test_approval_missing_then_present(challenger, holdout, model_cfg):
    required = deployment.approval_required(model_cfg.deployment.approval, "required")
    approval = deployment.check_approval(challenger, required)
    assert approval == Approval(True, False, "approval required, none recorded") and not approval.ok
    decision = deployment.compare(challenger, None, holdout, model_cfg)
    assert deployment.apply(decision, challenger, None, approval, run="job-1", env_name="staging") is None
    tags = registry.require_version(challenger).tags
    assert tags["deployment.decision"] == "AWAITING_APPROVAL"
    assert f"--env staging --approve {challenger.version}" in tags["deployment.reason"]
    assert registry.version_of(challenger.name, CHAMPION) is None

    deployment.approve(challenger, by="alice")
    approval = deployment.check_approval(challenger, required)
    assert approval.ok and approval.detail.startswith("approved by alice at ")
    assert deployment.apply(decision, challenger, None, approval, run="job-2") == challenger
    assert "approved by alice" in registry.require_version(challenger).tags["alias.Champion.reason"]


def test_only_the_challenger_can_be_approved_or_deployed(trained):
    with pytest.raises(ValidationFailedError, match="model_validation_status=PENDING: only PASSED"):
        deployment.approve(trained)
    registry.set_tags(trained, {names.VALIDATION_STATUS: "PASSED"})
    with pytest.raises(ValidationFailedError, match=r"is not the Challenger \(.*@Challenger is no version\)"):
        deployment.require_challenger(trained)
    assert "approval.status" not in registry.require_version(trained).tags


def test_rollback_needs_a_previous_version(champion):
    with pytest.raises(ModelNotFoundError, match="has no Previous version to roll back to"):
        deployment.rollback(champion.name)
    assert registry.aliases(champion.name) == {CHAMPION: champion.version}


def test_concurrent_deployments_leave_one_champion_and_lose_no_move(champion):
    """Two deployments compared against the same Champion: one promotes, the other moves nothing."""
    candidates = [copy_of(champion), copy_of(champion)]
    win = Decision("roc_auc", 0.9, 0.6, f"Champion v{champion.version}", 0.0)
    outcomes, start = {}, threading.Barrier(2)

    def deploy(ref):
        start.wait()
        try:
            outcomes[ref.version] = deployment.apply(win, ref, champion, NO_APPROVAL, run=f"run-{ref.version}")
        except ConcurrentDeploymentError as exc:
            outcomes[ref.version] = exc

    threads = [threading.Thread(target=deploy, args=(ref,)) for ref in candidates]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [v for v, o in outcomes.items() if isinstance(o, ModelRef)]
    losers = [v for v, o in outcomes.items() if isinstance(o, ConcurrentDeploymentError)]
    assert len(winners) == 1 and len(losers) == 1
    assert registry.aliases(champion.name) == {CHAMPION: winners[0], PREVIOUS: champion.version}
    assert "deployment.decision" not in registry.require_version(ModelRef(champion.name, losers[0])).tags
    assert f"changed from v{champion.version} to v{winners[0]}" in str(outcomes[losers[0]])
