import datetime as dt
import sqlite3
import threading
import time
from contextlib import closing
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from lib.core.errors import LakehouseError
from lib.features import store as feature_store
from lib.serving.online_store import MISSES, OnlineStore, Published, _to_sqlite, publish

FLIGHTS, WEATHER = "staging.flights.flight_features", "staging.flights.weather_features"
# A weather row far after the data: before it is published, nothing is found there.
LATE = pd.DataFrame({"origin": ["EWR"], "sched_dep_ts": pd.to_datetime(["2099-01-01 12:30"])})


@pytest.fixture
def store(featurized, staging, model_cfg, tmp_path):
    lookups = feature_store.lookups(model_cfg.feature_lookups, staging.catalog, staging.schema)
    path = tmp_path / "online.db"
    counts = publish(featurized, lookups, path)
    return OnlineStore(path), lookups, counts, featurized


def query(path, sql):
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


def append_late_weather(lakehouse):
    """A new Delta version of the weather table: one EWR row at 2099-01-01 12:00, temp 99."""
    row = (
        lakehouse.read(WEATHER)
        .where("origin = 'EWR'")
        .limit(1)
        .withColumn("observed_at", F.expr("TIMESTAMP_NTZ'2099-01-01 12:00:00'"))
        .withColumn("temp", F.lit(99.0))
    )
    lakehouse.write(row, WEATHER, mode="append")


def test_publishing_copies_each_lookup_table_whole(store):
    _, lookups, counts, lakehouse = store
    tables = {lk.table for lk in lookups}
    assert {FLIGHTS, WEATHER} <= tables
    assert counts == {t: Published(lakehouse.read(t).count(), lakehouse.version(t), skipped=False) for t in tables}


def test_timestamps_are_stored_to_the_second_as_text(store):
    online, _, _, lakehouse = store
    stored = query(
        online.path,
        "SELECT min(observed_at), max(observed_at), count(*) FROM staging__flights__weather_features "
        "WHERE observed_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]'",
    )
    expected = (
        lakehouse.read(WEATHER)
        .select(
            F.date_format(F.min("observed_at"), "yyyy-MM-dd HH:mm:ss"),
            F.date_format(F.max("observed_at"), "yyyy-MM-dd HH:mm:ss"),
            F.count("*"),
        )
        .first()
    )
    assert stored == [tuple(expected)]


@pytest.mark.parametrize(
    "kind, expected",
    [
        (pa.timestamp("us"), "2013-01-01 05:00:00"),  # timestamp_ntz: the wall clock as stored
        (pa.timestamp("us", tz="UTC"), "2013-01-01 00:00:00"),  # timestamp: shown in the session's zone, as toPandas did
    ],
)
def test_timestamps_become_text_to_the_second(kind, expected):
    session = SimpleNamespace(spark=SimpleNamespace(conf={"spark.sql.session.timeZone": "America/New_York"}))
    column = pa.array([dt.datetime(2013, 1, 1, 5, 0, 0, 700_000), None], pa.timestamp("us")).cast(kind)
    rows, kinds = _to_sqlite(pa.table({"ts": column, "n": pa.array([1, None], pa.int32())}), session)
    assert rows.to_pydict() == {"ts": [expected, None], "n": [1, None]}
    assert kinds == ["TEXT", "REAL"]  # an integer column with nulls stays float, as pandas made it


def test_online_lookups_match_the_offline_point_in_time_join(store, holdout, model_cfg):
    online, lookups, _, _ = store
    spine = holdout[["flight_id", "origin", "sched_dep_ts"]].head(300)
    found = online.lookup(spine, lookups)
    for lookup in lookups:
        for column in lookup.features:
            expected, got = holdout[column].head(300).to_numpy(), found[column].to_numpy()
            if expected.dtype == object:
                assert list(got) == list(expected), column
            else:
                assert np.allclose(got.astype(float), expected.astype(float), equal_nan=True), column


def test_weather_older_than_the_lookback_is_not_used(store):
    online, lookups, _, _ = store
    weather = [lk for lk in lookups if lk.table.endswith("weather_features")]
    spine = pd.DataFrame({"origin": ["EWR", "EWR"], "sched_dep_ts": pd.to_datetime(["2013-02-01 12:30", "2099-01-01 12:30"])})
    found = online.lookup(spine, weather)
    assert not pd.isna(found["temp"].iloc[0])
    assert pd.isna(found["temp"].iloc[1])  # nothing within 3 hours before
    assert found[MISSES].tolist() == [0, 1]  # what serving counts: rows whose lookups found nothing


def test_an_unchanged_table_is_not_copied_again(store, monkeypatch):
    online, lookups, counts, lakehouse = store
    before = query(online.path, "SELECT * FROM _online_tables ORDER BY name")
    monkeypatch.setattr(lakehouse, "read", lambda *a, **k: pytest.fail("an unchanged table was read"))
    again = publish(lakehouse, lookups, online.path)
    assert again == {t: Published(p.rows, p.version, skipped=True) for t, p in counts.items()}
    assert query(online.path, "SELECT * FROM _online_tables ORDER BY name") == before  # published_at too


def test_a_new_delta_version_is_copied_and_looked_up(store):
    online, lookups, counts, lakehouse = store
    weather = [lk for lk in lookups if lk.table == WEATHER]
    append_late_weather(lakehouse)
    again = publish(lakehouse, lookups, online.path)
    assert again == {
        **{t: Published(p.rows, p.version, skipped=True) for t, p in counts.items()},  # the others: unchanged
        WEATHER: Published(counts[WEATHER].rows + 1, counts[WEATHER].version + 1, skipped=False),
    }
    assert online.lookup(LATE, weather)["temp"].tolist() == [99.0]


def test_a_store_made_before_versions_were_recorded_is_republished(store):
    online, lookups, counts, lakehouse = store
    weather = [lk for lk in lookups if lk.table == WEATHER]
    with closing(sqlite3.connect(online.path, isolation_level=None)) as db:  # the first release's meta table
        rows = db.execute("SELECT name, primary_keys, timestamp_key, rows, published_at FROM _online_tables").fetchall()
        db.execute("DROP TABLE _online_tables")
        db.execute(
            "CREATE TABLE _online_tables (name TEXT PRIMARY KEY, primary_keys TEXT, timestamp_key TEXT, "
            "rows INTEGER, published_at TEXT)"
        )
        db.executemany("INSERT INTO _online_tables VALUES (?, ?, ?, ?, ?)", rows)
    append_late_weather(lakehouse)
    assert pd.isna(online.lookup(LATE, weather)["temp"].iloc[0])  # the old store still serves

    again = publish(lakehouse, lookups, online.path)
    assert {t: p.skipped for t, p in again.items()} == {t: False for t in counts}  # versions were unknown
    assert online.lookup(LATE, weather)["temp"].tolist() == [99.0]
    assert query(online.path, "SELECT count(*) FROM _online_tables") == [(len(counts),)]
    assert all(p.skipped for p in publish(lakehouse, lookups, online.path).values())


def test_lookups_go_on_while_a_table_is_republished(store):
    online, lookups, _, lakehouse = store
    spine = pd.DataFrame({"flight_id": [1], "origin": ["EWR"], "sched_dep_ts": pd.to_datetime(["2013-02-01 06:00"])})
    expected = online.lookup(spine, lookups)
    errors, wrong, finished, started, stop = [], [], [], threading.Event(), threading.Event()

    def read():
        while not stop.is_set():
            try:
                found = online.lookup(spine, lookups)
                finished.append(time.perf_counter())
                if not found.equals(expected):
                    wrong.append(found)
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)
            started.set()
            time.sleep(0.005)  # a reader, not a spinner: the publish needs the GIL too

    reader = threading.Thread(target=read)
    reader.start()
    try:
        started.wait(30)
        begin = time.perf_counter()
        result = publish(lakehouse, lookups, online.path, force=True)  # the tables did not change: copy anyway
        end = time.perf_counter()
    finally:
        stop.set()
        reader.join()
    assert not any(p.skipped for p in result.values())
    assert errors == [] and wrong == []
    assert sum(begin < t < end for t in finished) > 0  # lookups really ran during the republish


def test_an_unpublished_table_is_one_line(tmp_path, store):
    online, lookups, _, _ = store
    other = feature_store.FeatureLookup("staging.flights.nope", ("origin",), "sched_dep_ts", ("x",))
    with pytest.raises(LakehouseError, match="lacks staging.flights.nope: run the serving job to publish"):
        online.check([*lookups, other])
    with pytest.raises(LakehouseError, match="does not exist: the serving job publishes it"):
        OnlineStore(tmp_path / "missing.db")
