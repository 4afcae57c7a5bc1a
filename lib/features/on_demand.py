"""On-demand features: computed when a row is scored, from its keys and looked-up features.

The guide's "functions to compute on-demand features" (Databricks' feature functions). They are
declared in model.yml `on_demand_features` (function, inputs, output): a built-in function of
this module (generic time features) or `module:function`, a function of `module.py` in the conf
folder (the project's own). The logged model carries them, the functions' code included (pickled
by value: lib's and the project's modules), so that training, batch, streaming and serving apply
the very same code of the very same version, whatever the files say later, in processes that
have no conf folder. Each function takes pandas Series and returns one.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.holiday import USFederalHolidayCalendar

from lib.core.config.loading import conf_dir, display_path, suggest
from lib.core.config.model import ModelConfig, OnDemand
from lib.core.errors import ConfigError

EARLIEST, LATEST = pd.Timestamp("1970-01-01"), pd.Timestamp("2200-01-01")  # days_to_holiday's range
PROJECT_PACKAGE = "lakehouse_conf"  # a conf folder's module `m.py` is imported as lakehouse_conf.m


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


FUNCTIONS: dict[str, Callable[..., pd.Series]] = {f.__name__: f for f in (hour_of_week, days_to_holiday)}
_loaded: dict[tuple[Path, int], ModuleType] = {}  # (file, its mtime): imported once while it is unchanged


@dataclass(frozen=True)
class OnDemandFeature:
    """`output` = `function`(**{parameter: frame[column] for parameter, column in inputs})."""

    function: Callable[..., pd.Series]
    inputs: dict[str, str]
    output: str
    name: str = ""  # as model.yml names it (a built-in name or module:function)

    def to_dict(self) -> dict[str, Any]:
        return {"function": self.name or self.function.__name__, "inputs": dict(self.inputs), "output": self.output}


def project_module(folder: Path, module: str) -> ModuleType:
    """`module.py` of the conf folder `folder`, imported (as lakehouse_conf.<module>); raises
    ConfigError (without the key's path) when it is missing or fails to import."""
    path = (Path(folder) / f"{module}.py").resolve()
    if not path.is_file():
        raise ConfigError(f"no file {module}.py in {display_path(folder)} for module {module}")
    key = (path, path.stat().st_mtime_ns)
    if key not in _loaded:
        name = f"{PROJECT_PACKAGE}.{module}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None  # a .py file always has a loader
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded  # before it runs, as an import does (dataclasses look it up)
        try:
            spec.loader.exec_module(loaded)
        except Exception as exc:  # any error in the project's code: its type and message are the news
            sys.modules.pop(name, None)
            raise ConfigError(f"{display_path(path)} fails to import: {type(exc).__name__}: {exc}") from exc
        _loaded[key] = loaded
    return _loaded[key]


def function(name: str, folder: Path | None = None) -> Callable[..., pd.Series]:
    """The function model.yml names: built-in, or `module:function` from the conf folder
    (default: the one in use). Raises ConfigError (without the key's path)."""
    if ":" not in name:
        found = FUNCTIONS.get(name)
        if found is None:
            raise ConfigError(
                f"unknown function {name!r} (lib/features/on_demand.py has {', '.join(sorted(FUNCTIONS))}; a "
                f"project's own is module:function){suggest(name, list(FUNCTIONS))}"
            )
        return found
    module_name, _, attribute = name.partition(":")
    module = project_module(folder or conf_dir(), module_name)
    found = getattr(module, attribute, None)
    if not inspect.isfunction(found):
        defined = [n for n, f in vars(module).items() if inspect.isfunction(f) and not n.startswith("_")]
        raise ConfigError(f"{module_name}.py has no function {attribute!r}{suggest(attribute, defined)}")
    return found


def project_modules(features: Sequence[OnDemandFeature]) -> list[ModuleType]:
    """The conf folder's modules whose functions `features` use (a logged model carries them)."""
    names = {f.function.__module__ for f in features if f.function.__module__.startswith(f"{PROJECT_PACKAGE}.")}
    return [sys.modules[name] for name in sorted(names) if name in sys.modules]


def declared(specs: Sequence[OnDemand], source: str | None = None, folder: Path | None = None) -> list[OnDemandFeature]:
    """model.yml `on_demand_features` (shape checked at load) of the conf folder `folder` (default:
    the one in use), resolved: an unknown function, a module that is missing or fails to import, or
    a wrong parameter is one ConfigError line naming `source` (default: its model.yml) and the key's path."""
    folder = folder or conf_dir()
    source = source or display_path(folder / "model.yml")
    found = []
    for i, spec in enumerate(specs):
        where = f"{source}: on_demand_features.{i}"
        try:
            resolved = function(spec.function, folder)
        except ConfigError as exc:
            raise ConfigError(f"{where}.function: {exc}") from exc.__cause__
        wanted = set(inspect.signature(resolved).parameters)
        if set(spec.inputs) != wanted:
            raise ConfigError(
                f"{where}.inputs: {spec.function} takes inputs {', '.join(sorted(wanted))}, "
                f"not {', '.join(sorted(spec.inputs)) or 'none'}"
            )
        found.append(OnDemandFeature(resolved, dict(spec.inputs), spec.output, spec.function))
    return found


def of_model(model_cfg: ModelConfig) -> list[OnDemandFeature]:
    """The on-demand features a model.yml declares, resolved in the conf folder it was read from."""
    return declared(model_cfg.on_demand_features, folder=model_cfg.folder)


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
