"""The serving contract without a server: configs, payloads, routing, metrics, settings."""

import json
import math

import numpy as np
import pytest

from lib.core import payload
from lib.core.config import load_env
from lib.core.errors import ApiError, ConfigError
from lib.serving import metrics, settings
from lib.serving.contract import parse_config
from lib.serving.endpoints import Router

MODEL = "staging.flights.delay_model"
SPEC = payload.InputSpec(
    columns=("carrier", "origin", "temp", "wind_gust"),
    types={"carrier": "string", "origin": "string", "temp": "double", "wind_gust": "double"},
    required=frozenset({"carrier", "origin", "temp"}),
    keys=("flight_id", "origin", "sched_dep_ts"),
    timestamp_keys=frozenset({"sched_dep_ts"}),
)


def entity(version, **extra):
    return {"entity_name": MODEL, "entity_version": version, **extra}


def test_a_config_gets_default_names_and_all_traffic():
    config = parse_config({"served_entities": [entity(3)]}, "staging", "delay-model")
    assert config.served_entities[0].name == f"{MODEL}-3"
    assert config.served_entities[0].entity_version == "3"
    assert config.routes == ((f"{MODEL}-3", 100),)
    assert config.auto_capture is None


def test_a_traffic_split_and_capture_are_kept():
    body = {
        "served_entities": [entity("1", name="a"), entity("2", name="b")],
        "traffic_config": {
            "routes": [
                {"served_model_name": "a", "traffic_percentage": 90},
                {"served_entity_name": "b", "traffic_percentage": 10},
            ]
        },
        "auto_capture_config": {"catalog_name": "staging", "schema_name": "flights"},
    }
    config = parse_config(body, "staging", "delay-model")
    assert config.routes == (("a", 90), ("b", 10))
    assert config.auto_capture.table == "staging.flights.delay_model_payload"
    again = parse_config(config.to_dict(), "staging", "delay-model")
    assert again == config


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({}, 400, "served_entities must be a non-empty list"),
        ({"served_entities": [{"entity_name": "delay_model", "entity_version": 1}]}, 400, "catalog.schema.model"),
        ({"served_entities": [entity("one")]}, 400, "entity_version must be a version number"),
        ({"served_entities": [entity(1, workload_size="Huge")]}, 400, "workload_size"),
        ({"served_entities": [entity(1), entity(2)]}, 400, "traffic_config.routes is required"),
        (
            {
                "served_entities": [entity(1, name="a"), entity(2, name="b")],
                "traffic_config": {
                    "routes": [
                        {"served_model_name": "a", "traffic_percentage": 60},
                        {"served_model_name": "b", "traffic_percentage": 30},
                    ]
                },
            },
            400,
            "sum to 90",
        ),
        (
            {
                "served_entities": [entity(1, name="a")],
                "traffic_config": {"routes": [{"served_model_name": "zz", "traffic_percentage": 100}]},
            },
            400,
            "'zz'",
        ),
        (
            {
                "served_entities": [entity(1, name="a"), entity(2, name="a")],
                "traffic_config": {"routes": [{"served_model_name": "a", "traffic_percentage": 100}]},
            },
            400,
            "unique",
        ),
        (
            {"served_entities": [entity(1)], "auto_capture_config": {"catalog_name": "prod", "schema_name": "flights"}},
            403,
            "this server may not capture into prod.flights.delay_model_payload: catalog prod is read-only here (this server writes only catalog staging)",
        ),
    ],
)
def test_bad_configs_are_refused_with_what_is_wrong(body, status, words):
    with pytest.raises(ApiError) as error:
        parse_config(body, "staging", "delay-model")
    assert error.value.status == status
    assert words in error.value.message


ROWS = [{"carrier": "UA", "origin": "EWR", "temp": 50.0}, {"carrier": "B6", "origin": "JFK", "temp": 40, "wind_gust": 20.5}]


@pytest.mark.parametrize(
    "body",
    [
        {
            "dataframe_split": {
                "columns": ["carrier", "origin", "temp", "wind_gust"],
                "data": [["UA", "EWR", 50.0, None], ["B6", "JFK", 40, 20.5]],
            }
        },
        {"dataframe_records": ROWS},
        {"instances": ROWS},
        {"inputs": {"carrier": ["UA", "B6"], "origin": ["EWR", "JFK"], "temp": [50.0, 40], "wind_gust": [None, 20.5]}},
    ],
)
def test_the_four_input_formats_give_the_same_columns(body):
    parsed = payload.parse(json.dumps(body).encode())
    columns, lookup = payload.check(parsed, SPEC)
    assert not lookup
    assert list(columns["carrier"]) == ["UA", "B6"]
    assert columns["temp"].tolist() == [50.0, 40.0]
    assert math.isnan(columns["wind_gust"][0]) and columns["wind_gust"][1] == 20.5


def test_keys_alone_ask_for_a_lookup():
    body = {"dataframe_records": [{"flight_id": 7, "origin": "EWR", "sched_dep_ts": "2013-03-02T06:00:00"}]}
    columns, lookup = payload.check(payload.parse(json.dumps(body).encode()), SPEC)
    assert lookup
    assert columns["sched_dep_ts"][0] == np.datetime64("2013-03-02T06:00:00")


@pytest.mark.parametrize(
    "raw, words",
    [
        (b"{not json", "not valid JSON"),
        (b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply to parse"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"columns": []}', "exactly one of dataframe_split, dataframe_records, instances, inputs (found: none)"),
        (json.dumps({"dataframe_records": ROWS, "instances": ROWS}).encode(), "(found: dataframe_records, instances)"),
        (json.dumps({"dataframe_records": []}).encode(), "holds no rows"),
        (json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}).encode(), "data[0] must be a list of 1"),
        (json.dumps({"dataframe_records": ROWS, "extra": 1}).encode(), "unknown request field(s): extra"),
    ],
)
def test_malformed_bodies_are_refused(raw, words):
    with pytest.raises(ApiError) as error:
        payload.parse(raw)
    assert error.value.status == 400 and words in error.value.message


@pytest.mark.parametrize(
    "rows, words",
    [
        ([{"carrier": "UA", "origin": "EWR", "temperature": 50.0}], "unknown column(s) temperature"),
        ([{"carrier": "UA", "temp": 50.0}], "missing column(s) origin; or send the keys flight_id, origin, sched_dep_ts"),
        ([{"carrier": "UA", "origin": "EWR", "temp": "warm"}], "column 'temp' must hold numbers (double), row 0 holds 'warm'"),
        ([{"carrier": 12, "origin": "EWR", "temp": 1.0}], "column 'carrier' must hold strings, row 0 holds 12"),
        ([ROWS[0], {"carrier": None, "origin": "EWR", "temp": 1.0}], "column 'carrier' has no value in row 1"),
        ([{"carrier": "UA", "origin": float("nan"), "temp": 1.0}], "column 'origin' has no value in row 0"),
        ([{"flight_id": 1, "origin": "EWR", "sched_dep_ts": "tomorrow"}], "must hold ISO timestamps"),
    ],
)
def test_wrong_columns_types_and_missing_values_are_refused(rows, words):
    parsed = payload.parse(json.dumps({"dataframe_records": rows}).encode())
    with pytest.raises(ApiError) as error:
        payload.check(parsed, SPEC)
    assert error.value.status == 400 and words in error.value.message


def test_predictions_encode_nan_as_null():
    assert json.loads(payload.encode_predictions(np.array([0.25, math.nan]))) == {"predictions": [0.25, None]}


@pytest.mark.parametrize(
    "routes, expected",
    [
        ((("a", 100),), {"a": 100}),
        ((("a", 90), ("b", 10)), {"a": 90, "b": 10}),
        ((("a", 50), ("b", 50), ("c", 0)), {"a": 50, "b": 50}),
        ((("a", 33), ("b", 33), ("c", 34)), {"a": 33, "b": 33, "c": 34}),
    ],
)
def test_the_router_gives_exact_shares_per_hundred_requests(routes, expected):
    router = Router(routes)
    picks = [router.pick() for _ in range(100)]
    assert {n: picks.count(n) for n in set(picks)} == expected


def test_the_router_interleaves_rather_than_bursts():
    router = Router((("a", 50), ("b", 50)))
    assert [router.pick() for _ in range(4)] in (["a", "b", "a", "b"], ["b", "a", "b", "a"])


def test_metrics_render_and_parse_back():
    reg = metrics.Registry()
    for seconds in [0.002] * 98 + [0.3, 0.3]:
        reg.entities["v1"].observe(200, seconds, rows=1)
    reg.entities["v1"].observe(500, 0.002)
    reg.entities["v2"].observe(400, 0.001)
    text = reg.render("ep")
    assert 'serving_requests_total{endpoint="ep",served_entity="v1",status="200"} 100.0' in text
    assert 'serving_request_latency_seconds_bucket{endpoint="ep",le="+Inf",served_entity="v1"} 101.0' in text
    assert 'serving_feature_lookup_misses_total{endpoint="ep",served_entity="v2"} 0.0' in text
    seen = metrics.parse(text)
    assert (seen["v1"].requests, seen["v1"].errors) == (101, 1)
    assert (seen["v2"].requests, seen["v2"].errors) == (1, 0)
    assert seen["v1"].quantile_bound(0.5) == 0.0025
    assert seen["v1"].quantile_bound(0.99) == 0.5
    later = metrics.parse(text.replace("} 100", "} 110"))
    assert later["v1"].since(seen["v1"]).requests == 10


def test_serving_settings_come_from_the_environment(home, monkeypatch):
    monkeypatch.delenv(settings.PORT_ENV_VAR, raising=False)
    cfg = settings.load(load_env("staging"))
    assert (cfg.port, cfg.endpoint, cfg.rollout.steps) == (8781, "delay-model", (100,))
    assert cfg.folder == home / "serving" / "staging"
    assert settings.load(load_env("staging"), "10,50,100", 2).rollout.steps == (10, 50, 100)
    monkeypatch.setenv(settings.PORT_ENV_VAR, "0")
    assert settings.load(load_env("staging")).port == 0


@pytest.mark.parametrize(
    "steps, words", [("50,10,100", "rising percentages"), ("10,50", "ending at 100"), ("ten", "percentages like 10,50,100")]
)
def test_bad_rollout_steps_are_refused(home, steps, words):
    with pytest.raises(ConfigError, match=words):
        settings.load(load_env("staging"), steps)


def test_a_token_is_created_once_and_kept_private(home, monkeypatch):
    monkeypatch.delenv(settings.TOKEN_ENV_VAR, raising=False)
    cfg = settings.load(load_env("staging"))
    with pytest.raises(ConfigError, match="start the server first"):
        cfg.token()
    token = cfg.token(create=True)
    assert len(token) >= 40 and cfg.token() == token
    assert (cfg.folder / "token").stat().st_mode & 0o777 == 0o600
