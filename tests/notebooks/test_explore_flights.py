import shutil

import pandas as pd
import pytest
import yaml
from testbook.exceptions import TestbookRuntimeError

from lib.catalog import Lakehouse
from lib.config import load_env
from lib.exploration import CANDIDATES

pytestmark = pytest.mark.slow


def test_dev_explores_prod_read_only_and_writes_the_chosen_hyperparameters(executed, spark, home, tmp_path, seed):
    prod_env = load_env("prod")
    prod = Lakehouse(spark, prod_env)
    # Prod's raw and feature tables: the seed's (Jan 1 - Mar 7), copied under prod's catalog.
    shutil.copytree(seed["warehouse"], prod_env.warehouse / prod_env.catalog)
    flights = prod.read("prod.raw.flights")
    # The window leaves out days of prod's data at both ends, and its last 4 days are held out.
    labels = prod.read("prod.flights.labels").select("flight_id", "sched_dep_ts").toPandas()
    departs = labels["sched_dep_ts"]
    train_ids = labels.flight_id[(departs >= pd.Timestamp("2013-01-03")) & (departs < pd.Timestamp("2013-01-09"))]
    holdout_ids = labels.flight_id[(departs >= pd.Timestamp("2013-01-09")) & (departs < pd.Timestamp("2013-01-13"))]
    assert 0 < len(train_ids) + len(holdout_ids) < len(labels)
    out = tmp_path / "hyperparameters.yml"
    with executed("dev/explore_flights.ipynb", env="dev", explore_from="2013-01-03", explore_to="2013-01-13",
                  holdout_days=4, write_to=str(out)) as tb:
        assert tb.value("flights.count()") == flights.count()
        assert tb.value("[str(day) for day in train_window + holdout_window]") == [
            "2013-01-03", "2013-01-09", "2013-01-09", "2013-01-13"]
        assert tb.value("sorted(train.flight_id)") == sorted(train_ids)
        assert tb.value("sorted(holdout.flight_id)") == sorted(holdout_ids)
        assert tb.value("len(results)") == len(CANDIDATES)
        best = tb.value("results.iloc[0].candidate")
        assert tb.value("str(written)") == str(out)
        with pytest.raises(TestbookRuntimeError) as refused:
            tb.inject('s.lakehouse.write(flights, "prod.raw.flights")')
        assert refused.value.eclass.__name__ == "AccessDeniedError"
        assert refused.value.evalue == ("environment dev may not write prod.raw.flights: catalog prod is read-only "
                                        "here (environment dev writes only catalog dev)")
    written = yaml.safe_load(out.read_text())
    assert written == CANDIDATES[best]
    assert "Written by notebooks/dev/explore_flights.ipynb" in out.read_text()
    assert not (home / "warehouse" / "dev").exists()
