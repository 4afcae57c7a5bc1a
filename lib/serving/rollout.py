"""The deployment job's side of serving: keep the endpoint on the Champion.

Creates the endpoint if it is missing; otherwise moves its traffic to the new Champion in
the configured steps (e.g. 10% -> 50% -> 100%). Between steps it watches the new version's
live requests (5xx share and p99 latency from the endpoint's metrics); a step that breaks a
limit, or a config that fails to load, puts all traffic back on the old version and raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lib.core import names
from lib.core.errors import LakehouseError
from lib.platform.registry import ModelRef
from lib.serving import metrics, server, settings
from lib.serving.client import Client, failure_reason
from lib.serving.settings import Rollout, Settings


class RolloutFailedError(LakehouseError):
    """The new version failed to load or broke a live limit; the old version serves again."""


@dataclass(frozen=True)
class Step:
    percent: int
    requests: int
    errors: int
    p99_ms: float
    verdict: str  # ok | not judged | failed


@dataclass
class Outcome:
    action: str  # created | unchanged | updated | skipped (no Champion yet)
    serving: str  # served entity name now taking all traffic
    replaced: str = ""
    steps: list[Step] = field(default_factory=list)

    def summary(self) -> str:
        if self.action == "skipped":
            return "endpoint not touched: there is no Champion to serve yet"
        steps = ", ".join(
            f"{s.percent}% ({s.requests} req, {s.errors} 5xx, p99<={s.p99_ms:g} ms: {s.verdict})" for s in self.steps
        )
        return (
            f"endpoint {self.action}: serves {self.serving}"
            + (f" (was {self.replaced})" if self.replaced else "")
            + (f"; steps {steps}" if steps else "")
        )


def served_name(ref: ModelRef) -> str:
    return f"{ref.name}-{ref.version}"


def endpoint_config(routes: list[tuple[dict, int]], capture: dict | None) -> dict:
    """A config body: each (served entity, traffic %) pair, and the capture settings."""
    out = {
        "served_entities": [e for e, _ in routes],
        "traffic_config": {"routes": [{"served_model_name": e["name"], "traffic_percentage": p} for e, p in routes]},
    }
    if capture:
        out["auto_capture_config"] = capture
    return out


def _entity(ref: ModelRef) -> dict:
    return {
        "name": served_name(ref),
        "entity_name": ref.name,
        "entity_version": ref.version,
        "workload_size": "Small",
        "scale_to_zero_enabled": False,
    }


def deploy(
    client: Client,
    name: str,
    champion: ModelRef,
    cfg: Settings,
    capture: dict | None,
    wait: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] = print,
) -> Outcome:
    """Make endpoint `name` serve `champion` with all its traffic."""
    new = _entity(champion)
    endpoint = client.get(name)
    if endpoint is not None and endpoint["state"]["config_update"] == "IN_PROGRESS":
        endpoint = client.wait(name)  # e.g. still loading its saved config after a restart
    if endpoint is None:
        client.create(name, endpoint_config([(new, 100)], capture))
        endpoint = client.wait(name)
        if endpoint["state"]["ready"] != "READY":
            raise RolloutFailedError(f"endpoint {name} could not be created: {failure_reason(endpoint)}")
        return Outcome("created", new["name"])
    config = endpoint.get("config")
    routes = {r["served_model_name"]: r["traffic_percentage"] for r in (config or {}).get("traffic_config", {}).get("routes", [])}
    if routes == {new["name"]: 100} and (config or {}).get("auto_capture_config", {}).get("enabled", False) == bool(capture):
        return Outcome("unchanged", new["name"])
    entities = {e["name"]: e for e in (config or {}).get("served_entities", [])}
    old_name = max(routes, key=routes.__getitem__) if routes else ""
    old = {k: entities[old_name][k] for k in ("name", "entity_name", "entity_version")} if old_name else None
    if old is None or old_name == new["name"]:  # nothing serving yet, or only the traffic split changes
        return _update(client, name, [(new, 100)], capture, Outcome("updated", new["name"], old_name))
    outcome = Outcome("updated", new["name"], old_name)
    for percent in cfg.rollout.steps:
        routes_now = [(new, 100)] if percent == 100 else [(old, 100 - percent), (new, percent)]
        progress(f"rollout: {percent}% to {new['name']}")
        try:
            _update(client, name, routes_now, capture, outcome)
        except RolloutFailedError:
            if percent != cfg.rollout.steps[0]:
                _update(client, name, [(old, 100)], capture, outcome)
            raise
        if percent == 100:
            break
        step = _observe(client, name, new["name"], percent, cfg, wait)
        outcome.steps.append(step)
        progress(
            f"rollout: {percent}% step: {step.requests} requests, {step.errors} 5xx, p99<={step.p99_ms:g} ms, {step.verdict}"
        )
        if step.verdict == "failed":
            _update(client, name, [(old, 100)], capture, outcome)
            raise RolloutFailedError(
                f"rollout of {new['name']} stopped at {percent}%: {step.errors}/{step.requests} 5xx, p99<={step.p99_ms:g} ms "
                f"(limits {cfg.rollout.max_error_rate:.1%}, {cfg.rollout.max_p99_ms:g} ms); {old_name} serves all traffic again"
            )
    return outcome


def _update(client: Client, name: str, routes: list[tuple[dict, int]], capture: dict | None, outcome: Outcome) -> Outcome:
    client.update(name, endpoint_config(routes, capture))
    endpoint = client.wait(name)
    if endpoint["state"]["config_update"] != "NOT_UPDATING":
        raise RolloutFailedError(f"endpoint {name} update failed, the previous config still serves: {failure_reason(endpoint)}")
    return outcome


def _observe(client: Client, name: str, entity: str, percent: int, cfg: Settings, wait: Callable[[float], None]) -> Step:
    before = metrics.parse(client.metrics(name)).get(entity, metrics.Snapshot())
    wait(cfg.rollout.step_seconds)
    seen = metrics.parse(client.metrics(name)).get(entity, metrics.Snapshot()).since(before)
    return judge(percent, seen, cfg.rollout)


def judge(percent: int, seen: metrics.Snapshot, limits: Rollout) -> Step:
    """A step's verdict on the new version's requests during it: too few are not judged."""
    p99_ms = seen.quantile_bound(0.99) * 1000
    if seen.requests < limits.min_requests:
        verdict = "not judged"
    elif seen.errors > limits.max_error_rate * seen.requests or p99_ms > limits.max_p99_ms:
        verdict = "failed"
    else:
        verdict = "ok"
    return Step(percent, seen.requests, seen.errors, p99_ms, verdict)


def capture_config(env, name: str, cfg: Settings) -> dict | None:
    """Inference table <catalog>.<schema>.<endpoint>_payload in the environment's own catalog."""
    if not cfg.capture:
        return None
    return {
        "catalog_name": env.catalog,
        "schema_name": env.schema,
        "table_name_prefix": names.payload_prefix(name),
        "enabled": True,
    }  # <prefix>_payload


def connect(env, champion: ModelRef | None) -> Client | None:
    """A client of the environment's server, started if need be (None: nothing to serve yet)."""
    if champion is None:
        return None
    running = server.start(env)
    return Client(running.url, settings.load(env).token())
