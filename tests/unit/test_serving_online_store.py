import threading

import numpy as np
import pandas as pd
import pytest

from lib import feature_store
from lib.errors import LakehouseError
from lib.serving.online_store import OnlineStore, publish


@pytest.fixture
def store(featurized, staging, model_cfg, tmp_path):
    lookups = feature_store.lookups(model_cfg, staging.catalog, staging.schema)
    path = tmp_path / "online.db"
    counts = publish(featurized, lookups, path)
    return OnlineStore(path), lookups, counts, featurized


def test_publishing_copies_each_lookup_table_whole(store):
    _, _, counts, lakehouse = store
    assert counts == {t: lakehouse.read(t).count() for t in ("staging.flights.flight_features", "staging.flights.weather_features")}


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
    spine = pd.DataFrame({"origin": ["EWR", "EWR"],
                          "sched_dep_ts": pd.to_datetime(["2013-02-01 12:30", "2099-01-01 12:30"])})
    found = online.lookup(spine, weather)
    assert not pd.isna(found["temp"].iloc[0])
    assert pd.isna(found["temp"].iloc[1])  # nothing within 3 hours before


def test_lookups_go_on_while_a_table_is_republished(store):
    online, lookups, _, lakehouse = store
    spine = pd.DataFrame({"flight_id": [1], "origin": ["EWR"], "sched_dep_ts": pd.to_datetime(["2013-02-01 06:00"])})
    errors, stop = [], threading.Event()

    def read():
        while not stop.is_set():
            try:
                online.lookup(spine, lookups)
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        publish(lakehouse, lookups, online.path)
    finally:
        stop.set()
        reader.join()
    assert errors == []


def test_an_unpublished_table_is_one_line(tmp_path, store):
    online, lookups, _, _ = store
    other = feature_store.FeatureLookup("staging.flights.nope", ("origin",), "sched_dep_ts", ("x",))
    with pytest.raises(LakehouseError, match="lacks staging.flights.nope: run the serving job to publish"):
        online.check([*lookups, other])
    with pytest.raises(LakehouseError, match="does not exist: the serving job publishes it"):
        OnlineStore(tmp_path / "missing.db")
