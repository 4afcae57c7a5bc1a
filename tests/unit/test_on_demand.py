"""On-demand features: the functions, their declaration, and the four paths agreeing value by value."""

import datetime as dt
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from lib.core import config
from lib.core.config import Hyperparameters
from lib.core.config.model import OnDemand
from lib.core.errors import ConfigError
from lib.features import on_demand
from lib.inference import batch as inference
from lib.inference import feed, streaming

DISTANCE_BUCKET = "flights_features:distance_bucket"  # the flights' own, conf/flights_features.py
WHEN = ["2013-07-04 06:00:00", "2013-07-01 23:59:00", "2013-12-23 10:00:00", "2013-01-01 00:00:00", None]


@pytest.mark.parametrize(
    "as_given",
    [
        lambda values: pd.Series(pd.to_datetime(values)),  # Spark and pandas: datetime64
        lambda values: pd.Series(values, dtype=object),  # text, as JSON brings it
        lambda values: pd.Series([v and v.replace(" ", "T") for v in values], dtype=object),  # ISO with a T
    ],
)
def test_time_features_are_the_same_from_datetimes_and_from_text(as_given):
    ts = as_given(WHEN)
    # Thursday 06h; Monday 23h; Monday 10h; Tuesday 00h (Monday 00h is 0).
    assert on_demand.hour_of_week(ts).tolist()[:4] == [78.0, 23.0, 10.0, 24.0]
    # Independence Day itself; 3 days before it; 2 before Christmas; New Year's Day itself.
    assert on_demand.days_to_holiday(ts).tolist()[:4] == [0.0, 3.0, 2.0, 0.0]
    assert np.isnan(on_demand.hour_of_week(ts).iloc[4]) and np.isnan(on_demand.days_to_holiday(ts).iloc[4])


def test_days_to_holiday_is_missing_outside_the_calendar_years():
    got = on_demand.days_to_holiday(pd.Series(["1969-12-31 10:00:00", "2261-01-01 00:00:00", "2013-12-24 08:00:00"]))
    assert np.isnan(got.iloc[0]) and np.isnan(got.iloc[1]) and got.iloc[2] == 1.0


def test_distance_buckets_and_missing_distances():
    distance_bucket = on_demand.function(DISTANCE_BUCKET, config.CONF_DIR)
    got = distance_bucket(pd.Series([17, 499, 500, 999, 1000, 1999, 2000, 4983, None]))
    assert got.tolist()[:8] == [0, 0, 1, 1, 2, 2, 3, 3] and np.isnan(got.iloc[8])


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            {"function": "hour_of_year", "inputs": {"ts": "sched_dep_ts"}, "output": "h"},
            "conf/model.yml: on_demand_features.0.function: unknown function 'hour_of_year' (lib/features/on_demand.py has "
            "days_to_holiday, hour_of_week; a project's own is module:function) (did you mean hour_of_week?)",
        ),
        (
            {"function": "distance_bucket", "inputs": {"distance": "distance"}, "output": "d"},  # moved to the project
            "conf/model.yml: on_demand_features.0.function: unknown function 'distance_bucket' (lib/features/on_demand.py "
            "has days_to_holiday, hour_of_week; a project's own is module:function)",
        ),
        (
            {"function": "flight_features:distance_bucket", "inputs": {"distance": "distance"}, "output": "d"},
            "conf/model.yml: on_demand_features.0.function: no file flight_features.py in conf for module flight_features",
        ),
        (
            {"function": "flights_features:distance_buckets", "inputs": {"distance": "distance"}, "output": "d"},
            "conf/model.yml: on_demand_features.0.function: flights_features.py has no function 'distance_buckets' "
            "(did you mean distance_bucket?)",
        ),
        (
            {"function": "flights_features:np", "inputs": {"distance": "distance"}, "output": "d"},  # a module, not a function
            "conf/model.yml: on_demand_features.0.function: flights_features.py has no function 'np'",
        ),
        (
            {"function": DISTANCE_BUCKET, "inputs": {"miles": "distance"}, "output": "d"},
            "conf/model.yml: on_demand_features.0.inputs: flights_features:distance_bucket takes inputs distance, not miles",
        ),
        (
            {"function": "hour_of_week", "inputs": {"when": "sched_dep_ts"}, "output": "h"},
            "conf/model.yml: on_demand_features.0.inputs: hour_of_week takes inputs ts, not when",
        ),
    ],
)
def test_a_wrong_declaration_is_one_line(spec, message):
    with pytest.raises(ConfigError) as error:
        on_demand.declared([OnDemand(**spec)])
    assert str(error.value) == message


def test_a_project_module_that_fails_to_import_is_one_line(tmp_path):
    (tmp_path / "broken.py").write_text("import numpy as np\n\nEDGES = np.arange(3) / undefined_name\n")
    with pytest.raises(ConfigError) as error:
        on_demand.declared([OnDemand(function="broken:f", inputs={"x": "distance"}, output="f")], "model.yml", tmp_path)
    assert str(error.value) == (
        f"model.yml: on_demand_features.0.function: {(tmp_path / 'broken.py').as_posix()} fails to import: "
        "NameError: name 'undefined_name' is not defined"
    )
    assert isinstance(error.value.__cause__, NameError)  # the traceback (--verbose) shows the line


def test_each_conf_folder_has_its_own_project_module(tmp_path):
    (tmp_path / "mine.py").write_text("def double(x):\n    return x * 2\n")
    (first,) = on_demand.declared([OnDemand(function="mine:double", inputs={"x": "n"}, output="n2")], folder=tmp_path)
    assert first.to_dict() == {"function": "mine:double", "inputs": {"x": "n"}, "output": "n2"}
    assert first.function(pd.Series([1.0, 2.0])).tolist() == [2.0, 4.0]
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.py").write_text("def double(x):\n    return x * 2 + 1\n")
    (second,) = on_demand.declared([OnDemand(function="mine:double", inputs={"x": "n"}, output="n2")], folder=other)
    assert second.function(pd.Series([1.0])).tolist() == [3.0] and first.function(pd.Series([1.0])).tolist() == [2.0]


def test_a_function_may_read_an_earlier_ones_output_in_config_training_and_scoring(tmp_path):
    """Chained: the model is given what the first function reads, not what it makes."""
    from lib.core import config
    from lib.lifecycle import training

    shutil.copy(config.CONF_DIR / "flights_features.py", tmp_path)  # model.yml's module, next to it
    text = (config.CONF_DIR / "model.yml").read_text()
    chained = f"  - {{function: {DISTANCE_BUCKET}, inputs: {{distance: hour_of_week}}, output: week_bucket}}\n"
    text = text.replace("\n# What the model sees", chained + "\n# What the model sees")
    assert text.count("days_to_holiday, distance_bucket,") == 1  # the features list
    (tmp_path / "model.yml").write_text(
        text.replace("days_to_holiday, distance_bucket,", "days_to_holiday, distance_bucket, week_bucket,")
    )
    cfg = config.load_model_config(tmp_path)
    assert "hour_of_week" not in training.input_columns(cfg) and "sched_dep_ts" in training.input_columns(cfg)
    rng = np.random.default_rng(0)
    rows = 400
    train = pd.DataFrame({c: rng.normal(size=rows) for c in cfg.features.numeric}).assign(
        carrier=rng.choice(["AA", "UA"], rows),
        origin=rng.choice(["JFK", "EWR"], rows),
        dest="BOS",
        distance=300.0,
        sched_dep_ts=pd.Timestamp("2013-07-01") + pd.to_timedelta(rng.integers(0, 24 * 14, rows), unit="h"),
        delayed=rng.integers(0, 2, rows),
    )
    model = training.fit(train, cfg, Hyperparameters(algorithm="logistic_regression"))
    assert model.inputs == training.input_columns(cfg)
    features = model.features(train[model.inputs])
    expected = on_demand.function(DISTANCE_BUCKET, tmp_path)(on_demand.hour_of_week(train["sched_dep_ts"]))
    assert features["week_bucket"].tolist() == expected.tolist() and features["week_bucket"].nunique() == 1  # hours < 500
    assert model.predict(None, train[model.inputs]).shape == (rows,)


def test_the_version_keeps_the_functions_it_was_trained_with(champion, monkeypatch):
    """Packaged by value: a later change of lib/features/on_demand.py or of the project's module does
    not change a registered version."""
    import mlflow

    monkeypatch.setattr(on_demand, "hour_of_week", lambda ts: pd.Series(-1.0, index=ts.index))
    project = on_demand.project_module(config.CONF_DIR, "flights_features")
    monkeypatch.setattr(project, "DISTANCE_EDGES", (1, 2, 3))
    model = mlflow.pyfunc.load_model(champion.uri).unwrap_python_model()
    used = {f.output: f.function for f in model.on_demand}
    assert set(used) == {"hour_of_week", "days_to_holiday", "distance_bucket"}
    assert used["hour_of_week"](pd.Series(pd.to_datetime(WHEN[:1]))).tolist() == [78.0]
    assert used["distance_bucket"](pd.Series([499.0, 500.0])).tolist() == [0.0, 1.0]
    assert used["distance_bucket"] is not project.distance_bucket  # its own copy, not the conf folder's


def test_training_batch_streaming_and_serving_agree_value_by_value(featurized, staging, champion, model_cfg):
    """The on-demand features each path hands its model, and the predictions, are the same."""
    import mlflow

    from lib.core import payload
    from lib.features import store as feature_store
    from lib.serving import online_store
    from lib.serving.contract import ServedEntity
    from lib.serving.entity import Served

    model = mlflow.pyfunc.load_model(champion.uri).unwrap_python_model()
    made = [f.output for f in model.on_demand]
    day = dt.datetime.combine(staging.data.as_of, dt.time())
    key, at = model_cfg.spine.id, model_cfg.spine.timestamp
    source = feed.incoming(model_cfg)
    spine = (
        featurized.read(staging.table("flight_features"))
        .where(f"{at} >= TIMESTAMP_NTZ'{day:%Y-%m-%d}' AND {at} < TIMESTAMP_NTZ'{day:%Y-%m-%d} 12:00:00'")
        .select(key, "origin", at)
        .orderBy(key)
        .limit(40)
    )
    keys = spine.toPandas()

    # Training: the training set's rows (Spark -> pandas), through the model's functions.
    lookups = feature_store.lookups(model_cfg.feature_lookups, staging.catalog, staging.schema)
    trained = feature_store.lookup_features(featurized, spine, lookups).toPandas().set_index(key).loc[keys[key]]
    expected = model.features(trained)[made]
    expected_prediction = model.predict(None, trained)

    # Batch: what batch inference scored and published, model inputs included.
    batch = inference.predict(featurized, spine, champion, 0.5, entity=model_cfg.spine).toPandas().set_index(key).loc[keys[key]]

    # Streaming: the same flights arriving as text, through a micro-batch of the stream (what the
    # query's foreachBatch runs: parse, triage, score, append).
    feed.append(featurized, source, spine)
    checkpoint = featurized.checkpoint_path(staging.table(streaming.PREDICTIONS))
    checkpoint.mkdir(parents=True)
    (checkpoint / "metadata").write_text(json.dumps({"id": "on-demand-test"}))
    known = model_cfg.inference.streaming.known_values
    streaming.MicroBatch(staging, str(checkpoint), source, model_cfg.spine, 0.5, known)(
        featurized.read(staging.table(source.table)), 0
    )
    streamed = featurized.read(staging.table(streaming.PREDICTIONS)).toPandas().set_index(key).loc[keys[key]]

    # Serving: a request of keys (ISO text, as JSON brings them), looked up in the online store.
    store = online_store.store_path(staging.home, staging.catalog)
    online_store.publish_for(featurized, champion, store)
    served = Served(ServedEntity(f"{champion.name}-{champion.version}", champion.name, champion.version), store, 100)
    served.load()
    body = {"dataframe_records": keys.assign(**{at: keys[at].dt.strftime("%Y-%m-%dT%H:%M:%S")}).to_dict(orient="records")}
    item = served.check(payload.parse(json.dumps(body).encode()))
    frame, _ = served._features(item)
    served_prediction = served.predict([item])[0].predictions

    for name, got in [
        ("batch", model.features(batch)),
        ("streaming", model.features(streamed)),
        ("serving", model.features(frame)),
    ]:
        pd.testing.assert_frame_equal(
            got[made].reset_index(drop=True),
            expected.reset_index(drop=True),
            check_exact=True,
            obj=f"on-demand features of {name}",
        )
    for name, got in [("batch", batch["prediction"]), ("streaming", streamed["prediction"]), ("serving", served_prediction)]:
        assert np.allclose(np.asarray(got, dtype=float), expected_prediction, rtol=0, atol=1e-12), name
    assert expected["hour_of_week"].nunique() > 3 and expected["distance_bucket"].nunique() > 1  # not a constant
