"""Notebook and CLI parameters: checked types and as-of dates, each problem one ConfigError line."""

from __future__ import annotations

import datetime as dt
from typing import Any

from lib.core.config.environment import DataWindow, EnvConfig
from lib.core.errors import ConfigError


def parse_as_of(value: Any, env: EnvConfig) -> dt.date:
    """Turn a CLI/notebook as-of value (None, date or 'YYYY-MM-DD') into a checked date."""
    if value is None or value == "":
        return env.data.as_of
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"as-of {value!r} is not a date: use YYYY-MM-DD") from None
    if not isinstance(value, dt.date):
        raise ConfigError(f"as-of must be a YYYY-MM-DD date, got {type(value).__name__} {value!r}")
    check_as_of(value, env.data, env.name)
    return value


def check_as_of(as_of: dt.date, window: DataWindow, env_name: str) -> None:
    problem = window.outside(as_of)
    if problem:
        raise ConfigError(f"as-of {as_of} is outside the data of environment {env_name}: {problem}")


def check_param(name: str, value: Any, expected: type | tuple[type, ...]) -> Any:
    """Check a notebook parameter's type, raising a one-line ConfigError if it is wrong."""
    if isinstance(value, bool) and expected in (int, float):
        ok = False
    else:
        ok = isinstance(value, expected)
    if not ok:
        names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
        raise ConfigError(f"parameter {name} must be {names}, got {type(value).__name__} {value!r}")
    return value
