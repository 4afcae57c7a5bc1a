import datetime as dt
import shutil
from datetime import date

import pandas as pd
import pytest
import yaml
from pyspark.sql import functions as F
from testbook.exceptions import TestbookRuntimeError

from lib.core import names
from lib.core.config import load_env
from lib.features import tables as features
from lib.lifecycle.evaluation import classification_metrics
from lib.lifecycle.exploration import CANDIDATES
from lib.monitoring.metrics import PROFILE_FIELDS, to_arrow
from lib.platform import registry
from lib.platform.catalog import Lakehouse

pytestmark = pytest.mark.slow


def test_dev_explores_prod_read_only_and_writes_the_chosen_hyperparameters(executed, spark, home, tmp_path, seed, model_cfg):
    prod_env = load_env("prod")
    prod = Lakehouse(spark, prod_env)
    # Prod's raw and feature tables: the seed's (Jan 1 - Mar 7), copied under prod's catalog.
    shutil.copytree(seed["warehouse"], prod_env.warehouse / prod_env.catalog)
    # The window leaves out days of prod's data at both ends, and its last 4 days are held out.
    labels = prod.read("prod.flights.labels").select("flight_id", "sched_dep_ts").toPandas()
    departs = labels["sched_dep_ts"]
    train_ids = labels.flight_id[(departs >= pd.Timestamp("2013-01-03")) & (departs < pd.Timestamp("2013-01-09"))]
    holdout_ids = labels.flight_id[(departs >= pd.Timestamp("2013-01-09")) & (departs < pd.Timestamp("2013-01-13"))]
    assert 0 < len(train_ids) + len(holdout_ids) < len(labels)
    # Prod's Champion (the seed's model) and a day of prod's monitoring: what dev reads, never changes.
    registry.configure(prod_env)
    registry.client().create_registered_model(prod_env.model_name)
    mv = registry.client().create_model_version(prod_env.model_name, source=seed["source"], tags=seed["tags"])
    champion = registry.ModelRef(prod_env.model_name, str(mv.version))
    registry.move_alias(champion, names.CHAMPION, "the test's production Champion", by="test")
    registry_before = registry.history(prod_env.model_name)
    window = {"start": dt.datetime(2013, 3, 1), "end": dt.datetime(2013, 3, 2)}
    metric_rows = [
        {
            "window": window,
            "granularity": "1 day",
            "model_id": "1",
            "column_name": ":table",
            "log_type": "INPUT",
            "count": 812,
            "labelled_count": 790,
            "accuracy": 0.81,
            "roc_auc": 0.71,
        }
    ]
    rows = spark.createDataFrame(to_arrow(pd.DataFrame(metric_rows), PROFILE_FIELDS))
    prod.write(rows.select(*[F.col(n).cast(t) for n, t in PROFILE_FIELDS]), "prod.flights.predictions_profile_metrics")
    out = tmp_path / "hyperparameters.yml"
    with executed(
        "dev/explore.ipynb",
        env="dev",
        explore_from="2013-01-03",
        explore_to="2013-01-13",
        holdout_days=4,
        write_to=str(out),
    ) as tb:
        assert tb.value("[str(day) for day in train_window + holdout_window]") == [
            "2013-01-03",
            "2013-01-09",
            "2013-01-09",
            "2013-01-13",
        ]
        assert tb.value("sorted(train.flight_id)") == sorted(train_ids)
        assert tb.value("sorted(holdout.flight_id)") == sorted(holdout_ids)
        assert tb.value("len(results)") == len(CANDIDATES[model_cfg.problem_type])
        # The label by slice: the training rows' label mean per value of each slice column.
        by_origin = tb.value("by_slice['origin'].to_dict('records')")
        train_frame = features.load_labelled(
            prod, load_env("dev"), model_cfg, (date(2013, 1, 3), date(2013, 1, 9)), catalog="prod"
        )
        expected_origin = train_frame.groupby("origin")["delayed"].agg(["size", "mean"])
        assert [(r["origin"], r["rows"]) for r in by_origin] == list(zip(expected_origin.index, expected_origin["size"]))
        assert [r["mean_delayed"] for r in by_origin] == pytest.approx(list(expected_origin["mean"]), abs=1e-4)
        assert tb.value("sorted(by_slice)") == sorted(model_cfg.validation.slices.columns)
        best = tb.value("results.iloc[0].candidate")
        assert tb.value("str(written)") == str(out)
        quality = tb.value("prod_quality.astype({'window': str}).to_dict('records')")
        assert [(q["window"], q["model_id"], q["count"], q["labelled_count"], q["accuracy"], q["roc_auc"]) for q in quality] == [
            ("2013-03-01", "1", 812, 790, 0.81, 0.71)
        ]
        scored = tb.value("prod_champion.to_dict('records')")
        # The same held-out flights, loaded and scored here in the test's process by the same version.
        held_out = features.load_labelled(prod, load_env("dev"), model_cfg, (date(2013, 1, 9), date(2013, 1, 13)), catalog="prod")
        assert tb.value("sorted(holdout.flight_id)") == sorted(held_out.flight_id)
        expected = classification_metrics(held_out["delayed"], registry.predict(champion, held_out), 0.5)
        assert scored[0]["model"] == champion.uri
        assert scored[0]["roc_auc"] == pytest.approx(expected["roc_auc"])
        with pytest.raises(TestbookRuntimeError) as refused:
            tb.inject('s.lakehouse.write(s.lakehouse.read("prod.raw.flights"), "prod.raw.flights")')
        assert refused.value.eclass.__name__ == "AccessDeniedError"
        assert refused.value.evalue == (
            "environment dev may not write prod.raw.flights: catalog prod is read-only "
            "here (environment dev writes only catalog dev)"
        )
    written = yaml.safe_load(out.read_text())
    assert written == CANDIDATES[model_cfg.problem_type][best].model_dump(mode="json")
    assert "Written by notebooks/dev/explore.ipynb" in out.read_text()
    assert not (home / "warehouse" / "dev").exists()
    assert registry.history(prod_env.model_name) == registry_before  # no alias moved, no tag written
