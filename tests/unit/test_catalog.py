import datetime as dt

import pytest

from lib.core.config import load_env
from lib.core.errors import AccessDeniedError, ConfigError, TableNotFoundError
from lib.platform.catalog import Lakehouse, parse_name


@pytest.mark.parametrize("bad", ["flights", "a.b", "a.b.c.d", "1a.b.c", "a.b.c;", "", None])
def test_names_must_have_three_parts(bad):
    with pytest.raises(ConfigError, match="must have the form catalog.schema.table"):
        parse_name(bad)


def test_path_follows_the_name(lakehouse, home):
    assert lakehouse.path("staging.flights.labels") == home / "warehouse" / "staging" / "flights" / "labels"


def test_write_then_read_round_trip(lakehouse, spark):
    lakehouse.write(spark.createDataFrame([(1, "a"), (2, "b")], "id int, v string"), "staging.s.t")
    assert sorted(tuple(r) for r in lakehouse.read("staging.s.t").collect()) == [(1, "a"), (2, "b")]
    assert lakehouse.tables() == ["staging.s.t"]


def test_reading_a_missing_table_says_which(lakehouse):
    with pytest.raises(TableNotFoundError, match="table staging.flights.nope does not exist"):
        lakehouse.read("staging.flights.nope")


def test_dev_reads_prod_but_never_writes_it(spark, home):
    prod = Lakehouse(spark, load_env("prod"))
    prod.write(spark.createDataFrame([(1,)], "id int"), "prod.raw.flights")
    dev = Lakehouse(spark, load_env("dev"))
    assert dev.read("prod.raw.flights").count() == 1
    with pytest.raises(AccessDeniedError, match="environment dev may not write prod.raw.flights"):
        dev.write(spark.createDataFrame([(2,)], "id int"), "prod.raw.flights", mode="append")
    with pytest.raises(AccessDeniedError):
        dev.create_schema("prod", "scratch")
    assert prod.read("prod.raw.flights").count() == 1
    assert not (home / "warehouse" / "prod" / "scratch").exists()


def test_replace_where_replaces_only_that_period(lakehouse, spark):
    def rows(day, n):
        return spark.createDataFrame([(dt.date(2013, 1, day), i) for i in range(n)], "period_start date, i int")

    for day, n in [(1, 3), (2, 4), (1, 5)]:  # period 1 is written twice
        lakehouse.write(rows(day, n), "staging.s.p", replace_where=f"period_start = DATE'2013-01-0{day}'")
    counts = {r["period_start"].day: r["count"] for r in lakehouse.read("staging.s.p").groupBy("period_start").count().collect()}
    assert counts == {1: 5, 2: 4}


def test_replace_where_rejects_rows_outside_the_period(lakehouse, spark):
    lakehouse.write(spark.createDataFrame([(dt.date(2013, 1, 1),)], "period_start date"), "staging.s.q")
    stray = spark.createDataFrame([(dt.date(2013, 1, 9),)], "period_start date")
    with pytest.raises(Exception, match="(?i)replaceWhere|does not conform|DELTA_REPLACE_WHERE"):
        lakehouse.write(stray, "staging.s.q", replace_where="period_start = DATE'2013-01-02'")
    assert lakehouse.read("staging.s.q").count() == 1  # the failed write changed nothing


def test_only_temporary_catalogs_can_be_dropped(spark, home):
    staging = Lakehouse(spark, load_env("staging"))
    staging.write(spark.createDataFrame([(1,)], "id int"), "staging.s.t")
    exported = staging.export_path("staging.s.t")
    exported.mkdir(parents=True)
    staging.drop_catalog()
    assert not staging.exists("staging.s.t") and not exported.exists()
    with pytest.raises(AccessDeniedError, match="is not temporary"):
        Lakehouse(spark, load_env("prod")).drop_catalog()


def test_each_write_is_the_next_version(lakehouse, spark):
    lakehouse.write(spark.range(3), "staging.s.v")
    assert lakehouse.version("staging.s.v") == 0
    lakehouse.write(spark.range(5), "staging.s.v", mode="append")
    assert lakehouse.version("staging.s.v") == 1
    assert lakehouse.read("staging.s.v", version=0).count() == 3  # an earlier version stays readable
    assert lakehouse.read("staging.s.v").count() == 8


def test_a_stamp_is_read_back_while_its_commit_is_the_newest(lakehouse, spark):
    assert lakehouse.stamp("staging.s.v") == {}  # no table
    lakehouse.write(spark.range(3), "staging.s.v", stamp={"source": "abc", "rows": 3})
    assert lakehouse.stamp("staging.s.v") == {"source": "abc", "rows": 3}
    lakehouse.set_properties("staging.s.v", {"k": "v"}, stamp={"source": "abc", "rows": 3})  # its own commit
    assert lakehouse.stamp("staging.s.v") == {"source": "abc", "rows": 3}
    lakehouse.write(spark.range(5), "staging.s.v", mode="append")
    assert lakehouse.stamp("staging.s.v") == {}
    lakehouse.set_properties("staging.s.v", {"k": "w"})  # the session's setting was not left behind
    assert lakehouse.stamp("staging.s.v") == {}


@pytest.mark.parametrize(
    "files, expected",
    [
        ([f"{7:020d}.checkpoint.parquet"], 7),  # commits up to 7 cleaned up after a checkpoint
        ([f"{9:020d}.checkpoint.{1:010d}.{2:010d}.parquet"], 9),  # a multi-part checkpoint
        ([f"{4:020d}.checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.json"], 4),  # a v2 checkpoint
        # Not commits: a commit being written, a compacted range, a checksum, the checkpoint hint.
        ([f".{5:020d}.json.0f1e.tmp", f"{0:020d}.{6:020d}.compacted.json", f"{8:020d}.crc", "_last_checkpoint"], 0),
    ],
)
def test_the_version_counts_commits_and_checkpoints_only(lakehouse, spark, files, expected):
    lakehouse.write(spark.range(3), "staging.s.v")
    for name in files:
        (lakehouse.path("staging.s.v") / "_delta_log" / name).write_text("{}")
    assert lakehouse.version("staging.s.v") == expected


def test_the_version_of_a_missing_table_says_which(lakehouse):
    with pytest.raises(TableNotFoundError, match="table staging.flights.nope does not exist"):
        lakehouse.version("staging.flights.nope")
