"""Bring your own dataset: `run_pipeline.py --init DIR --from FILE`, then the whole workflow on
the project it wrote, through run_pipeline.py with real Spark, Delta, MLflow and HTTP.

- a generated CSV (an id, a date, a category, numbers, a numeric target with signal) in prod;
- the shipped regression example, examples/seattle_weather (vega-datasets' seattle-weather.csv,
  made by --init), in staging, as CI's integration run runs it.
"""

import datetime as dt
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lib.core.config import PROJECT_DIR, load_env
from lib.core.config.environment import EnvConfig
from lib.core.config.sources import load_sources
from lib.core.names import CHAMPION
from lib.features import readers
from lib.platform import registry
from lib.platform.catalog import Lakehouse
from lib.serving import server, settings
from lib.serving.client import Client

EXAMPLE = PROJECT_DIR / "examples" / "seattle_weather"
REGRESSION_QUALITY = [
    "mean_squared_error",
    "root_mean_squared_error",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "r2_score",
]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "run_pipeline.py", *args],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ},
    )


def orders_csv(path, rows: int = 3000, days: int = 120) -> pd.DataFrame:
    """Orders over `days` days; units fall with the price, rise with a promotion and in the north store."""
    rng = np.random.default_rng(11)
    day = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, days, rows), unit="D")
    frame = pd.DataFrame(
        {
            "order_id": [f"o{i:05d}" for i in range(rows)],
            "order_date": day.strftime("%Y-%m-%d"),
            "store": rng.choice(["north", "south", "east"], rows),
            "price": rng.uniform(1, 10, rows).round(2),
            "promo": rng.integers(0, 2, rows),
        }
    )
    frame["units"] = (
        50 - 3 * frame["price"] + 10 * frame["promo"] + np.where(frame["store"] == "north", 8, 0) + rng.normal(0, 2, rows)
    ).round(1)
    frame.to_csv(path, index=False)
    return frame


def scored_rows(frame: pd.DataFrame, timestamp: str, env: EnvConfig, fmt: str | None = None) -> int:
    """The file's rows in the environment's scored period, counted with pandas."""
    start, end = env.data.split(env.data.as_of).score
    day = pd.to_datetime(frame[timestamp], format=fmt).dt.date
    return int(((day >= start) & (day < end)).sum())


def check_run(spark, env: EnvConfig, result: subprocess.CompletedProcess, scored: int, drift_column: str) -> Lakehouse:
    """What every whole-workflow run leaves: a Champion, predictions, profile and drift metrics, a dashboard."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for task in ["ingest", "features", "train", "validate", "deploy", "serve", "batch_inference", "monitoring"]:
        assert any(line.strip().startswith(f"{task} ") and " ok " in f"{line} " for line in result.stdout.splitlines()), task
    registry.configure(env)
    assert registry.version_of(env.model_name, CHAMPION) == registry.ModelRef(env.model_name, "1")
    lakehouse = Lakehouse(spark, env)
    predictions = lakehouse.read(env.table("predictions"))
    assert predictions.count() == scored
    assert predictions.where("prediction IS NULL").count() == 0 and "predicted_class" not in predictions.columns
    horizon = env.data.horizon_days
    days = lakehouse.read(env.table("predictions_profile_metrics")).where(
        "granularity = '1 day' AND column_name = ':table' AND slice_key IS NULL AND log_type = 'INPUT'"
    )
    assert days.count() == horizon
    drift = lakehouse.read(env.table("predictions_drift_metrics")).where(
        f"drift_type = 'BASELINE' AND granularity = '1 day' AND slice_key IS NULL AND column_name = '{drift_column}'"
    )
    assert drift.count() == horizon
    assert [p.name for p in (env.home / "dashboards" / env.name).glob("*.html")] != []
    return lakehouse


@pytest.mark.slow
def test_one_csv_becomes_a_served_regression_model_in_prod(spark, home, tmp_path):
    frame = orders_csv(tmp_path / "orders.csv")
    folder = tmp_path / "shop"
    made = run("--init", str(folder), "--from", str(tmp_path / "orders.csv"), "--label", "units")
    assert made.returncode == 0, made.stderr
    assert "label units (regression), timestamp order_date, id order_id" in made.stdout

    result = run("--conf", str(folder), "--env", "prod")
    prod = load_env("prod", folder)
    lakehouse = check_run(spark, prod, result, scored_rows(frame, "order_date", prod), "price")

    # The scored days' labels are known a horizon later: monitoring as of then profiles the model's quality.
    later = prod.data.as_of + dt.timedelta(days=prod.data.horizon_days)
    monitored = run("--conf", str(folder), "--env", "prod", "--job", "monitoring", "--as-of", later.isoformat())
    assert monitored.returncode == 0, monitored.stdout[-3000:] + monitored.stderr[-3000:]
    days = lakehouse.read(prod.table("predictions_profile_metrics")).where(
        "granularity = '1 day' AND column_name = ':table' AND slice_key IS NULL AND log_type = 'INPUT'"
    )
    quality = days.select(*REGRESSION_QUALITY).toPandas()
    assert len(quality) == prod.data.horizon_days and quality.notna().all().all(), quality
    assert (quality["root_mean_squared_error"] < frame["units"].std()).all(), quality  # better than the label's mean

    # The endpoint answers a request by id (and its date) with a number: the one batch inference wrote for that row.
    cfg = settings.load(prod)
    api = Client(server.find(cfg).url, cfg.token())
    assert f"Serving: {api.url}/serving-endpoints/shop/invocations" in result.stdout
    scored = lakehouse.read(prod.table("predictions")).orderBy("order_id").select("order_id", "prediction").first()
    row = frame.set_index("order_id").loc[scored["order_id"]]
    request = {"dataframe_records": [{"order_id": scored["order_id"], "order_date": row["order_date"]}]}
    status, headers, answer = api.query("shop", request)
    assert (status, headers["served-model-name"]) == (200, "prod.shop.shop_model-1")
    assert answer["predictions"] == [pytest.approx(scored["prediction"])]
    # It learnt the signal: closer to the truth than the spread of the label.
    assert abs(scored["prediction"] - row["units"]) < frame["units"].std()


@pytest.mark.slow
def test_the_seattle_weather_example_runs_whole_in_staging(spark, home):
    result = run("--conf", str(EXAMPLE), "--env", "staging")
    staging = load_env("staging", EXAMPLE)
    frame = pd.read_csv(readers.files(load_sources(EXAMPLE)["seattle_weather"])[0])
    check_run(spark, staging, result, scored_rows(frame, "date", staging, "%Y/%m/%d"), "temp_min")
