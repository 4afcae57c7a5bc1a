"""conf/environments.yml: every environment's catalog, MLflow locations, data window and
service blocks, parsed into an EnvConfig.

Each environment is `defaults` deep-merged with its own block. Both are checked as written
(an unknown key is named where it stands, `defaults.` or `environments.<name>.`), then the
merged block is checked whole (required keys, the data window).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, StrictBool, StrictInt, model_validator

from lib.core import names
from lib.core.config.blocks import Destinations, Notifications, Serving, SparkSettings
from lib.core.config.loading import PROJECT_DIR, Strict, conf_dir, deep_merge, display_path, invalid, parse_model, read_yaml
from lib.core.errors import ConfigError

HOME_ENV_VAR = "LAKEHOUSE_HOME"
FILE = "environments.yml"


def _day(value: Any) -> Any:
    """A YYYY-MM-DD date (YAML gives a date; quoted, a string); not a date-time or a number."""
    if isinstance(value, dt.datetime) or not isinstance(value, (dt.date, str)):
        raise ValueError(f"must be a YYYY-MM-DD date, got {value!r}")
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"must be a YYYY-MM-DD date, got {value!r}") from None
    return value


Day = Annotated[dt.date, BeforeValidator(_day)]
Days = Annotated[StrictInt, Field(gt=0)]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")]  # catalog-style: letters, digits, _


@dataclasses.dataclass(frozen=True)
class RunWindows:
    """[start, end) date ranges of one run: training, held-out evaluation, scoring."""

    train: tuple[dt.date, dt.date]
    holdout: tuple[dt.date, dt.date]
    score: tuple[dt.date, dt.date]


class DataWindow(Strict):
    """`data`: the source data's extent and how a run splits time around its as-of date."""

    start: Day  # first day ingested
    end: Day  # first day NOT ingested
    as_of: Day  # default run date: train before it, score after it
    train_days: Days
    holdout_days: Days
    horizon_days: Days

    def earliest_as_of(self) -> dt.date:
        return self.start + dt.timedelta(days=self.train_days + self.holdout_days)

    def latest_as_of(self) -> dt.date:
        return self.end - dt.timedelta(days=self.horizon_days)

    def split(self, as_of: dt.date) -> RunWindows:
        """The half-open date ranges a run with this as-of date trains, holds out and scores."""
        holdout_start = as_of - dt.timedelta(days=self.holdout_days)
        return RunWindows(
            train=(holdout_start - dt.timedelta(days=self.train_days), holdout_start),
            holdout=(holdout_start, as_of),
            score=(as_of, as_of + dt.timedelta(days=self.horizon_days)),
        )

    def outside(self, as_of: dt.date) -> str | None:
        """Why `as_of` cannot be a run date of this window, or None when it can."""
        lo, hi = self.earliest_as_of(), self.latest_as_of()
        if lo <= as_of <= hi:
            return None
        return (
            f"choose a date from {lo} to {hi} (data {self.start}..{self.end - dt.timedelta(days=1)}, "
            f"{self.train_days}+{self.holdout_days} days before, {self.horizon_days} after)"
        )

    @model_validator(mode="after")
    def _fits(self) -> DataWindow:
        if self.earliest_as_of() > self.latest_as_of():
            raise invalid("", f"{self.start}..{self.end} is too short for train_days + holdout_days + horizon_days")
        problem = self.outside(self.as_of)
        if problem:
            raise invalid("as_of", f"{self.as_of} is outside the data: {problem}")
        return self


class Environment(Strict):
    """One environment's block (after `defaults` are merged in)."""

    lakehouse_root: str  # {home} unless $LAKEHOUSE_HOME; relative: to the project folder
    catalog: Identifier  # tables and the model are written here only
    raw_catalog: Identifier  # where source data is read (prod's, from dev)
    schema_: Identifier = Field(alias="schema")
    model: Identifier  # registered as <catalog>.<schema>.<model>
    experiment: str  # placeholders {env}, {home}
    tracking_uri: str
    registry_uri: str
    temporary: StrictBool = False  # true: `run_pipeline.py --env X --wipe` may delete it all
    data: DataWindow
    notifications: Notifications = Field(default_factory=Notifications)
    spark: SparkSettings = Field(default_factory=SparkSettings)
    publish: Destinations = Field(default_factory=Destinations)
    serving: Serving


class EnvironmentsFile(Strict):
    """conf/environments.yml. Any key of an environment may come from `defaults` instead."""

    defaults: Environment | None = None
    environments: dict[Identifier, Environment] = Field(min_length=1)


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """One environment: its catalog, MLflow locations, data window and service blocks."""

    name: str
    catalog: str
    raw_catalog: str
    schema: str
    model: str
    experiment: str
    tracking_uri: str
    registry_uri: str
    home: Path
    temporary: bool
    data: DataWindow
    webhook_url: str | None
    serving: Serving
    spark: SparkSettings
    publish: Destinations

    @property
    def model_name(self) -> str:
        """The registered model's three-level name, e.g. prod.<schema>.<model>."""
        return f"{self.catalog}.{self.schema}.{self.model}"

    def table(self, name: str) -> str:
        """A table of this environment's own catalog and schema."""
        return f"{self.catalog}.{self.schema}.{name}"

    def source_table(self, name: str) -> str:
        """A table of the catalog this environment reads data from (prod's, from dev)."""
        return f"{self.raw_catalog}.{self.schema}.{name}"

    def raw_table(self, name: str) -> str:
        """A raw source table (possibly in another catalog, e.g. prod's from dev)."""
        return f"{self.raw_catalog}.raw.{name}"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse"

    @property
    def endpoint(self) -> str:
        """The serving endpoint the deployment job keeps on the Champion."""
        return self.serving.endpoint

    @property
    def payload_table(self) -> str:
        """The inference (payload) table of the environment's endpoint."""
        return names.payload_table(self.catalog, self.schema, self.endpoint)

    @property
    def topic(self) -> str:
        """The Kafka topic of the environment's endpoint's predictions."""
        return names.topic(self.catalog, self.schema, self.endpoint)


def _blocks(folder: Path | None) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The file, its `defaults` and its `environments`, each block checked as written."""
    path = (folder or conf_dir()) / FILE
    raw = read_yaml(path)
    parse_model(EnvironmentsFile, raw, str(path), skip_missing=True)
    envs = raw.get("environments")
    if not isinstance(envs, dict) or not envs:
        raise ConfigError(f"{display_path(path)}: environments: missing (required), a mapping of names to blocks")
    return path, raw.get("defaults") or {}, envs


def environment_names(folder: Path | None = None) -> list[str]:
    return list(_blocks(folder)[2])


def load_env(name: str, folder: Path | None = None) -> EnvConfig:
    """Environment `name` of conf/environments.yml (of `folder`, default the conf folder in use)."""
    path, defaults, envs = _blocks(folder)
    if not isinstance(name, str) or name not in envs:
        raise ConfigError(f"unknown environment {name!r}: choose one of {', '.join(envs)} ({display_path(path)})")
    merged = deep_merge(defaults, envs[name] or {})
    spec = parse_model(Environment, merged, str(path), "environments", name)
    home = Path(os.environ.get(HOME_ENV_VAR) or spec.lakehouse_root).expanduser()
    if not home.is_absolute():
        home = PROJECT_DIR / home

    def text(key: str) -> str:
        value = getattr(spec, key)
        try:
            return value.format(env=name, home=home.as_posix())
        except (KeyError, IndexError, ValueError):
            raise ConfigError(
                f"{display_path(path)}: environments.{name}.{key}: {value!r} has a placeholder other than {{env}} and {{home}}"
            ) from None

    return EnvConfig(
        name=name,
        catalog=spec.catalog,
        raw_catalog=spec.raw_catalog,
        schema=spec.schema_,
        model=spec.model,
        experiment=text("experiment"),
        tracking_uri=text("tracking_uri"),
        registry_uri=text("registry_uri"),
        home=home,
        temporary=spec.temporary,
        data=spec.data,
        webhook_url=spec.notifications.webhook_url,
        serving=spec.serving,
        spark=spec.spark,
        publish=spec.publish,
    )
