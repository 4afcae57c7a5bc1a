"""The `serving` block of conf/environments.yml, checked, plus where a server keeps its files."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.core.config import EnvConfig
from lib.core.errors import ConfigError

PORT_ENV_VAR = "LAKEHOUSE_SERVING_PORT"
TOKEN_ENV_VAR = "LAKEHOUSE_SERVING_TOKEN"


@dataclass(frozen=True)
class Rollout:
    steps: tuple[int, ...]      # traffic % to the new version per step; the last is 100
    step_seconds: float         # live traffic observed between steps
    max_error_rate: float       # 5xx share of the new version's requests in a step
    max_p99_ms: float           # p99 latency bound of the new version in a step
    min_requests: int           # fewer requests in a step than this: the step is not judged


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    endpoint: str
    max_request_bytes: int
    max_batch_rows: int
    capture: bool
    flush_seconds: float
    max_queue: int
    rollout: Rollout
    folder: Path                # <home>/serving/<env>: state, token, endpoints, log

    @property
    def state_file(self) -> Path:
        return self.folder / "server.json"

    @property
    def endpoints_file(self) -> Path:
        return self.folder / "endpoints.json"

    @property
    def log_file(self) -> Path:
        return self.folder / "server.log"

    def token(self, create: bool = False) -> str:
        """The environment's bearer token: $LAKEHOUSE_SERVING_TOKEN, else <folder>/token."""
        if os.environ.get(TOKEN_ENV_VAR):
            return os.environ[TOKEN_ENV_VAR]
        path = self.folder / "token"
        if not path.exists():
            if not create:
                raise ConfigError(f"no serving token at {path}: start the server first (it creates one)")
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32) + "\n")
        return path.read_text().strip()


def load(env: EnvConfig, rollout_steps: str = "", step_seconds: float = -1) -> Settings:
    """Check the environment's serving block; non-empty arguments override its rollout."""
    raw = env.serving
    if rollout_steps or step_seconds >= 0:
        rollout = dict(raw.get("rollout") or {})
        if rollout_steps:
            try:
                rollout["steps"] = [int(p) for p in str(rollout_steps).split(",")]
            except ValueError:
                raise ConfigError(f"rollout_steps must be percentages like 10,50,100, got {rollout_steps!r}") from None
        if step_seconds >= 0:
            rollout["step_seconds"] = step_seconds
        raw = {**raw, "rollout": rollout}
    where = f"conf/environments.yml (environment {env.name}) serving"

    def number(block: dict[str, Any], key: str, kind: type, low: float, path: str = "") -> Any:
        value = block.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or (kind is int and value != int(value)):
            raise ConfigError(f"{where}.{path}{key} must be a number >= {low}, got {value!r}")
        return kind(value)

    port_setting = os.environ.get(PORT_ENV_VAR, raw.get("port"))
    try:
        port = int(port_setting)
        if not 0 <= port <= 65535:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"serving port must be 0-65535 ({PORT_ENV_VAR} or {where}.port), got {port_setting!r}") from None
    endpoint = raw.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise ConfigError(f"{where}.endpoint must name the endpoint the deployment job keeps on the Champion")
    capture = raw.get("capture") or {}
    rollout = raw.get("rollout") or {}
    steps = rollout.get("steps")
    if (not isinstance(steps, list) or not steps or any(isinstance(s, bool) or not isinstance(s, int) for s in steps)
            or steps[-1] != 100 or any(not 0 < a < b for a, b in zip(steps, steps[1:])) or steps[0] <= 0):
        raise ConfigError(f"{where}.rollout.steps must be rising percentages ending at 100, e.g. [10, 50, 100], got {steps!r}")
    return Settings(
        host=str(raw.get("host", "127.0.0.1")),
        port=port,
        endpoint=endpoint,
        max_request_bytes=int(number(raw, "max_request_mb", float, 0.001) * 1024 * 1024),
        max_batch_rows=number(raw, "max_batch_rows", int, 1),
        capture=bool(capture.get("enabled", True)),
        flush_seconds=number(capture, "flush_seconds", float, 0.05, "capture."),
        max_queue=number(capture, "max_queue", int, 1, "capture."),
        rollout=Rollout(tuple(steps), number(rollout, "step_seconds", float, 0, "rollout."),
                        number(rollout, "max_error_rate", float, 0, "rollout."),
                        number(rollout, "max_p99_ms", float, 0, "rollout."),
                        number(rollout, "min_requests", int, 0, "rollout.")),
        folder=env.home / "serving" / env.name,
    )
