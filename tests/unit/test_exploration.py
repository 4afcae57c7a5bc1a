import pytest

from lib.core.config.model import Labels
from lib.core.errors import ConfigError
from lib.lifecycle import exploration


def test_delay_rates_ignore_flights_that_never_arrived(spark):
    flights = spark.createDataFrame(
        [("EWR", 30.0), ("EWR", 5.0), ("EWR", None), ("JFK", 16.0), ("JFK", 15.0)], "origin string, arr_delay double"
    )
    labels = Labels(source="flights", filter="arr_delay IS NOT NULL", select=["origin", "CAST(arr_delay > 15 AS int) AS delayed"])
    rows = [tuple(r) for r in exploration.delay_rates(flights, "origin", labels, "delayed").collect()]
    assert rows == [("EWR", 2, 0.5), ("JFK", 2, 0.5)]


def test_windows_hold_out_the_last_days():
    import datetime as dt

    from lib.lifecycle import exploration

    assert exploration.windows("2013-07-01", "2013-10-01", 14) == (
        (dt.date(2013, 7, 1), dt.date(2013, 9, 17)),
        (dt.date(2013, 9, 17), dt.date(2013, 10, 1)),
    )
    with pytest.raises(ConfigError, match="too short to hold out 14 days"):
        exploration.windows("2013-09-20", "2013-10-01", 14)
    with pytest.raises(ConfigError, match="explore_to 2013-10-01 reaches into production's held-out window"):
        exploration.windows("2013-07-01", "2013-10-01", 14, before=dt.date(2013, 9, 17))
    with pytest.raises(ConfigError, match="must be YYYY-MM-DD dates"):
        exploration.windows("July", "2013-10-01", 14)


def test_written_hyperparameters_load_back(tmp_path):
    from lib.core import config
    from lib.lifecycle import exploration

    path = exploration.write_hyperparameters(exploration.CANDIDATES["logistic_regression"], tmp_path / "h.yml", "a note")
    assert config.load_hyperparameters(path, config.load_model_config()) == (path, exploration.CANDIDATES["logistic_regression"])
    assert "# Written by notebooks/dev/explore_flights.ipynb: a note" in path.read_text()


def test_a_relative_target_is_in_the_conf_folder_the_training_reads(tmp_path, monkeypatch):
    import shutil

    from lib.core import config
    from lib.lifecycle import exploration

    shutil.copytree(config.CONF_DIR, tmp_path / "conf")
    monkeypatch.setenv(config.CONF_ENV_VAR, str(tmp_path / "conf"))
    path = exploration.write_hyperparameters(exploration.CANDIDATES["logistic_regression"], "hyperparameters.yml", "a note")
    assert path == (tmp_path / "conf" / "hyperparameters.yml").resolve()
    assert config.load_hyperparameters("", config.load_model_config()) == (path, exploration.CANDIDATES["logistic_regression"])
    assert config.load_hyperparameters("", config.load_model_config(config.CONF_DIR))[1].algorithm == "hist_gradient_boosting"


def test_candidates_rank_by_the_deployment_metric_in_its_direction():
    import pandas as pd

    results = pd.DataFrame({"candidate": ["a", "b", "c"], "algorithm": ["x"] * 3, "log_loss": [0.6, float("nan"), 0.5]})
    assert list(exploration.rank(results, "log_loss")["candidate"]) == ["c", "a", "b"]  # lowest first, unmeasured last
    auc = results.rename(columns={"log_loss": "roc_auc"})
    assert list(exploration.rank(auc, "roc_auc")["candidate"]) == ["a", "c", "b"]  # highest first
