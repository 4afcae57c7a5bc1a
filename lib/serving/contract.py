"""The Databricks Model Serving contract: endpoint configs in, endpoint JSON out, API errors.

Only shapes and checks live here (no I/O), so a request body is refused with one line that
says what is wrong before anything is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lib.core import names
from lib.core.errors import AccessDeniedError, ApiError, bad

WORKLOAD_SIZES = ("Small", "Medium", "Large")


_ENDPOINT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class ServedEntity:
    name: str
    entity_name: str
    entity_version: str
    workload_size: str = "Small"
    scale_to_zero_enabled: bool = False
    environment_vars: tuple[tuple[str, str], ...] = ()

    @property
    def uri(self) -> str:
        return f"models:/{self.entity_name}/{self.entity_version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "entity_name": self.entity_name,
            "entity_version": self.entity_version,
            "workload_size": self.workload_size,
            "scale_to_zero_enabled": self.scale_to_zero_enabled,
            "environment_vars": dict(self.environment_vars),
        }


@dataclass(frozen=True)
class AutoCapture:
    catalog_name: str
    schema_name: str
    table_name_prefix: str
    enabled: bool = True

    @property
    def table(self) -> str:
        return names.payload_of_prefix(self.catalog_name, self.schema_name, self.table_name_prefix)

    def to_dict(self) -> dict[str, Any]:
        return {
            "catalog_name": self.catalog_name,
            "schema_name": self.schema_name,
            "table_name_prefix": self.table_name_prefix,
            "enabled": self.enabled,
            "state": {"payload_table": {"name": self.table}},
        }


@dataclass(frozen=True)
class EndpointConfig:
    served_entities: tuple[ServedEntity, ...]
    routes: tuple[tuple[str, int], ...]  # (served entity name, traffic percentage)
    auto_capture: AutoCapture | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "served_entities": [e.to_dict() for e in self.served_entities],
            "traffic_config": {
                "routes": [{"served_model_name": n, "served_entity_name": n, "traffic_percentage": p} for n, p in self.routes]
            },
        }
        if self.auto_capture is not None:
            out["auto_capture_config"] = self.auto_capture.to_dict()
        return out


def check_endpoint_name(name: Any) -> str:
    if not isinstance(name, str) or not _ENDPOINT_NAME.match(name):
        raise bad(f"endpoint name must be 1-63 letters, digits, - or _ (starting with a letter or digit), got {name!r}")
    return name


def parse_config(body: Any, own_catalog: str, endpoint_name: str) -> EndpointConfig:
    """Check an endpoint config (the `config` of a create, or the body of an update)."""
    if not isinstance(body, dict):
        raise bad("config must be a JSON object with served_entities")
    raw_entities = body.get("served_entities", body.get("served_models"))
    if not isinstance(raw_entities, list) or not raw_entities:
        raise bad("config.served_entities must be a non-empty list")
    entities = tuple(_entity(e, i) for i, e in enumerate(raw_entities))
    names = [e.name for e in entities]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise bad(f"served entity names must be unique, repeated: {', '.join(dupes)}")
    routes = _routes(body.get("traffic_config"), names)
    capture = _capture(body.get("auto_capture_config"), own_catalog, endpoint_name)
    return EndpointConfig(entities, routes, capture)


def _entity(raw: Any, i: int) -> ServedEntity:
    where = f"served_entities[{i}]"
    if not isinstance(raw, dict):
        raise bad(f"{where} must be an object with entity_name and entity_version")
    name, version = raw.get("entity_name", raw.get("model_name")), raw.get("entity_version", raw.get("model_version"))
    if not isinstance(name, str) or name.count(".") != 2:
        raise bad(f"{where}.entity_name must be a registered model catalog.schema.model, got {name!r}")
    if isinstance(version, bool) or not isinstance(version, (str, int)) or not str(version).isdigit():
        raise bad(f"{where}.entity_version must be a version number, got {version!r}")
    size = raw.get("workload_size", "Small")
    if size not in WORKLOAD_SIZES:
        raise bad(f"{where}.workload_size must be one of {', '.join(WORKLOAD_SIZES)}, got {size!r}")
    env_vars = raw.get("environment_vars") or {}
    if not isinstance(env_vars, dict) or not all(isinstance(v, str) for v in env_vars.values()):
        raise bad(f"{where}.environment_vars must map names to strings")
    served_name = raw.get("name") or f"{name}-{version}"
    if not isinstance(served_name, str):
        raise bad(f"{where}.name must be a string")
    return ServedEntity(
        served_name, name, str(int(version)), size, bool(raw.get("scale_to_zero_enabled", False)), tuple(sorted(env_vars.items()))
    )


def _routes(raw: Any, names: list[str]) -> tuple[tuple[str, int], ...]:
    if raw is None:
        if len(names) > 1:
            raise bad("traffic_config.routes is required when there is more than one served entity")
        return ((names[0], 100),)
    routes = raw.get("routes") if isinstance(raw, dict) else None
    if not isinstance(routes, list) or not routes:
        raise bad("traffic_config.routes must be a non-empty list")
    out = []
    for i, route in enumerate(routes):
        target = route.get("served_entity_name", route.get("served_model_name")) if isinstance(route, dict) else None
        pct = route.get("traffic_percentage") if isinstance(route, dict) else None
        if target not in names:
            raise bad(f"traffic_config.routes[{i}] names {target!r}, which is not a served entity ({', '.join(names)})")
        if isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 100:
            raise bad(f"traffic_config.routes[{i}].traffic_percentage must be an integer 0-100, got {pct!r}")
        out.append((target, pct))
    total = sum(p for _, p in out)
    if total != 100:
        raise bad(f"traffic_config.routes percentages must sum to 100, they sum to {total}")
    routed = [n for n, _ in out]
    if len(set(routed)) != len(routed):
        raise bad("traffic_config.routes names a served entity twice")
    return tuple(out)


def _capture(raw: Any, own_catalog: str, endpoint_name: str) -> AutoCapture | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad("auto_capture_config must be an object")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise bad("auto_capture_config.enabled must be true or false")
    if not enabled:
        return None
    catalog, schema = raw.get("catalog_name"), raw.get("schema_name")
    prefix = raw.get("table_name_prefix") or names.payload_prefix(endpoint_name)
    for key, value in (("catalog_name", catalog), ("schema_name", schema), ("table_name_prefix", prefix)):
        if not isinstance(value, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value):
            raise bad(f"auto_capture_config.{key} must be an identifier, got {value!r}")
    assert isinstance(catalog, str) and isinstance(schema, str)  # checked just above
    try:
        names.check_own(own_catalog, names.payload_of_prefix(catalog, schema, prefix), "this server", "capture into")
    except AccessDeniedError as exc:
        raise ApiError(403, "PERMISSION_DENIED", f"auto_capture_config.catalog_name: {exc}") from None
    return AutoCapture(catalog, schema, prefix, True)
