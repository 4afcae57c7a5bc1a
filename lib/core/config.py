"""Environment and model configuration: YAML files under conf/, validated into dataclasses."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lib.core import names
from lib.core.errors import ConfigError

PROJECT_DIR = Path(__file__).resolve().parents[2]
CONF_DIR = PROJECT_DIR / "conf"
HOME_ENV_VAR = "LAKEHOUSE_HOME"
# The metrics every stage reports (lib.lifecycle.evaluation.classification_metrics), nameable in model.yml.
METRICS = ("roc_auc", "accuracy", "precision", "recall", "f1")  # all: higher is better
VALIDATION_MODES = ("enabled", "dry_run", "disabled")
APPROVAL_MODES = ("not_required", "required")
ALGORITHMS = ("hist_gradient_boosting", "logistic_regression")


@dataclass(frozen=True)
class DataWindow:
    """The source data's extent and how a run splits time around its as-of date."""

    start: dt.date
    end: dt.date
    as_of: dt.date
    train_days: int
    holdout_days: int
    horizon_days: int

    def earliest_as_of(self) -> dt.date:
        return self.start + dt.timedelta(days=self.train_days + self.holdout_days)

    def latest_as_of(self) -> dt.date:
        return self.end - dt.timedelta(days=self.horizon_days)

    def split(self, as_of: dt.date) -> "RunWindows":
        """The half-open date ranges a run with this as-of date trains, holds out and scores."""
        holdout_start = as_of - dt.timedelta(days=self.holdout_days)
        return RunWindows(
            train=(holdout_start - dt.timedelta(days=self.train_days), holdout_start),
            holdout=(holdout_start, as_of),
            score=(as_of, as_of + dt.timedelta(days=self.horizon_days)),
        )


@dataclass(frozen=True)
class RunWindows:
    """[start, end) date ranges of one run: training, held-out evaluation, scoring."""

    train: tuple[dt.date, dt.date]
    holdout: tuple[dt.date, dt.date]
    score: tuple[dt.date, dt.date]


@dataclass(frozen=True)
class EnvConfig:
    """One environment: its catalog, MLflow locations and data window."""

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
    serving: dict[str, Any] = field(default_factory=dict)  # checked by lib.serving.settings
    spark: dict[str, Any] = field(default_factory=dict)  # checked by lib.platform.spark.server.settings
    publish: dict[str, Any] = field(default_factory=dict)  # checked by lib.inference.batch.destinations

    @property
    def model_name(self) -> str:
        """The registered model's three-level name, e.g. prod.flights.delay_model."""
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
        return str(self.serving.get("endpoint") or "")

    @property
    def payload_table(self) -> str:
        """The inference (payload) table of the environment's endpoint."""
        return names.payload_table(self.catalog, self.schema, self.endpoint)

    @property
    def topic(self) -> str:
        """The Kafka topic of the environment's endpoint's predictions."""
        return names.topic(self.catalog, self.schema, self.endpoint)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every failure into one ConfigError line."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} is missing") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def parse_model(model: type, raw: Any, source: str, *path: Any):
    """`raw` checked by a pydantic model; the first problem is one ConfigError line naming the
    source and the key's path (e.g. `.../monitors.yml monitors.predictions.granularities.0: ...`)."""
    from pydantic import ValidationError

    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in (*path, *error["loc"]))
        raise ConfigError(f"{source} {where}: {error['msg']}") from None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return base updated by override, merging nested mappings key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def environment_names(conf_dir: Path = CONF_DIR) -> list[str]:
    envs = read_yaml(conf_dir / "environments.yml").get("environments")
    if not isinstance(envs, dict) or not envs:
        raise ConfigError(f"{conf_dir / 'environments.yml'} has no `environments` mapping")
    return list(envs)


def load_env(name: str, conf_dir: Path = CONF_DIR) -> EnvConfig:
    """Load and check environment `name` from conf/environments.yml."""
    path = conf_dir / "environments.yml"
    raw = read_yaml(path)
    envs = raw.get("environments") or {}
    if not isinstance(name, str) or name not in envs:
        raise ConfigError(f"unknown environment {name!r}: choose one of {', '.join(envs)} ({path})")
    cfg = deep_merge(raw.get("defaults") or {}, envs[name] or {})
    where = f"{path} (environment {name})"

    home_setting = os.environ.get(HOME_ENV_VAR) or _get(cfg, "lakehouse_root", str, where)
    home = Path(home_setting).expanduser()
    if not home.is_absolute():
        home = PROJECT_DIR / home

    def text(key: str) -> str:
        return _get(cfg, key, str, where).format(env=name, home=home.as_posix())

    data = _get(cfg, "data", dict, where)
    window = DataWindow(
        start=_date(data, "start", where),
        end=_date(data, "end", where),
        as_of=_date(data, "as_of", where),
        train_days=_positive_int(data, "train_days", where),
        holdout_days=_positive_int(data, "holdout_days", where),
        horizon_days=_positive_int(data, "horizon_days", where),
    )
    if window.earliest_as_of() > window.latest_as_of():
        raise ConfigError(f"{where}: data window {window.start}..{window.end} is too short "
                          "for train_days + holdout_days + horizon_days")
    check_as_of(window.as_of, window, name)

    notifications = cfg.get("notifications") or {}
    webhook = notifications.get("webhook_url")
    if webhook is not None and not (isinstance(webhook, str) and webhook.startswith(("http://", "https://"))):
        raise ConfigError(f"{where}: notifications.webhook_url must be an http(s) URL, got {webhook!r}")

    return EnvConfig(
        name=name,
        catalog=_identifier(cfg, "catalog", where),
        raw_catalog=_identifier(cfg, "raw_catalog", where),
        schema=_identifier(cfg, "schema", where),
        model=_identifier(cfg, "model", where),
        experiment=text("experiment"),
        tracking_uri=text("tracking_uri"),
        registry_uri=text("registry_uri"),
        home=home,
        temporary=bool(cfg.get("temporary", False)),
        data=window,
        webhook_url=webhook,
        serving=cfg.get("serving") or {},
        spark=cfg.get("spark") or {},
        publish=cfg.get("publish") or {},
    )


def load_model_config(conf_dir: Path = CONF_DIR) -> dict[str, Any]:
    """Load conf/model.yml: feature tables and lookups, features and the gates of each stage."""
    path = conf_dir / "model.yml"
    cfg = read_yaml(path)
    for key in ("label", "feature_tables", "keys", "feature_lookups", "features", "training",
                "validation", "deployment", "inference"):
        if key not in cfg:
            raise ConfigError(f"{path} lacks the `{key}` section")
    _check_features(cfg, path)
    _check_validation(cfg.get("validation") or {}, path)
    deployment = cfg["deployment"] or {}
    if deployment.get("metric") not in METRICS:
        raise ConfigError(f"{path}: `deployment.metric` names unknown metric {deployment.get('metric')!r}: "
                          f"use one of {', '.join(METRICS)}")
    if deployment.get("approval", APPROVAL_MODES[0]) not in APPROVAL_MODES:
        raise ConfigError(f"{path}: `deployment.approval` must be one of {', '.join(APPROVAL_MODES)}")
    return cfg


def _check_features(cfg: dict[str, Any], path: Path) -> None:
    """Every model feature comes from a lookup or the spine; lookups name declared tables."""
    features = cfg["features"]
    if not isinstance(features, dict) or not all(
        isinstance(features.get(k), list) for k in ("categorical", "numeric")
    ):
        raise ConfigError(f"{path}: `features` needs `categorical` and `numeric` lists")
    tables = cfg["feature_tables"]
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{path}: `feature_tables` must map table names to their keys")
    for name, spec in tables.items():
        if not (isinstance(spec, dict) and _str_list(spec.get("primary_keys"))
                and isinstance(spec.get("timestamp_key"), str)):
            raise ConfigError(f"{path}: feature table {name} needs `primary_keys` (a list) and `timestamp_key`")
    keys = cfg["keys"]
    if not _str_list(keys):
        raise ConfigError(f"{path}: `keys` must be a list of column names")
    provided = set(keys)
    if not isinstance(cfg["feature_lookups"], list) or not cfg["feature_lookups"]:
        raise ConfigError(f"{path}: `feature_lookups` must be a non-empty list")
    for i, lookup in enumerate(cfg["feature_lookups"]):
        where = f"{path}: feature_lookups[{i}]"
        if not isinstance(lookup, dict) or lookup.get("table") not in tables:
            raise ConfigError(f"{where} must name a table of `feature_tables` ({', '.join(tables)})")
        spec = tables[lookup["table"]]
        if not _str_list(lookup.get("lookup_key")) or len(lookup["lookup_key"]) != len(spec["primary_keys"]):
            raise ConfigError(f"{where}: `lookup_key` must list one spine column per primary key "
                              f"{spec['primary_keys']} of {lookup['table']}")
        if not set(lookup["lookup_key"]) <= set(keys) or lookup.get("timestamp_lookup_key") not in keys:
            raise ConfigError(f"{where}: `lookup_key` and `timestamp_lookup_key` must be columns of `keys` {keys}")
        if not _str_list(lookup.get("features")):
            raise ConfigError(f"{where}: `features` must be a list of column names")
        lookback = lookup.get("lookback_hours")
        if lookback is not None and (isinstance(lookback, bool) or not isinstance(lookback, (int, float)) or lookback <= 0):
            raise ConfigError(f"{where}: `lookback_hours` must be a positive number")
        clash = provided & set(lookup["features"])
        if clash:
            raise ConfigError(f"{where}: feature(s) {', '.join(sorted(clash))} already come from `keys` or an earlier lookup")
        provided |= set(lookup["features"])
    # The functions themselves are checked where they are resolved (lib.features.on_demand.declared).
    for i, feature in enumerate(cfg.get("on_demand_features") or []):
        where = f"{path}: on_demand_features[{i}]"
        if not isinstance(feature, dict) or not isinstance(feature.get("inputs"), dict) or not isinstance(feature.get("output"), str):
            raise ConfigError(f"{where}: needs exactly function, inputs and output")
        unknown = [str(c) for c in feature["inputs"].values() if c not in provided]
        if unknown:
            raise ConfigError(f"{where}: input(s) {', '.join(unknown)} come from no lookup and are not keys")
        if feature["output"] in provided:
            raise ConfigError(f"{where}: output {feature['output']} already comes from `keys`, a lookup or another function")
        provided.add(feature["output"])
    missing = [c for c in features["categorical"] + features["numeric"] if c not in provided]
    if missing:
        raise ConfigError(f"{path}: feature(s) {', '.join(missing)} come from no lookup, no on-demand function and are not keys")


def _check_validation(validation: dict[str, Any], path: Path) -> None:
    if validation.get("mode", "enabled") not in VALIDATION_MODES:
        raise ConfigError(f"{path}: `validation.mode` must be one of {', '.join(VALIDATION_MODES)}")
    thresholds = validation.get("thresholds")
    if not isinstance(thresholds, dict) or not thresholds:
        raise ConfigError(f"{path}: `validation.thresholds` must map metric names to {{min: ...}}")
    for metric, rule in thresholds.items():
        where = f"{path}: `validation.thresholds.{metric}`"
        if metric not in METRICS:
            raise ConfigError(f"{where} names an unknown metric: use one of {', '.join(METRICS)}")
        if not isinstance(rule, dict) or not set(rule) <= {"min", "min_change_vs_champion"} or not rule:
            raise ConfigError(f"{where} must be a mapping with `min` and/or `min_change_vs_champion`")
        for key, value in rule.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}.{key} must be a number, got {value!r}")
        if rule.get("min_change_vs_champion", 1) <= 0:
            raise ConfigError(f"{where}.min_change_vs_champion must be > 0 (MLflow refuses 0; leave it out instead)")
    slices = validation.get("slices")
    if slices is not None:
        if not (isinstance(slices, dict) and _str_list(slices.get("columns")) and slices.get("metric") in METRICS
                and isinstance(slices.get("floor"), (int, float)) and isinstance(slices.get("min_rows"), int)):
            raise ConfigError(f"{path}: `validation.slices` needs `columns` (list), `metric`, `floor` and `min_rows`")
    compliance = validation.get("compliance") or {}
    if not isinstance(compliance, dict) or not isinstance(compliance.get("required_tags", []), list):
        raise ConfigError(f"{path}: `validation.compliance.required_tags` must be a list")


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def load_hyperparameters(path: str | Path | None, model_cfg: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Read a hyperparameters file (default: model.yml training.hyperparameters_file).

    Returns its path and `{algorithm, params}`; an unknown algorithm is one ConfigError line.
    """
    chosen = Path(path or model_cfg["training"]["hyperparameters_file"]).expanduser()
    if not chosen.is_absolute():
        chosen = PROJECT_DIR / chosen
    cfg = read_yaml(chosen)
    if cfg.get("algorithm") not in ALGORITHMS:
        raise ConfigError(f"{chosen}: `algorithm` must be one of {', '.join(ALGORITHMS)}, got {cfg.get('algorithm')!r}")
    params = cfg.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{chosen}: `params` must map hyperparameter names to values")
    return chosen, {"algorithm": cfg["algorithm"], "params": params}


def display_path(path: Path) -> str:
    """A path relative to the project folder when it is inside it, else absolute."""
    try:
        return Path(path).resolve().relative_to(PROJECT_DIR).as_posix()
    except ValueError:
        return Path(path).resolve().as_posix()


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
    lo, hi = window.earliest_as_of(), window.latest_as_of()
    if not lo <= as_of <= hi:
        raise ConfigError(
            f"as-of {as_of} is outside the data of environment {env_name}: choose a date from "
            f"{lo} to {hi} (data {window.start}..{window.end - dt.timedelta(days=1)}, "
            f"{window.train_days}+{window.holdout_days} days before, {window.horizon_days} after)"
        )


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


def _get(cfg: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in cfg or cfg[key] is None:
        raise ConfigError(f"{where}: `{key}` is missing")
    if not isinstance(cfg[key], kind):
        raise ConfigError(f"{where}: `{key}` must be a {kind.__name__}, got {cfg[key]!r}")
    return cfg[key]


def _identifier(cfg: dict[str, Any], key: str, where: str) -> str:
    value = _get(cfg, key, str, where)
    if not value.replace("_", "a").isalnum() or not value[0].isalpha():
        raise ConfigError(f"{where}: `{key}` {value!r} must be letters, digits and _ (a catalog-style name)")
    return value


def _date(cfg: dict[str, Any], key: str, where: str) -> dt.date:
    value = cfg.get(key)
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    raise ConfigError(f"{where}: `data.{key}` must be a YYYY-MM-DD date, got {value!r}")


def _positive_int(cfg: dict[str, Any], key: str, where: str) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where}: `data.{key}` must be a positive whole number, got {value!r}")
    return value
