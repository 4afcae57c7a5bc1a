"""The deployment job's rollout against a real server: a step within its limits (judged ok, or
too few requests to judge) goes on to 100%; limits broken mid-rollout, and a new Champion that
fails to load, both put traffic and the Champion alias back on the old version."""

import dataclasses
import shutil

import pytest

from lib.core import names
from lib.core.config import load_env
from lib.lifecycle import deployment
from lib.platform import registry
from lib.serving import online_store, rollout, server, settings

pytestmark = pytest.mark.slow


@pytest.fixture
def serving(champion, featurized, home):
    env = load_env("staging")
    online_store.publish_for(featurized, champion, online_store.store_path(env.home, env.catalog))
    cfg = settings.load(env)
    api = rollout.connect(env, champion)
    assert deployment.serve_champion(api, "ep", champion, cfg, env).action == "created"
    yield env, cfg, api
    server.stop(env)


def promote(champion, source):
    new = registry.ModelRef(champion.name, str(registry.client().create_model_version(champion.name, source=source).version))
    registry.move_alias(new, names.CHAMPION, "test: promoted")
    registry.move_alias(champion, names.PREVIOUS, "test: replaced")
    return new


def test_a_step_that_breaks_no_limit_goes_on_to_all_traffic(serving, champion, holdout):
    """Judged "ok" here; "not judged" is pinned by test_05_serve and the unit tests of judge."""
    min_requests, verdict = 20, "ok"
    env, cfg, api = serving
    new = promote(champion, registry.client().get_model_version_download_uri(champion.name, champion.version))
    limits = dataclasses.replace(
        cfg,
        rollout=settings.Rollout(
            steps=(20, 100), step_seconds=0, max_error_rate=0.01, max_p99_ms=10_000, min_requests=min_requests
        ),
    )
    keys = holdout[["flight_id", "origin", "sched_dep_ts"]].head(2).astype({"sched_dep_ts": str})
    body = {"dataframe_records": keys.to_dict(orient="records")}

    def traffic(_seconds):  # the step's live traffic: 100 requests, exactly 20 reach the new version
        assert {api.query("ep", body)[0] for _ in range(100)} == {200}

    outcome = deployment.serve_champion(api, "ep", new, limits, env, wait=traffic)
    assert [(s.percent, s.requests, s.errors, s.verdict) for s in outcome.steps] == [(20, 20, 0, verdict)]
    assert (outcome.action, outcome.serving, outcome.replaced) == (
        "updated",
        f"{champion.name}-{new.version}",
        f"{champion.name}-1",
    )
    routes = api.get("ep")["config"]["traffic_config"]["routes"]
    assert [(r["served_model_name"], r["traffic_percentage"]) for r in routes] == [(f"{champion.name}-{new.version}", 100)]
    assert registry.aliases(champion.name) == {names.CHAMPION: new.version, names.PREVIOUS: "1"}


def test_a_step_over_its_latency_limit_rolls_back(serving, champion, holdout):
    env, cfg, api = serving
    new = promote(champion, registry.client().get_model_version_download_uri(champion.name, champion.version))
    strict = dataclasses.replace(
        cfg, rollout=settings.Rollout(steps=(20, 100), step_seconds=0, max_error_rate=0.01, max_p99_ms=0.0001, min_requests=10)
    )
    keys = holdout[["flight_id", "origin", "sched_dep_ts"]].head(2).astype({"sched_dep_ts": str})
    body = {"dataframe_records": keys.to_dict(orient="records")}
    codes = []

    def traffic(_seconds):  # the step's live traffic: 100 requests, about 20 reach the new version
        codes.extend(api.query("ep", body)[0] for _ in range(100))

    with pytest.raises(rollout.RolloutFailedError, match=r"stopped at 20%: 0/2\d 5xx.*Champion moved back to v1"):
        deployment.serve_champion(api, "ep", new, strict, env, run="job-9", wait=traffic)
    assert set(codes) == {200}
    routes = api.get("ep")["config"]["traffic_config"]["routes"]
    assert [(r["served_model_name"], r["traffic_percentage"]) for r in routes] == [(f"{champion.name}-1", 100)]
    assert registry.aliases(champion.name) == {names.CHAMPION: "1", names.PREVIOUS: new.version}
    assert registry.require_version(champion).tags["alias.Champion.by"] == "job-9"


def test_a_champion_that_fails_to_load_never_takes_traffic(serving, champion, home):
    env, cfg, api = serving
    broken = home / "broken"
    shutil.copytree(
        registry.client().get_model_version_download_uri(champion.name, champion.version).removeprefix("file://"), broken
    )
    (broken / "python_model.pkl").write_bytes(b"garbage")
    new = promote(champion, str(broken))
    with pytest.raises(rollout.RolloutFailedError, match="failed to load.*Champion moved back to v1"):
        deployment.serve_champion(api, "ep", new, cfg, env)
    endpoint = api.get("ep")
    assert endpoint["state"] == {"ready": "READY", "config_update": "UPDATE_FAILED"}
    assert [e["entity_version"] for e in endpoint["config"]["served_entities"]] == ["1"]
    assert registry.version_of(champion.name, names.CHAMPION) == champion
