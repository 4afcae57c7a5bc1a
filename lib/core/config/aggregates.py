"""conf/model.yml: a feature table declared by time-windowed aggregates (`feature_tables.<t>.aggregates`).

    order_history:
      primary_keys: [order_id]           # the spine's id
      timestamp_key: ordered_at          # the spine's timestamp
      aggregates:                        # one row per row of the spine table
        store_returns_7d: {source: orders, by: [store], known_at: returned_at,
                           value: "CAST(returned AS double)", function: avg, window: 7 days}

Each value is over the source's events whose `known_at` falls in [timestamp - window, timestamp):
strictly before the row's own time, so a row never sees what was learnt at or after it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from lib.core.config.loading import Strict, invalid

FUNCTIONS = ("avg", "sum", "count", "min", "max", "last")
_UNITS = {"day": 86400, "hour": 3600, "minute": 60}
_WINDOW = re.compile(r"\s*(\d+)\s+(day|hour|minute)s?\s*")


def window_seconds(text: str) -> int:
    """Seconds of a window "N days|hours|minutes" (singular too); ValueError (one line) otherwise."""
    match = _WINDOW.fullmatch(text)
    if match is None:
        raise ValueError(f"must be 'N days', 'N hours' or 'N minutes', got {text!r}")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"must be longer than 0, got {text!r}")
    return seconds


class Aggregate(Strict):
    """`function`(`value`) over the `source` events of the row's `by` key known in [timestamp - window, timestamp)."""

    source: str  # a source of sources.yml (its raw table with its derived columns)
    by: Annotated[list[str], Field(min_length=1)]  # columns of both the source and the spine table
    known_at: str = Field(min_length=1)  # Spark SQL over the source: when an event's value became known
    filter: str | None = None  # Spark SQL predicate: the events that count
    value: str | None = None  # Spark SQL over the source; `count` without it counts the events
    function: Literal["avg", "sum", "count", "min", "max", "last"]  # last: the latest known event's value
    window: str  # "N days|hours|minutes"

    @field_validator("window")
    @classmethod
    def _a_duration(cls, value: str) -> str:
        window_seconds(value)
        return value

    @model_validator(mode="after")
    def _value_unless_counting(self) -> Aggregate:
        if self.value is None and self.function != "count":
            raise invalid("value", f"missing (function {self.function} needs the value it aggregates)")
        return self

    @property
    def seconds(self) -> int:
        return window_seconds(self.window)


def check_table(
    at: tuple[str, ...], primary_keys: list[str], timestamp_key: str, names: Iterable[str], spine_id: str, spine_timestamp: str
) -> None:
    """An aggregates table has one row per spine row: keyed by the spine's id and
    timestamp; its aggregates' names are neither."""
    if primary_keys != [spine_id]:
        raise invalid(
            (*at, "primary_keys"), f"must be [{spine_id}] (the spine's id): an aggregates table has a row per spine row"
        )
    if timestamp_key != spine_timestamp:
        raise invalid((*at, "timestamp_key"), f"must be {spine_timestamp} (the spine's timestamp)")
    for name in names:
        if name in (spine_id, spine_timestamp):
            raise invalid((*at, "aggregates", name), "is the name of a key column: name the aggregate otherwise")
