import pytest

from lib.core.errors import ConfigError
from lib.lifecycle import exploration


def test_label_by_a_column_counts_rows_and_averages_the_label():
    import pandas as pd

    frame = pd.DataFrame({"site": ["b", "a", "a", None, "b", "b"], "late": [1, 0, 1, 1, 0, 0]})
    rows = exploration.label_by(frame, "site", "late").to_dict("records")
    assert rows[:2] == [{"site": "a", "rows": 2, "mean_late": 0.5}, {"site": "b", "rows": 3, "mean_late": 0.3333}]
    assert rows[2]["rows"] == 1 and rows[2]["mean_late"] == 1.0 and pd.isna(rows[2]["site"])  # missing values: one group


def test_the_candidates_fit_their_problem_type_and_the_best_is_written_by_the_ranking_metric(tmp_path, model_cfg):
    from lib.core.config.model import ALGORITHMS_OF

    for kind, candidates in exploration.CANDIDATES.items():
        assert {h.algorithm for h in candidates.values()} <= set(ALGORITHMS_OF[kind])
    import pandas as pd

    results = pd.DataFrame(
        [
            {"candidate": "hgb_default", "algorithm": "hist_gradient_boosting", "accuracy": 0.9, "roc_auc": 0.61, "run_id": "a"},
            {"candidate": "hgb_slow_deep", "algorithm": "hist_gradient_boosting", "accuracy": 0.5, "roc_auc": 0.66, "run_id": "b"},
        ]
    )
    ranked = exploration.rank(results, "roc_auc")
    path = exploration.write_best(ranked, str(tmp_path / "h.yml"), model_cfg)
    assert "hgb_slow_deep, held-out roc_auc 0.6600 (run b)" in path.read_text()  # not the accuracy column before it


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

    path = exploration.write_hyperparameters(exploration.CANDIDATES["binary_classification"]["logistic_regression"], tmp_path / "h.yml", "a note")
    assert config.load_hyperparameters(path, config.load_model_config()) == (path, exploration.CANDIDATES["binary_classification"]["logistic_regression"])
    assert "# Written by notebooks/dev/explore.ipynb: a note" in path.read_text()


def test_a_relative_target_is_in_the_conf_folder_the_training_reads(tmp_path, monkeypatch):
    import shutil

    from lib.core import config
    from lib.lifecycle import exploration

    shutil.copytree(config.CONF_DIR, tmp_path / "conf")
    monkeypatch.setenv(config.CONF_ENV_VAR, str(tmp_path / "conf"))
    path = exploration.write_hyperparameters(exploration.CANDIDATES["binary_classification"]["logistic_regression"], "hyperparameters.yml", "a note")
    assert path == (tmp_path / "conf" / "hyperparameters.yml").resolve()
    assert config.load_hyperparameters("", config.load_model_config()) == (path, exploration.CANDIDATES["binary_classification"]["logistic_regression"])
    assert config.load_hyperparameters("", config.load_model_config(config.CONF_DIR))[1].algorithm == "hist_gradient_boosting"


def test_candidates_rank_by_the_deployment_metric_in_its_direction():
    import pandas as pd

    results = pd.DataFrame({"candidate": ["a", "b", "c"], "algorithm": ["x"] * 3, "log_loss": [0.6, float("nan"), 0.5]})
    assert list(exploration.rank(results, "log_loss")["candidate"]) == ["c", "a", "b"]  # lowest first, unmeasured last
    auc = results.rename(columns={"log_loss": "roc_auc"})
    assert list(exploration.rank(auc, "roc_auc")["candidate"]) == ["a", "c", "b"]  # highest first
