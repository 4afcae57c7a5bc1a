"""`run_pipeline.py --init DIR --from FILE`: a file's columns sorted into label, timestamp, id and
features (lib/bundle/dataset.py), the data windows, the refusals, and the config folder it writes
(lib/bundle/scaffold.py), which validates as `--validate --conf DIR` does."""

import datetime as dt
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lib.bundle import scaffold
from lib.bundle.dataset import inspect
from lib.core import config
from lib.core.config.sources import load_sources
from lib.core.errors import ConfigError
from lib.features.readers import package_file


def orders(n: int = 60, days: int = 30, **extra) -> pd.DataFrame:
    """n orders over `days` days: an id, a date, a store, a price, a promo and units that depend on them."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "order_id": [f"o{i:04d}" for i in range(n)],
            "order_date": [(dt.date(2024, 1, 1) + dt.timedelta(days=i % days)).isoformat() for i in range(n)],
            "store": rng.choice(["north", "south"], n),
            "price": rng.uniform(1, 10, n).round(2),
            "promo": rng.integers(0, 2, n),
        }
    )
    frame["units"] = (50 - 3 * frame["price"] + 10 * frame["promo"]).round(1)
    for name, values in extra.items():
        frame[name] = values
    return frame


def write(tmp_path: Path, frame: pd.DataFrame, name: str = "orders.csv") -> Path:
    path = tmp_path / name
    frame.to_parquet(path) if name.endswith(".parquet") else frame.to_csv(path, index=False)
    return path


def test_a_numeric_label_is_a_regression_and_the_rest_is_sorted_by_kind(tmp_path):
    data = inspect(write(tmp_path, orders()), label="units")
    assert (data.problem_type, data.label_expr) == ("regression", "CAST(units AS double) AS units")
    assert (data.timestamp, data.reader_options, data.id, data.id_from) == ("order_date", {}, "order_id", None)
    assert (data.categorical, data.numeric, data.dropped) == (["store"], ["price", "promo"], {})
    assert (data.start, data.end, data.rows) == (dt.date(2024, 1, 1), dt.date(2024, 1, 31), 60)
    assert data.label_std == pytest.approx(orders()["units"].std())


@pytest.mark.parametrize(
    "values,expr",
    [
        ([0, 1], "CAST(label AS int) AS label"),
        ([True, False], "CAST(label AS int) AS label"),
        (["no", "yes"], "CAST(CAST(label AS string) = 'yes' AS int) AS label"),
        (["ok", "late", "ok"], "CAST(CAST(label AS string) = 'late' AS int) AS label"),  # the rarer value
    ],
)
def test_a_two_valued_label_is_a_binary_classification(tmp_path, values, expr):
    frame = orders().drop(columns="units")
    frame["label"] = [values[i % len(values)] for i in range(len(frame))]
    data = inspect(write(tmp_path, frame))  # a column named `label` needs no --label
    assert (data.problem_type, data.label_expr, data.label) == ("binary_classification", expr, "label")


def test_slash_dates_are_read_with_a_reader_option_and_no_id_column_means_a_generated_one(tmp_path):
    frame = orders().drop(columns="order_id")
    frame["order_date"] = frame["order_date"].str.replace("-", "/")
    data = inspect(write(tmp_path, frame), label="units")
    assert (data.timestamp, data.reader_options) == ("order_date", {"dateFormat": "yyyy/MM/dd"})
    # date + store repeat (60 rows, 30 days, 2 stores): the id hashes every column instead.
    assert (data.id, data.id_from) == ("row_id", ["order_date", "store", "price", "promo", "units"])
    unique = frame.drop_duplicates(["order_date", "store"])
    assert inspect(write(tmp_path, unique), label="units").id_from == ["order_date", "store"]


def test_a_non_unique_id_named_column_is_a_feature_and_useless_columns_are_dropped(tmp_path):
    frame = orders(store_id=[i % 3 for i in range(60)], channel="web", shipped_on="2024-02-01", note=[f"n{i}" for i in range(60)])
    data = inspect(write(tmp_path, frame), label="units", timestamp="order_date")
    assert data.id == "order_id" and "store_id" in data.numeric
    assert data.dropped == {
        "shipped_on": "a second date column (the timestamp is order_date)",
        "channel": "one value only",
        "note": "60 distinct values: too many to encode as a category",
    }


def test_parquet_timestamps_are_native(tmp_path):
    frame = orders()
    frame["order_date"] = pd.to_datetime(frame["order_date"]) + pd.Timedelta(hours=13)
    data = inspect(write(tmp_path, frame, "orders.parquet"), label="units")
    assert (data.format, data.timestamp, data.reader_options, data.end) == ("parquet", "order_date", {}, dt.date(2024, 1, 31))


@pytest.mark.parametrize(
    "change,kwargs,message",
    [
        (lambda f: f, {}, "choose the label with --label COL: no single column is named label or target (columns: order_id,"),
        (lambda f: f, {"label": "sales"}, "--label sales is not a column of the file (columns: order_id, order_date,"),
        (
            lambda f: f.assign(units=["a", "b", "c"] * 20),
            {"label": "units"},
            "label units has 3 distinct value(s) (a, b, c): --init makes a regression (a numeric label) or a binary",
        ),
        (
            lambda f: f.assign(order_date="soon"),
            {"label": "units"},
            "no column holds dates (ISO 2024-01-31[ 13:45:00], 2024/01/31",
        ),
        (
            lambda f: f.assign(paid_on=f["order_date"]),
            {"label": "units"},
            "several columns hold dates (order_date, paid_on): choose",
        ),
        (lambda f: f, {"label": "units", "timestamp": "store"}, "--timestamp store: its values are not dates or date-times"),
        (lambda f: f, {"label": "units", "id_": "store"}, "--id store: 58 repeated and 0 empty values"),
        (
            lambda f: pd.concat([f, f]).drop(columns="order_id"),
            {"label": "units"},
            "the file has 60 duplicate rows and no id column: remove them or give --id COL",
        ),
        (
            lambda f: f.rename(columns={"price": "unit price"}),
            {"label": "units"},
            "column names must be letters, digits and _ (rename unit price)",
        ),
        (
            lambda f: f[["order_id", "order_date", "units"]],
            {"label": "units"},
            "no column is left as a feature besides units, order_date",
        ),
    ],
)
def test_what_it_cannot_choose_is_one_line_naming_the_choices(tmp_path, change, kwargs, message):
    with pytest.raises(ConfigError) as failed:
        inspect(write(tmp_path, change(orders())), **kwargs)
    assert message in str(failed.value) and "\n" not in str(failed.value)


def test_windows_score_before_the_last_days_hold_out_a_tenth_and_refuse_a_short_range():
    assert scaffold.windows(dt.date(2024, 1, 1), dt.date(2024, 4, 30)) == {
        "start": dt.date(2024, 1, 1),
        "end": dt.date(2024, 4, 30),
        "as_of": dt.date(2024, 4, 22),
        "train_days": 100,
        "holdout_days": 12,
        "horizon_days": 4,
    }
    staging = scaffold.staging_window(dt.date(2024, 1, 1), dt.date(2024, 4, 30))
    assert (staging["start"], staging["train_days"], staging["holdout_days"], staging["horizon_days"]) == (
        dt.date(2024, 3, 31),
        25,
        3,
        1,
    )
    with pytest.raises(
        ConfigError, match=r"^the file's dates span 9 day\(s\) \(2024-01-01..2024-01-09\): --init needs at least 10"
    ):
        scaffold.windows(dt.date(2024, 1, 1), dt.date(2024, 1, 10))


def test_init_writes_a_project_that_validates(tmp_path):
    lines: list[str] = []
    folder = tmp_path / "My Shop"
    written = scaffold.init(folder, write(tmp_path, orders()), label="units", say=lines.append)
    assert sorted(p.name for p in written) == sorted(
        ["sources.yml", "model.yml", "hyperparameters.yml", "environments.yml", "monitors.yml", "alerts.yml", "jobs.yml"]
    )
    for path in written:  # each names its schema, which exists from DIR
        first = path.read_text().split("\n", 1)[0]
        schema = first.removeprefix("# yaml-language-server: $schema=")
        assert schema != first and (folder / schema).resolve() == config.CONF_DIR / "schemas" / f"{path.stem}.json"
    assert load_sources(folder)["my_shop"].path == str(tmp_path / "orders.csv")  # referenced, relative to DIR
    env = config.load_env("prod", folder)
    assert (env.schema, env.model, env.endpoint, env.serving.port) == ("my_shop", "my_shop_model", "my-shop", 0)
    model = yaml.safe_load((folder / "model.yml").read_text())
    assert model["deployment"]["baseline"] == {"kind": "mean"} and model["validation"]["thresholds"] == {"r2": {"min": 0.0}}
    monitors = yaml.safe_load((folder / "monitors.yml").read_text())["monitors"]
    assert monitors["predictions"]["problem_type"] == "PROBLEM_TYPE_REGRESSION"
    assert lines[0].startswith("inspected ") and lines[-1].endswith(f"--conf {shlex.quote(str(folder))} --env prod --history")

    with pytest.raises(ConfigError, match=r"^--init .*My Shop: exists and is not an empty folder: give a new folder$"):
        scaffold.init(folder, tmp_path / "orders.csv", label="units", say=lines.append)


def test_a_file_of_an_installed_package_is_referenced_by_package(tmp_path):
    path = package_file("vega_datasets", "_data/seattle-weather.csv")
    scaffold.init(tmp_path / "seattle", path, label="temp_max", say=lambda line: None)
    source = yaml.safe_load((tmp_path / "seattle" / "sources.yml").read_text())["sources"]["seattle"]
    assert (source["package"], source["path"], source["options"]) == (
        "vega_datasets",
        "_data/seattle-weather.csv",
        {"dateFormat": "yyyy/MM/dd"},
    )
    assert source["id"] == {"generate": "row_id", "from": ["date", "weather"]}


def test_the_cli_refuses_in_one_line_and_writes_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != config.CONF_ENV_VAR}
    done = subprocess.run(
        [sys.executable, "run_pipeline.py", "--init", str(tmp_path / "p"), "--from", str(write(tmp_path, orders()))],
        cwd=config.PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stderr.startswith("error: choose the label with --label COL")
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "p").exists()


def test_a_two_valued_label_makes_a_classification_project_that_validates(tmp_path):
    frame = orders().assign(late=["yes", "no", "no"] * 20).drop(columns="units")
    scaffold.init(tmp_path / "late", write(tmp_path, frame), label="late", say=lambda line: None)
    model = yaml.safe_load((tmp_path / "late" / "model.yml").read_text())
    assert model["labels"]["select"][-1] == "CAST(CAST(late AS string) = 'yes' AS int) AS late"
    assert (model["deployment"]["metric"], model["deployment"]["baseline"]) == ("roc_auc", {"kind": "none"})
    monitor = yaml.safe_load((tmp_path / "late" / "monitors.yml").read_text())["monitors"]["predictions"]
    assert monitor["problem_type"] == "PROBLEM_TYPE_CLASSIFICATION" and "predicted_class" in monitor["exclude_columns"]
    alert = yaml.safe_load((tmp_path / "late" / "alerts.yml").read_text())["alerts"][0]
    assert alert["condition"] == {"op": "<", "threshold": 0.55} and "roc_auc AS value" in alert["query"]


@pytest.mark.parametrize(
    "name,text,message",
    [
        ("missing.csv", None, "--from {path}: no such file"),
        ("orders.json", "{}", "--from {path}: give a .csv or .parquet file"),
        ("orders.csv", "", "--from {path}: cannot read it as csv: No columns to parse from file"),
    ],
)
def test_a_file_it_cannot_read_is_one_line(tmp_path, name, text, message):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as failed:
        inspect(path, label="units")
    assert str(failed.value) == message.format(path=path)
