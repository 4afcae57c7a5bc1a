import datetime as dt

import pytest

from lib import ingest
from lib.catalog import Lakehouse
from lib.config import load_env

pytestmark = pytest.mark.slow


def test_dev_explores_prod_data_read_only(executed, spark, home):
    prod = Lakehouse(spark, load_env("prod"))
    ingest.ingest(prod, dt.date(2013, 1, 1), dt.date(2013, 1, 8))
    with executed("dev/explore_flights.ipynb", env="dev") as tb:
        assert tb.value("flights.count()") == prod.read("prod.raw.flights").count()
        assert tb.value("len(by_hour)") == prod.read("prod.raw.flights").where("arr_delay IS NOT NULL").select("hour").distinct().count()
        with pytest.raises(Exception, match="environment dev may not write prod.raw.flights"):
            tb.inject('s.lakehouse.write(flights, "prod.raw.flights")')
    assert not (home / "warehouse" / "dev").exists()
