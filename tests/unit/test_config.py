import datetime as dt
import shutil

import pytest

from lib.core import config
from lib.core.errors import ConfigError

D = dt.date


def write_conf(tmp_path, text):
    (tmp_path / "environments.yml").write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    "name,catalog,raw", [("dev", "dev", "prod"), ("staging", "staging", "staging"), ("prod", "prod", "prod")]
)
def test_each_environment_has_its_own_catalog(name, catalog, raw, home):
    env = config.load_env(name)
    assert (env.catalog, env.raw_catalog) == (catalog, raw)
    assert env.model_name == f"{catalog}.flights.delay_model"
    assert env.table("predictions") == f"{catalog}.flights.predictions"
    assert env.raw_table("flights") == f"{raw}.raw.flights"
    assert env.tracking_uri == f"sqlite:///{home.as_posix()}/mlflow.db"
    assert env.experiment == f"/lakehouse-mlops/{name}/delay_model"


def test_home_defaults_to_project_state_folder(monkeypatch):
    monkeypatch.delenv("LAKEHOUSE_HOME", raising=False)
    assert config.load_env("prod").home == config.PROJECT_DIR / ".lakehouse"


def test_only_staging_is_temporary():
    assert [n for n in config.environment_names() if config.load_env(n).temporary] == ["staging"]


def test_unknown_environment_names_the_choices():
    with pytest.raises(ConfigError, match=r"unknown environment 'qa': choose one of dev, staging, prod"):
        config.load_env("qa")


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"environments.yml is missing"):
        config.load_env("prod", tmp_path)


def test_malformed_yaml_names_the_line(tmp_path):
    conf = write_conf(tmp_path, "environments:\n  prod: {catalog: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d"):
        config.load_env("prod", conf)


@pytest.mark.parametrize(
    "block,message",
    [
        ("catalog: prod", "environments.prod.raw_catalog: missing (required)"),
        (
            "catalog: 'prod; drop'\n    raw_catalog: prod",
            "environments.prod.catalog: must match pattern '^[A-Za-z][A-Za-z0-9_]*$', got 'prod; drop'",
        ),
        (
            "catalog: prod\n    raw_catalog: prod\n    data: {train_days: -3}",
            "environments.prod.data.train_days: must be greater than 0, got -3",
        ),
        (
            "catalog: prod\n    raw_catalog: prod\n    data: {train_days: 1.5}",
            "environments.prod.data.train_days: must be a valid integer, got 1.5",
        ),
        (
            "catalog: prod\n    raw_catalog: prod\n    data: {start: yesterday}",
            "environments.prod.data.start: must be a YYYY-MM-DD date, got 'yesterday'",
        ),
        (
            "catalog: prod\n    raw_catalog: prod\n    notifications: {webhook_url: ftp://x}",
            "environments.prod.notifications.webhook_url: must match pattern '^https?://\\S+$', got 'ftp://x'",
        ),
        (
            "catalog: prod\n    raw_catalog: prod\n    data: {train_days: 360}",
            "environments.prod.data: 2013-01-01..2014-01-01 is too short for train_days + holdout_days + horizon_days",
        ),
        (
            "catalog: prod\n    raw_catalog: prod\n    data: {as_of: 2013-01-05}",
            "environments.prod.data.as_of: 2013-01-05 is outside the data: choose a date from 2013-05-15 to 2013-12-25",
        ),
    ],
)
def test_bad_values_are_named(tmp_path, block, message):
    base = (config.CONF_DIR / "environments.yml").read_text().split("environments:")[0]
    conf = write_conf(tmp_path, base + "environments:\n  prod:\n    " + block + "\n")
    with pytest.raises(ConfigError) as error:
        config.load_env("prod", conf)
    assert str(error.value).startswith(f"{tmp_path.resolve().as_posix()}/environments.yml: {message}")


def test_split_is_contiguous_and_half_open():
    window = config.load_env("prod").data
    w = window.split(D(2013, 10, 1))
    assert w.holdout == (D(2013, 9, 17), D(2013, 10, 1))
    assert w.train == (D(2013, 5, 20), D(2013, 9, 17))
    assert w.score == (D(2013, 10, 1), D(2013, 10, 8))


@pytest.mark.parametrize(
    "value,expected",
    [("", D(2013, 10, 1)), (None, D(2013, 10, 1)), ("2013-11-04", D(2013, 11, 4)), (D(2013, 6, 1), D(2013, 6, 1))],
)
def test_parse_as_of(value, expected):
    assert config.parse_as_of(value, config.load_env("prod")) == expected


@pytest.mark.parametrize(
    "value,message",
    [
        ("10/01/2013", "is not a date: use YYYY-MM-DD"),
        (20131001, "must be a YYYY-MM-DD date, got int"),
        ("2014-02-01", "outside the data of environment prod: choose a date from 2013-05-15 to 2013-12-25"),
        ("2013-01-05", "outside the data"),
    ],
)
def test_bad_as_of(value, message):
    with pytest.raises(ConfigError, match=message):
        config.parse_as_of(value, config.load_env("prod"))


def test_check_param():
    assert config.check_param("env", "prod", str) == "prod"
    with pytest.raises(ConfigError, match="parameter env must be str, got int 3"):
        config.check_param("env", 3, str)
    with pytest.raises(ConfigError, match="must be int, got bool"):
        config.check_param("n", True, int)


def test_model_config_is_typed(tmp_path):
    cfg = config.load_model_config()
    assert cfg.label == "delayed" and cfg.deployment.approval == "not_required"
    assert cfg.validation.thresholds["roc_auc"].min == 0.60 and cfg.validation.compliance.require_description is True
    assert cfg.inference.streaming.known_values == {"origin": ["EWR", "JFK", "LGA"]}
    (tmp_path / "model.yml").write_text("label: delayed\n")
    with pytest.raises(ConfigError, match=r"model.yml: feature_tables: missing \(required\)$"):
        config.load_model_config(tmp_path)


def test_deep_merge_keeps_sibling_keys():
    assert config.deep_merge({"a": {"x": 1, "y": 2}, "b": 1}, {"a": {"y": 3}}) == {"a": {"x": 1, "y": 3}, "b": 1}


def edited(tmp_path, name, old, new, count=1):
    """A copy of the shipped conf/ with one edit in one file (the edit must apply)."""
    conf = tmp_path / "conf"
    shutil.copytree(config.CONF_DIR, conf)
    text = (conf / name).read_text()
    assert text.count(old) >= count, old
    (conf / name).write_text(text.replace(old, new, count))
    return conf


# The typos of issue 24, each once silently ignored (or a KeyError after training), now one line.
MODEL_TYPOS = [
    ("approval: not_required", "approvel: required", "deployment.approvel: unknown key (did you mean approval?)"),
    (
        "require_description: true",
        "require_descripton: true",
        "validation.compliance.require_descripton: unknown key (did you mean require_description?)",
    ),
    ("min_improvement: 0.0 ", "min_improvment: 0.01 ", "deployment.min_improvment: unknown key (did you mean min_improvement?)"),
    # a wrong type, a value out of range
    ("decision_threshold: 0.5 ", "decision_threshold: high ", "inference.decision_threshold: must be a valid number, got 'high'"),
    (
        "decision_threshold: 0.5 ",
        "decision_threshold: 1.5 ",
        "inference.decision_threshold: must be less than or equal to 1, got 1.5",
    ),
]
ENV_TYPOS = [
    (
        "      enabled: true\n      flush_seconds",
        "      enabeld: false\n      flush_seconds",
        "defaults.serving.capture.enabeld: unknown key (did you mean enabled?)",
    ),
    (
        "    webhook_url: null",
        "    webhok_url: https://hooks.example.com/x",
        "defaults.notifications.webhok_url: unknown key (did you mean webhook_url?)",
    ),
    ("  temporary: false", "  temporay: false", "defaults.temporay: unknown key (did you mean temporary?)"),
    ("    temporary: true", "    temporay: true", "environments.staging.temporay: unknown key (did you mean temporary?)"),
    (
        "    serving: {port: 8781}",
        "    serving: {port: '8781'}",
        "environments.staging.serving.port: must be a valid integer, got '8781'",
    ),
    (
        "    serving: {port: 8781}",
        "    serving: {port: 70000}",
        "environments.staging.serving.port: must be less than or equal to 65535, got 70000",
    ),
]


@pytest.mark.parametrize("old,new,message", MODEL_TYPOS)
def test_a_model_yml_mistake_is_one_line_naming_file_and_key(tmp_path, old, new, message):
    conf = edited(tmp_path, "model.yml", old, new)
    with pytest.raises(ConfigError) as error:
        config.load_model_config(conf)
    assert str(error.value) == f"{conf.resolve().as_posix()}/model.yml: {message}"


@pytest.mark.parametrize("old,new,message", ENV_TYPOS)
def test_an_environments_yml_mistake_is_one_line_naming_file_and_key(tmp_path, old, new, message):
    conf = edited(tmp_path, "environments.yml", old, new)
    with pytest.raises(ConfigError) as error:
        config.load_env("staging", conf)
    assert str(error.value) == f"{conf.resolve().as_posix()}/environments.yml: {message}"


def test_a_file_inside_the_project_is_named_relative_to_it():
    inside = config.PROJECT_DIR / "conf" / "model.yml"
    assert config.display_path(inside) == "conf/model.yml"
    with pytest.raises(ConfigError, match=r"^conf/model.yml: label: missing \(required\)$"):
        config.parse_model(config.ModelConfig, {}, str(inside))


@pytest.mark.parametrize(
    "edit,message",
    [
        (
            ("roc_auc: {min: 0.60}", "roc_aux: {min: 0.60}"),
            "validation.thresholds.roc_aux: unknown key: use one of roc_auc, accuracy, precision, recall, f1, log_loss, "
            "rmse, mse, mae, mape, r2 (did you mean roc_auc?)",
        ),
        (
            ("roc_auc: {min: 0.60}", "roc_auc: {min: high}"),
            "validation.thresholds.roc_auc.min: must be a valid number, got 'high'",
        ),
        (
            ("roc_auc: {min: 0.60}", "roc_auc: {min_change_vs_champion: 0}"),
            "validation.thresholds.roc_auc.min_change_vs_champion: must be > 0 (MLflow refuses 0; leave it out instead), got 0",
        ),
        (("roc_auc: {min: 0.60}", "roc_auc: 0.60"), "validation.thresholds.roc_auc: must be a mapping, got 0.6"),
        (
            ("roc_auc: {min: 0.60}", "roc_auc: {}"),
            "validation.thresholds.roc_auc: needs `min`, `max` and/or `min_change_vs_champion`",
        ),
        (
            ("roc_auc: {min: 0.60}", "roc_auc: {min: 0.8, max: 0.7}"),
            "validation.thresholds.roc_auc: `min` 0.8 is above `max` 0.7: no value can pass",
        ),
        # a metric of the other problem type
        (
            ("roc_auc: {min: 0.60}", "rmse: {max: 3}"),
            "validation.thresholds.rmse: rmse is not a metric of problem_type binary_classification: "
            "use one of roc_auc, accuracy, precision, recall, f1, log_loss",
        ),
        (
            ("metric: roc_auc                 #", "metric: mae                     #"),
            "deployment.metric: mae is not a metric of problem_type binary_classification",
        ),
        (("    metric: roc_auc\n    min: 0.52", "    metric: r2\n    min: 0.52"), "validation.slices.metric: r2 is not a metric"),
        (
            ("metric: roc_auc                 #", "metric: auc                     #"),
            "deployment.metric: must be one of roc_auc, accuracy, precision, recall, f1, log_loss, rmse, mse, mae, mape, r2, "
            "got 'auc' (did you mean roc_auc?)",
        ),
        # slices: min | max (the old `floor` is gone)
        (("    min: 0.52", "    floor: 0.52"), "validation.slices.floor: unknown key"),
        (("    min: 0.52\n", ""), "validation.slices: needs `min` and/or `max`"),
        (("    min: 0.52", "    max: 0.5\n    min: 0.52"), "validation.slices: `min` 0.52 is above `max` 0.5"),
        # the first deployment's baseline
        (
            ("    kind: rule", "    kind: rules"),
            "deployment.baseline: Input tag 'rules' found using 'kind' does not match any of the expected tags: "
            "'rule', 'mean', 'median', 'group_mean', 'none'",
        ),
        (("    kind: rule\n", "    kind: group_mean\n    by: tail\n"), "deployment.baseline.group_mean.expr: unknown key"),
        (
            ("approval: not_required", "approval: requird"),
            "deployment.approval: must be one of not_required, required, got 'requird' (did you mean required?)",
        ),
        (("mode: enabled", "mode: strict"), "validation.mode: must be one of enabled, dry_run, disabled, got 'strict'"),
        (
            ("categorical: [carrier, origin, dest]", "categorical: [carrier, origin, dest, tail]"),
            "features: feature(s) tail come from no lookup, no on-demand function and are not keys",
        ),
        (
            ("  - table: weather_features", "  - table: weather_feature"),
            "feature_lookups.1.table: 'weather_feature' is not a table of feature_tables (flight_features, weather_features) "
            "(did you mean weather_features?)",
        ),
        (("lookup_key: [origin]", "lookup_key: [dest]"), "feature_lookups.1.lookup_key: must be columns of `keys`"),
        (
            ("lookup_key: [origin]", "lookup_key: [origin, flight_id]"),
            "feature_lookups.1.lookup_key: must list one spine column per primary key ['origin'] of weather_features",
        ),
        (("lookback_hours: 3", "lookback_hours: -1"), "feature_lookups.1.lookback_hours: must be greater than 0, got -1"),
        (
            ("features: [temp, dewp,", "features: [carrier, temp, dewp,"),
            "feature_lookups.1.features: feature(s) carrier already come from `keys` or an earlier lookup",
        ),
        (
            ("inputs: {distance: distance}", "inputs: {distance: miles}"),
            "on_demand_features.2.inputs: input(s) miles come from no lookup and are not keys",
        ),
        (
            ("output: hour_of_week}", "output: dep_hour}"),
            "on_demand_features.0.output: dep_hour already comes from `keys`, a lookup or another function",
        ),
        ((", output: hour_of_week}", "}"), "on_demand_features.0.output: missing (required)"),
        (
            ("{function: flights_features:distance_bucket,", "{function: flights_features.distance_bucket,"),
            "on_demand_features.2.function: must be a built-in function's name or module:function, "
            "got 'flights_features.distance_bucket'",
        ),
        (
            ("inputs: {ts: sched_dep_ts}, output: hour_of_week}", "inputs: [sched_dep_ts], output: hour_of_week}"),
            "on_demand_features.0.inputs: must be a mapping, got ['sched_dep_ts']",
        ),
        # the declared tables and labels: what their select makes
        (
            ("    select: [flight_id, sched_dep_ts, origin,", "    select: [flight_id, origin,"),
            "feature_tables.flight_features.select: makes no column sched_dep_ts (the timestamp key)$",
        ),
        (
            ("    select: [origin, observed_at,", "    select: [upper(origin), observed_at,"),
            "feature_tables.weather_features.select: makes no column origin (a primary key); the name of 'upper(origin)' "
            "could not be read: end it with `AS <name>`$",
        ),
        (
            ("    source: weather\n", ""),
            "feature_tables.weather_features: needs `source` and `select`$",
        ),
        (
            ("CAST(arr_delay > 15 AS int) AS delayed]", "CAST(arr_delay > 15 AS int) AS late]"),
            "labels.select: makes no column delayed (the label)$",
        ),
        (
            ("  select: [flight_id, origin, sched_dep_ts, CAST", "  select: [flight_id, sched_dep_ts, CAST"),
            "labels.select: makes no column origin (a column of `keys`)$",
        ),
        (("  filter: arr_delay IS NOT NULL\n", "  filtr: arr_delay IS NOT NULL\n"), "labels.filtr: unknown key"),
    ],
)
def test_model_config_cross_checks_are_one_line(tmp_path, edit, message):
    conf = edited(tmp_path, "model.yml", *edit)
    with pytest.raises(ConfigError) as error:
        config.load_model_config(conf)
    expected = f"{conf.resolve().as_posix()}/model.yml: {message.removesuffix('$')}"
    assert str(error.value) == expected if message.endswith("$") else str(error.value).startswith(expected)


@pytest.mark.parametrize(
    "edit,message",
    [
        (
            ("  id: flight_id ", "  id: tail_id "),
            "spine.id: 'tail_id' is not one of `keys` ['flight_id', 'origin', 'sched_dep_ts']",
        ),
        (("  timestamp: sched_dep_ts ", "  timestamp: dep_ts "), "spine.timestamp: 'dep_ts' is not one of `keys`"),
        (
            ("  table: flight_features ", "  table: flight_feature "),
            "spine.table: 'flight_feature' is not a table of feature_tables (flight_features, weather_features) "
            "(did you mean flight_features?)",
        ),
        (
            ("  table: flight_features ", "  table: weather_features "),
            "spine.table: weather_features is keyed by ['origin'] at observed_at, not by [flight_id] at sched_dep_ts",
        ),
    ],
)
def test_the_spine_is_a_table_keyed_by_its_id_and_timed_by_its_timestamp(tmp_path, edit, message):
    conf = edited(tmp_path, "model.yml", *edit)
    with pytest.raises(ConfigError) as error:
        config.load_model_config(conf)
    assert str(error.value).startswith(f"{conf.resolve().as_posix()}/model.yml: {message}")


@pytest.mark.parametrize(
    "baseline,message",
    [
        ({"kind": "mean"}, None),
        ({"kind": "none"}, None),
        ({"kind": "group_mean", "by": "carrier"}, None),
        ({"kind": "group_mean", "by": "carier"}, "deployment.baseline.by: 'carier' is not a key nor a looked-up feature"),
        ({"kind": "group_mean", "by": "hour_of_week"}, "deployment.baseline.by: 'hour_of_week' is not a key nor"),
        ({"kind": "median", "expr": "1"}, "deployment.baseline.median.expr: unknown key"),
        ({"kind": "rule", "expr": ""}, "deployment.baseline.rule.expr: "),
    ],
)
def test_baseline_kinds(baseline, message):
    raw = config.load_model_config().model_dump(mode="json")
    raw["deployment"]["baseline"] = baseline
    if message is None:
        assert config.parse_model(config.ModelConfig, raw, "model.yml").deployment.baseline.kind == baseline["kind"]
        return
    with pytest.raises(ConfigError) as error:
        config.parse_model(config.ModelConfig, raw, "model.yml")
    assert str(error.value).startswith(f"model.yml: {message}")


@pytest.mark.parametrize(
    "text,message",
    [
        (
            "algorithm: xgboost\nparams: {}\n",
            "algorithm: must be one of hist_gradient_boosting, logistic_regression, ridge, got 'xgboost'",
        ),
        ("algorithm: logistic_regression\nparams: [1, 2]\n", "params: must be a mapping, got [1, 2]"),
        ("algorithm: logistic_regression\nparms: {C: 1}\n", "parms: unknown key (did you mean params?)"),
    ],
)
def test_hyperparameters_file_is_checked(tmp_path, text, message):
    (tmp_path / "h.yml").write_text(text)
    with pytest.raises(ConfigError) as error:
        config.load_hyperparameters(tmp_path / "h.yml", config.load_model_config())
    assert str(error.value) == f"{(tmp_path / 'h.yml').resolve().as_posix()}: {message}"


def test_hyperparameters_default_to_the_production_file():
    path, hyper = config.load_hyperparameters("", config.load_model_config())
    assert path == config.CONF_DIR / "hyperparameters.yml" and hyper.algorithm == "hist_gradient_boosting"
    assert config.display_path(path) == "conf/hyperparameters.yml"


def test_the_conf_folder_comes_from_lakehouse_conf(tmp_path, monkeypatch):
    conf = edited(tmp_path, "model.yml", "label: delayed", "label: arr_delay")
    monkeypatch.delenv(config.CONF_ENV_VAR, raising=False)
    assert config.conf_dir() == config.CONF_DIR and config.load_model_config().label == "delayed"
    monkeypatch.setenv(config.CONF_ENV_VAR, str(conf))
    assert config.conf_dir() == conf.resolve() and config.load_model_config().label == "arr_delay"
