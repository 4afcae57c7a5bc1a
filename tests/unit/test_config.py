import datetime as dt

import pytest

from lib.core import config
from lib.core.errors import ConfigError

D = dt.date


def write_conf(tmp_path, text):
    (tmp_path / "environments.yml").write_text(text)
    return tmp_path


@pytest.mark.parametrize("name,catalog,raw", [("dev", "dev", "prod"), ("staging", "staging", "staging"),
                                              ("prod", "prod", "prod")])
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
        config.load_env("prod", conf_dir=tmp_path)


def test_malformed_yaml_names_the_line(tmp_path):
    conf = write_conf(tmp_path, "environments:\n  prod: {catalog: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d"):
        config.load_env("prod", conf_dir=conf)


@pytest.mark.parametrize("block,message", [
    ("catalog: prod", "`raw_catalog` is missing"),
    ("catalog: 'prod; drop'\n    raw_catalog: prod", "must be letters, digits and _"),
    ("catalog: prod\n    raw_catalog: prod\n    data: {train_days: -3}", "train_days` must be a positive whole number"),
    ("catalog: prod\n    raw_catalog: prod\n    data: {start: yesterday}", "data.start` must be a YYYY-MM-DD date"),
    ("catalog: prod\n    raw_catalog: prod\n    notifications: {webhook_url: ftp://x}", "must be an http"),
])
def test_bad_values_are_named(tmp_path, block, message):
    base = (config.CONF_DIR / "environments.yml").read_text().split("environments:")[0]
    conf = write_conf(tmp_path, base + "environments:\n  prod:\n    " + block + "\n")
    with pytest.raises(ConfigError, match=message):
        config.load_env("prod", conf_dir=conf)


def test_split_is_contiguous_and_half_open():
    window = config.load_env("prod").data
    w = window.split(D(2013, 10, 1))
    assert w.holdout == (D(2013, 9, 17), D(2013, 10, 1))
    assert w.train == (D(2013, 5, 20), D(2013, 9, 17))
    assert w.score == (D(2013, 10, 1), D(2013, 10, 8))


@pytest.mark.parametrize("value,expected", [("", D(2013, 10, 1)), (None, D(2013, 10, 1)),
                                            ("2013-11-04", D(2013, 11, 4)), (D(2013, 6, 1), D(2013, 6, 1))])
def test_parse_as_of(value, expected):
    assert config.parse_as_of(value, config.load_env("prod")) == expected


@pytest.mark.parametrize("value,message", [
    ("10/01/2013", "is not a date: use YYYY-MM-DD"),
    (20131001, "must be a YYYY-MM-DD date, got int"),
    ("2014-02-01", "outside the data of environment prod: choose a date from 2013-05-15 to 2013-12-25"),
    ("2013-01-05", "outside the data"),
])
def test_bad_as_of(value, message):
    with pytest.raises(ConfigError, match=message):
        config.parse_as_of(value, config.load_env("prod"))


def test_check_param():
    assert config.check_param("env", "prod", str) == "prod"
    with pytest.raises(ConfigError, match="parameter env must be str, got int 3"):
        config.check_param("env", 3, str)
    with pytest.raises(ConfigError, match="must be int, got bool"):
        config.check_param("n", True, int)


def test_model_config_sections(tmp_path):
    cfg = config.load_model_config()
    assert cfg["label"] == "delayed"
    assert "roc_auc" in cfg["validation"]["thresholds"]
    (tmp_path / "model.yml").write_text("label: delayed\n")
    with pytest.raises(ConfigError, match="lacks the `feature_tables` section"):
        config.load_model_config(tmp_path)


def test_deep_merge_keeps_sibling_keys():
    assert config.deep_merge({"a": {"x": 1, "y": 2}, "b": 1}, {"a": {"y": 3}}) == {"a": {"x": 1, "y": 3}, "b": 1}


@pytest.mark.parametrize("edit,message", [
    (("roc_auc: {min: 0.60}", "roc_aux: {min: 0.60}"), "`validation.thresholds.roc_aux` names an unknown metric"),
    (("roc_auc: {min: 0.60}", "roc_auc: {min: high}"), "`validation.thresholds.roc_auc`.min must be a number"),
    (("roc_auc: {min: 0.60}", "roc_auc: {min_change_vs_champion: 0}"), "min_change_vs_champion must be > 0"),
    (("roc_auc: {min: 0.60}", "roc_auc: 0.60"), "must be a mapping with `min` and/or `min_change_vs_champion`"),
    (("metric: roc_auc                 #", "metric: log_loss                #"), "`deployment.metric` names unknown metric 'log_loss'"),
    (("approval: not_required", "approval: maybe"), "`deployment.approval` must be one of not_required, required"),
    (("mode: enabled", "mode: strict"), "`validation.mode` must be one of enabled, dry_run, disabled"),
    (("categorical: [carrier, origin, dest]", "categorical: [carrier, origin, dest, tail]"),
     "feature\\(s\\) tail come from no lookup, no on-demand function and are not keys"),
    (("  - table: weather_features", "  - table: climate"), "feature_lookups\\[1\\] must name a table of `feature_tables`"),
    (("lookup_key: [origin]", "lookup_key: [dest]"), "`lookup_key` and `timestamp_lookup_key` must be columns of `keys`"),
    (("lookback_hours: 3", "lookback_hours: -1"), "`lookback_hours` must be a positive number"),
    (("features: [temp, dewp,", "features: [carrier, temp, dewp,"), "feature\\(s\\) carrier already come from"),
    (("inputs: {distance: distance}", "inputs: {distance: miles}"),
     "on_demand_features\\[2\\]: input\\(s\\) miles come from no lookup and are not keys"),
    (("output: hour_of_week}", "output: dep_hour}"), "on_demand_features\\[0\\]: output dep_hour already comes from"),
])
def test_model_config_names_known_metrics(tmp_path, edit, message):
    text = (config.CONF_DIR / "model.yml").read_text()
    assert edit[0] in text
    (tmp_path / "model.yml").write_text(text.replace(*edit))
    with pytest.raises(ConfigError, match=message):
        config.load_model_config(tmp_path)


@pytest.mark.parametrize("text,message", [
    ("algorithm: xgboost\nparams: {}\n", "`algorithm` must be one of hist_gradient_boosting, logistic_regression"),
    ("algorithm: logistic_regression\nparams: [1, 2]\n", "`params` must map hyperparameter names to values"),
])
def test_hyperparameters_file_is_checked(tmp_path, text, message):
    (tmp_path / "h.yml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        config.load_hyperparameters(tmp_path / "h.yml", config.load_model_config())


def test_hyperparameters_default_to_the_production_file():
    path, hyper = config.load_hyperparameters("", config.load_model_config())
    assert path == config.CONF_DIR / "hyperparameters.yml" and hyper["algorithm"] == "hist_gradient_boosting"
    assert config.display_path(path) == "conf/hyperparameters.yml"
