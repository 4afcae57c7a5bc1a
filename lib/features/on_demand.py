"""On-demand features: computed when a flight is scored, from its keys and looked-up features.

The guide's "functions to compute on-demand features" (Databricks' feature functions). They are
declared in conf/model.yml `on_demand_features` (function, inputs, output) and the logged model
carries them, the functions' code included (pickled by value), so that training, batch,
streaming and serving apply the very same code of the very same version, whatever
lib/features/on_demand.py says later. Each function takes pandas Series and returns one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.holiday import USFederalHolidayCalendar

from lib.core.config.loading import suggest
from lib.core.config.model import OnDemand
from lib.core.errors import ConfigError

EARLIEST, LATEST = pd.Timestamp("1970-01-01"), pd.Timestamp("2200-01-01")  # days_to_holiday's range
DISTANCE_EDGES = (500, 1000, 2000)  # miles: short-haul < 500 <= medium < 1000 <= long < 2000 <= very long


def _times(ts: pd.Series) -> pd.Series:
    """Naive timestamps from datetimes or ISO text alike (the model sees either, by path)."""
    out = pd.to_datetime(pd.Series(ts), format="ISO8601" if pd.api.types.is_object_dtype(ts) else None)
    return out.dt.tz_localize(None) if out.dt.tz is not None else out


def hour_of_week(ts: pd.Series) -> pd.Series:
    """0 (Monday 00:00-00:59) .. 167 (Sunday 23:00-23:59) of the scheduled departure."""
    at = _times(ts)
    return (at.dt.dayofweek * 24 + at.dt.hour).astype("float64")


def days_to_holiday(ts: pd.Series) -> pd.Series:
    """Days from the scheduled departure's date to the nearest US federal holiday as observed
    (0 on one; a Saturday holiday is observed the Friday before); missing outside 1970..2199."""
    days = _times(ts).dt.normalize()
    days = days.where((days >= EARLIEST) & (days < LATEST))  # the calendar's years; outside: missing
    lo, hi = days.min(), days.max()
    if pd.isna(lo):
        return pd.Series(np.nan, index=days.index)
    holidays = USFederalHolidayCalendar().holidays(lo - pd.Timedelta(days=366), hi + pd.Timedelta(days=366))
    at = holidays.to_numpy().astype("datetime64[D]").astype("int64")
    day = days.to_numpy().astype("datetime64[D]").astype("int64")
    after = np.clip(np.searchsorted(at, day), 1, len(at) - 1)  # the nearest is this holiday or the one before
    gaps = np.minimum(np.abs(at[after] - day), np.abs(day - at[after - 1])).astype("float64")
    return pd.Series(np.where(days.isna(), np.nan, gaps), index=days.index, dtype="float64")


def distance_bucket(distance: pd.Series) -> pd.Series:
    """0 (< 500 miles), 1 (< 1000), 2 (< 2000), 3 (farther); missing stays missing."""
    miles = pd.to_numeric(pd.Series(distance), errors="coerce").to_numpy(dtype="float64")
    return pd.Series(
        np.where(np.isnan(miles), np.nan, np.searchsorted(DISTANCE_EDGES, miles, side="right")),
        index=pd.Series(distance).index,
        dtype="float64",
    )


FUNCTIONS: dict[str, Callable[..., pd.Series]] = {f.__name__: f for f in (hour_of_week, days_to_holiday, distance_bucket)}


@dataclass(frozen=True)
class OnDemandFeature:
    """`output` = `function`(**{parameter: frame[column] for parameter, column in inputs})."""

    function: Callable[..., pd.Series]
    inputs: dict[str, str]
    output: str

    def to_dict(self) -> dict[str, Any]:
        return {"function": self.function.__name__, "inputs": dict(self.inputs), "output": self.output}


def declared(specs: Sequence[OnDemand], source: str = "conf/model.yml") -> list[OnDemandFeature]:
    """conf/model.yml `on_demand_features` (shape checked at load), resolved: an unknown function
    or a wrong parameter is one ConfigError line naming `source` and the key's path."""
    found = []
    for i, spec in enumerate(specs):
        where = f"{source}: on_demand_features.{i}"
        function = FUNCTIONS.get(spec.function)
        if function is None:
            raise ConfigError(
                f"{where}.function: unknown function {spec.function!r} (lib/features/on_demand.py has "
                f"{', '.join(sorted(FUNCTIONS))}){suggest(spec.function, list(FUNCTIONS))}"
            )
        wanted = set(inspect.signature(function).parameters)
        if set(spec.inputs) != wanted:
            raise ConfigError(
                f"{where}.inputs: {spec.function} takes inputs {', '.join(sorted(wanted))}, "
                f"not {', '.join(sorted(spec.inputs)) or 'none'}"
            )
        found.append(OnDemandFeature(function, dict(spec.inputs), spec.output))
    return found


def inputs(features: list[OnDemandFeature]) -> list[str]:
    """The columns the functions read but do not make: a function may read an earlier one's output."""
    made: set[str] = set()
    read = []
    for feature in features:
        read += [c for c in feature.inputs.values() if c not in made]
        made.add(feature.output)
    return list(dict.fromkeys(read))


def model_inputs(columns: list[str], features: list[OnDemandFeature]) -> list[str]:
    """What a model that computes `features` itself is given: its `columns` but the on-demand
    ones, and the columns those are computed from."""
    made = {f.output for f in features}
    return list(dict.fromkeys([*[c for c in columns if c not in made], *inputs(features)]))


def compute(frame: pd.DataFrame, features: list[OnDemandFeature]) -> pd.DataFrame:
    """The frame with each on-demand feature added (a copy; the frame is not changed)."""
    out = frame.copy()
    for feature in features:
        out[feature.output] = feature.function(**{p: out[c] for p, c in feature.inputs.items()}).to_numpy()
    return out
