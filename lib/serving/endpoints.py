"""Serving endpoints: their configs, states and zero-downtime updates.

An update loads and warms the new config's served entities on a loader thread while the old
config keeps serving; traffic moves in one reference swap only once all of them are ready.
A config whose model fails to load ends UPDATE_FAILED with the reason, and the old config
goes on serving. Applied configs are saved, so a restarted server serves them again.
"""

from __future__ import annotations

import builtins
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lib.core.errors import ApiError
from lib.serving.capture import CaptureWriter
from lib.serving.contract import EndpointConfig, ServedEntity, check_endpoint_name, parse_config
from lib.serving.entity import Served
from lib.serving.metrics import Registry

log = logging.getLogger("lib.serving")


class Router:
    """Smooth weighted round robin: exact shares over every 100 requests, interleaved."""

    def __init__(self, routes: tuple[tuple[str, int], ...]):
        self._routes = [(name, pct) for name, pct in routes if pct > 0]
        self._current = {name: 0 for name, _ in self._routes}

    def pick(self) -> str:
        if len(self._routes) == 1:
            return self._routes[0][0]
        for name, pct in self._routes:
            self._current[name] += pct
        best = max(self._current, key=self._current.__getitem__)
        self._current[best] -= 100
        return best


@dataclass
class Active:
    config: EndpointConfig
    version: int
    served: dict[str, Served]
    router: Router


@dataclass
class Endpoint:
    name: str
    creator: str
    created_ms: int
    updated_ms: int
    active: Active | None = None
    pending: EndpointConfig | None = None
    pending_states: dict[str, tuple[str, str]] = field(default_factory=dict)
    config_update: str = "NOT_UPDATING"
    metrics: Registry = field(default_factory=Registry)
    capture: CaptureWriter | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_dict(self) -> dict:
        out = {
            "name": self.name,
            "id": self.id,
            "creator": self.creator,
            "creation_timestamp": self.created_ms,
            "last_updated_timestamp": self.updated_ms,
            "state": {"ready": "READY" if self.active else "NOT_READY", "config_update": self.config_update},
        }
        if self.active:
            config = self.active.config.to_dict()
            for entity in config["served_entities"]:
                entity["state"] = {"deployment": "DEPLOYMENT_READY", "deployment_state_message": ""}
            out["config"] = {**config, "config_version": self.active.version}
        if self.pending:
            config = self.pending.to_dict()
            for entity in config["served_entities"]:
                state, message = self.pending_states.get(entity["name"], ("DEPLOYMENT_CREATING", ""))
                entity["state"] = {"deployment": state, "deployment_state_message": message}
            out["pending_config"] = {**config, "config_version": (self.active.version if self.active else 0) + 1}
        return out


def _now_ms() -> int:
    return int(time.time() * 1000)


class Manager:
    """All endpoints of one server (one environment)."""

    def __init__(
        self,
        catalog: str,
        make_served: Callable[[ServedEntity], Served],
        make_capture: Callable[[str], CaptureWriter],
        check_version: Callable[[str, str], None],
        saved: Path | None = None,
    ):
        self.catalog = catalog
        self._make_served, self._make_capture, self._check_version = make_served, make_capture, check_version
        self._saved = saved
        self._endpoints: dict[str, Endpoint] = {}
        self._lock = threading.RLock()

    # -- the REST operations -------------------------------------------------------------
    def create(self, body: dict, creator: str) -> dict:
        name = check_endpoint_name(body.get("name") if isinstance(body, dict) else None)
        config = self._parse(body.get("config"), name)
        with self._lock:
            if name in self._endpoints:
                raise ApiError(409, "RESOURCE_ALREADY_EXISTS", f"endpoint {name!r} already exists")
            endpoint = self._endpoints[name] = Endpoint(name, creator, _now_ms(), _now_ms())
            self._start_update(endpoint, config)
            return endpoint.to_dict()

    def update(self, name: str, body: dict) -> dict:
        endpoint = self.get(name)
        config = self._parse(body, name)
        with self._lock:
            if endpoint.config_update == "IN_PROGRESS":
                raise ApiError(409, "RESOURCE_CONFLICT", f"endpoint {name!r} is already being updated; wait for it to finish")
            self._start_update(endpoint, config)
            return endpoint.to_dict()

    def delete(self, name: str) -> None:
        with self._lock:
            endpoint = self.get(name)
            del self._endpoints[name]
            self._save()
        for served in endpoint.active.served.values() if endpoint.active else ():
            served.retire()
        if endpoint.capture:
            threading.Thread(target=endpoint.capture.close, daemon=True).start()

    def get(self, name: str) -> Endpoint:
        endpoint = self._endpoints.get(name)
        if endpoint is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"endpoint {name!r} does not exist")
        return endpoint

    def list(self) -> list[dict]:
        return [e.to_dict() for e in list(self._endpoints.values())]

    # -- updates ---------------------------------------------------------------------------
    def _parse(self, body, name: str) -> EndpointConfig:
        config = parse_config(body, self.catalog, name)
        for entity in config.served_entities:
            self._check_version(entity.entity_name, entity.entity_version)
        return config

    def _start_update(self, endpoint: Endpoint, config: EndpointConfig) -> None:
        endpoint.pending, endpoint.pending_states, endpoint.config_update = config, {}, "IN_PROGRESS"
        endpoint.updated_ms = _now_ms()
        threading.Thread(target=self._apply, args=(endpoint, config), name=f"update-{endpoint.name}", daemon=True).start()

    def _apply(self, endpoint: Endpoint, config: EndpointConfig) -> None:
        current = endpoint.active.served if endpoint.active else {}
        served: dict[str, Served] = {}
        loaded: list[Served] = []
        for entity in config.served_entities:
            same = current.get(entity.name)
            if same is not None and same.spec == entity:
                served[entity.name] = same  # unchanged: keeps serving, no reload
            else:
                try:
                    fresh = self._make_served(entity)
                    fresh.load()
                except Exception as exc:
                    reason = exc.message if isinstance(exc, ApiError) else (str(exc).splitlines() or [type(exc).__name__])[0]
                    log.error("endpoint %s: %s failed to load: %s", endpoint.name, entity.uri, reason)
                    with self._lock:
                        endpoint.pending_states[entity.name] = ("DEPLOYMENT_FAILED", f"{entity.uri} failed to load: {reason}")
                        endpoint.config_update = "UPDATE_FAILED"
                    for other in loaded:
                        other.retire()
                    return
                loaded.append(fresh)
                served[entity.name] = fresh
            endpoint.pending_states[entity.name] = ("DEPLOYMENT_READY", "")
        capture = endpoint.capture
        if config.auto_capture and (capture is None or capture.table != config.auto_capture.table):
            capture = self._make_capture(config.auto_capture.table)
        elif not config.auto_capture:
            capture = None
        with self._lock:
            old, old_capture = endpoint.active, endpoint.capture
            endpoint.active = Active(config, (old.version if old else 0) + 1, served, Router(config.routes))
            endpoint.capture = capture
            endpoint.pending, endpoint.pending_states, endpoint.config_update = None, {}, "NOT_UPDATING"
            endpoint.updated_ms = _now_ms()
            if endpoint.name in self._endpoints:
                self._save()
        for name, was in old.served.items() if old else ():
            if served.get(name) is not was:
                was.retire()
        if old_capture is not None and old_capture is not capture:
            old_capture.close()
        log.info(
            "endpoint %s serves config %d: %s",
            endpoint.name,
            endpoint.active.version,
            ", ".join(f"{n} {p}%" for n, p in config.routes),
        )

    # -- persistence and shutdown ------------------------------------------------------------
    def _save(self) -> None:
        if self._saved is None:
            return
        data = {}
        for name, e in self._endpoints.items():
            config = e.active.config if e.active else e.pending
            if config is not None:
                data[name] = {"creator": e.creator, "config": config.to_dict()}
        self._saved.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._saved.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self._saved)

    def restore(self) -> builtins.list[str]:  # `list` in this class is Manager.list
        """Recreate the saved endpoints (loading in the background); returns their names."""
        if self._saved is None or not self._saved.exists():
            return []
        names = []
        for name, saved in json.loads(self._saved.read_text()).items():
            try:
                self.create({"name": name, "config": saved["config"]}, saved.get("creator", "restored"))
                names.append(name)
            except ApiError as exc:
                log.error("saved endpoint %s not restored: %s", name, exc.message)
        return names

    def settled(self) -> bool:
        return all(e.config_update != "IN_PROGRESS" for e in list(self._endpoints.values()))

    def close(self) -> None:
        """Flush every inference table (called once requests have drained)."""
        for endpoint in list(self._endpoints.values()):
            if endpoint.capture:
                endpoint.capture.close()
