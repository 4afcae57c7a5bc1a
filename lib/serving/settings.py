"""The `serving` block of conf/environments.yml (lib.core.config.blocks.Serving, checked at load),
with its run-time overrides, plus where a server keeps its files."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from lib.core.config import EnvConfig, parse_model
from lib.core.config.blocks import Rollout
from lib.core.errors import ConfigError

PORT_ENV_VAR = "LAKEHOUSE_SERVING_PORT"
TOKEN_ENV_VAR = "LAKEHOUSE_SERVING_TOKEN"


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
    folder: Path  # <home>/serving/<env>: state, token, endpoints, log

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
    """The environment's serving settings; $LAKEHOUSE_SERVING_PORT and non-empty arguments (the
    serve task's parameters) override its port and rollout."""
    raw = env.serving
    rollout = raw.rollout
    if rollout_steps or step_seconds >= 0:
        changed = rollout.model_dump()
        if rollout_steps:
            try:
                changed["steps"] = [int(p) for p in str(rollout_steps).split(",")]
            except ValueError:
                raise ConfigError(f"rollout_steps must be percentages like 10,50,100, got {rollout_steps!r}") from None
        if step_seconds >= 0:
            changed["step_seconds"] = step_seconds
        rollout = parse_model(Rollout, changed, "parameters rollout_steps, step_seconds", "rollout")
    port_setting = os.environ.get(PORT_ENV_VAR, raw.port)
    try:
        port = int(port_setting)
        if not 0 <= port <= 65535:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"serving port must be 0-65535 ({PORT_ENV_VAR}), got {port_setting!r}") from None
    return Settings(
        host=raw.host,
        port=port,
        endpoint=raw.endpoint,
        max_request_bytes=int(raw.max_request_mb * 1024 * 1024),
        max_batch_rows=raw.max_batch_rows,
        capture=raw.capture.enabled,
        flush_seconds=raw.capture.flush_seconds,
        max_queue=raw.capture.max_queue,
        rollout=rollout,
        folder=env.home / "serving" / env.name,
    )
