import datetime as dt

import pytest
import yaml

from lib import features, ingest
from lib.catalog import Lakehouse
from lib.config import load_env, load_model_config
from lib.exploration import CANDIDATES

pytestmark = pytest.mark.slow


def test_dev_explores_prod_read_only_and_writes_the_chosen_hyperparameters(executed, spark, home, tmp_path):
    prod_env = load_env("prod")
    prod = Lakehouse(spark, prod_env)
    ingest.ingest(prod, dt.date(2013, 1, 1), dt.date(2013, 1, 15))
    flights, weather = prod.read("prod.raw.flights"), prod.read("prod.raw.weather")
    features.write_tables(prod, prod_env, load_model_config(), features.build_tables(flights, weather))
    out = tmp_path / "hyperparameters.yml"
    with executed("dev/explore_flights.ipynb", env="dev", explore_from="2013-01-01", explore_to="2013-01-15",
                  holdout_days=4, write_to=str(out)) as tb:
        assert tb.value("flights.count()") == flights.count()
        assert tb.value("len(results)") == len(CANDIDATES)
        best = tb.value("results.iloc[0].candidate")
        assert tb.value("str(written)") == str(out)
        assert tb.value("len(train) + len(holdout)") == prod.read("prod.flights.labels").count()
        with pytest.raises(Exception, match="environment dev may not write prod.raw.flights"):
            tb.inject('s.lakehouse.write(flights, "prod.raw.flights")')
    written = yaml.safe_load(out.read_text())
    assert written == CANDIDATES[best]
    assert "Written by notebooks/dev/explore_flights.ipynb" in out.read_text()
    assert not (home / "warehouse" / "dev").exists()
