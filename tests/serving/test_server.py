"""The serving server, for real: a server process on localhost, the staging registry, Delta.

One server serves the whole module (starting one takes a few seconds); tests run in file
order and each leaves the `flights` endpoint serving v1 with all traffic.
"""

from __future__ import annotations

import http.client
import json
import shutil
import threading
import time
from types import SimpleNamespace
from urllib.parse import urlparse

import mlflow
import numpy as np
import pytest

from lib.core.config import load_env
from lib.lifecycle import training
from lib.platform import registry
from lib.platform.catalog import Lakehouse
from lib.serving import metrics, online_store, server, settings
from lib.serving.client import Client, ServingError

pytestmark = pytest.mark.slow
EP = "flights"


@pytest.fixture(scope="module")
def live(tmp_path_factory, seed, spark, model_cfg_session):
    root = tmp_path_factory.mktemp("serving") / "lakehouse"
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_HOME", str(root))
    mp.setenv(settings.PORT_ENV_VAR, "0")
    env = load_env("staging")
    shutil.copytree(seed["warehouse"], env.warehouse / env.catalog)
    registry.configure(env)
    client = registry.client()
    client.create_registered_model(env.model_name)
    versions = [client.create_model_version(env.model_name, source=seed["source"], tags=seed["tags"]).version for _ in range(2)]
    broken = root / "broken_model"
    shutil.copytree(seed["source"].removeprefix("file://"), broken)
    (broken / "python_model.pkl").write_bytes(b"not a pickle")
    versions.append(client.create_model_version(env.model_name, source=str(broken)).version)
    lakehouse = Lakehouse(spark, env)
    ref = registry.ModelRef(env.model_name, versions[0])
    online_store.publish_for(lakehouse, ref, online_store.store_path(env.home, env.catalog))
    running = server.start(env)
    holdout = seed["holdout"].head(200).reset_index(drop=True)
    columns = training.input_columns(model_cfg_session)
    model = mlflow.pyfunc.load_model(ref.uri)
    expected = model.predict(holdout[columns])
    yield SimpleNamespace(
        env=env,
        url=running.url,
        api=Client(running.url, settings.load(env).token()),
        name=env.model_name,
        v1=versions[0],
        v2=versions[1],
        broken=versions[2],
        holdout=holdout,
        columns=columns,
        expected=np.asarray(expected),
        lakehouse=lakehouse,
        model=model,
    )
    server.stop(env)
    mp.undo()


def entity(live, version, name=None):
    return {"entity_name": live.name, "entity_version": version, **({"name": name} if name else {})}


def split(live, rows):
    frame = live.holdout.loc[rows, live.columns]
    return {"dataframe_split": {"columns": live.columns, "data": json.loads(frame.to_json(orient="values", date_format="iso"))}}


def records(live, rows):
    return json.loads(live.holdout.loc[rows, live.columns].to_json(orient="records", date_format="iso"))


def test_health_needs_no_token_and_the_api_needs_the_right_one(live):
    status, _, body = Client(live.url, "").call("GET", "/health")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    status, _, body = Client(live.url, "").call("GET", "/api/2.0/serving-endpoints")
    assert status == 401 and json.loads(body)["error_code"] == "UNAUTHENTICATED"
    status, _, body = Client(live.url, "wrong-token").call("GET", "/api/2.0/serving-endpoints")
    assert status == 403 and json.loads(body)["error_code"] == "PERMISSION_DENIED"


def test_create_then_query_in_every_format(live):
    created = live.api.create(EP, {"served_entities": [entity(live, live.v1)]})
    assert created["state"] == {"ready": "NOT_READY", "config_update": "IN_PROGRESS"}
    endpoint = live.api.wait(EP)
    assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    assert endpoint["config"]["config_version"] == 1
    served = endpoint["config"]["served_entities"][0]
    assert (served["name"], served["state"]["deployment"]) == (f"{live.name}-{live.v1}", "DEPLOYMENT_READY")
    assert [e["name"] for e in live.api.list()] == [EP]
    rows = [0, 1, 2]
    bodies = [
        split(live, rows),
        {"dataframe_records": records(live, rows)},
        {"instances": records(live, rows)},
        {"inputs": {c: [r[c] for r in records(live, rows)] for c in live.columns}},
    ]
    for body in bodies:
        status, headers, answer = live.api.query(EP, body)
        assert status == 200, answer
        assert headers["served-model-name"] == f"{live.name}-{live.v1}"
        assert np.allclose(answer["predictions"], live.expected[rows], rtol=0, atol=1e-12)


def test_keys_alone_score_like_batch_inference(live):
    keys = live.holdout[["flight_id", "origin", "sched_dep_ts"]].assign(sched_dep_ts=lambda f: f["sched_dep_ts"].astype(str))
    status, _, answer = live.api.query(EP, {"dataframe_records": keys.to_dict(orient="records")})
    assert status == 200, answer
    assert len(answer["predictions"]) == len(live.holdout)
    assert np.allclose(answer["predictions"], live.expected, rtol=0, atol=1e-9)


def lookup_misses(live, name: str) -> int:
    text = live.api.metrics(EP)
    line = f'serving_feature_lookup_misses_total{{endpoint="{EP}",served_entity="{name}"}} '
    return int(float(next(x for x in text.splitlines() if x.startswith(line)).split()[-1]))


def test_keys_not_in_the_online_store_are_scored_and_counted(live):
    # Scored from null features, as Databricks scores them, but counted in the endpoint's metrics.
    name = f"{live.name}-{live.v1}"
    before = lookup_misses(live, name)
    known = (
        live.holdout[["flight_id", "origin", "sched_dep_ts"]].head(2).assign(sched_dep_ts=lambda f: f["sched_dep_ts"].astype(str))
    )
    unknown = known.assign(flight_id="no-such-flight")
    rows = [*known.to_dict(orient="records"), *unknown.to_dict(orient="records")]
    status, _, answer = live.api.query(EP, {"dataframe_records": rows})
    assert status == 200 and len(answer["predictions"]) == 4
    assert lookup_misses(live, name) - before == 2
    live.api.query(EP, {"dataframe_records": rows[:2]})
    assert lookup_misses(live, name) - before == 2


def test_features_sent_with_the_keys_win_over_the_looked_up_ones(live):
    row = live.holdout.iloc[[7]]
    keys = {
        "flight_id": row["flight_id"].iloc[0],
        "origin": row["origin"].iloc[0],
        "sched_dep_ts": str(row["sched_dep_ts"].iloc[0]),
    }
    changed = {"precip": 2.0, "visib": 0.5, "dep_hour": 23.0}
    status, _, answer = live.api.query(EP, {"dataframe_records": [{**keys, **changed}]})
    assert status == 200, answer
    expected = live.model.predict(row[live.columns].assign(**changed))
    assert np.allclose(answer["predictions"], expected, rtol=0, atol=1e-9)
    assert not np.allclose(answer["predictions"], live.expected[7], rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "raw, status, words",
    [
        (b"{nope", 400, "not valid JSON"),
        (b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "nested too deeply to parse"),
        (b'{"inputs": [], "instances": []}', 400, "exactly one of"),
        (b'{"params": {}}', 400, "(found: none)"),
        (json.dumps({"dataframe_records": [{"carrier": "UA", "temperature": 3}]}).encode(), 400, "unknown column(s) temperature"),
        (json.dumps({"dataframe_records": [{"carrier": "UA"}]}).encode(), 400, "missing column(s)"),
    ],
)
def test_bad_input_gets_a_4xx_and_the_server_keeps_serving(live, raw, status, words):
    code, _, body = _post(live, f"/serving-endpoints/{EP}/invocations", raw)
    assert code == status and words in json.loads(body)["message"]
    assert live.api.query(EP, split(live, [5]))[0] == 200


def test_wrong_types_and_forbidden_missing_values_get_400(live):
    row = records(live, [0])[0]
    for bad, words in (
        ({**row, "temp": "warm"}, "column 'temp' must hold numbers"),
        ({**row, "carrier": None}, "column 'carrier' has no value in row 0"),
    ):
        status, _, answer = live.api.query(EP, {"dataframe_records": [bad]})
        assert status == 400 and words in answer["message"]


def test_unknown_endpoint_oversized_body_and_wrong_content_type(live):
    status, _, answer = live.api.query("nowhere", split(live, [0]))
    assert status == 404 and answer["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    url = urlparse(live.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.putrequest("POST", f"/serving-endpoints/{EP}/invocations")
    conn.putheader("Authorization", f"Bearer {live.api.token}")
    conn.putheader("Content-Length", str(17 * 1024 * 1024))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and b"over the limit" in response.read()
    conn.close()
    status, _, body = _post(live, f"/serving-endpoints/{EP}/invocations", b"a,b\n1,2", "text/csv")
    assert status == 415 and b"send application/json" in body


def _post(live, path, raw, content_type="application/json"):
    url = urlparse(live.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.request("POST", path, raw, {"Authorization": f"Bearer {live.api.token}", "Content-Type": content_type})
    response = conn.getresponse()
    out = response.status, dict(response.headers), response.read()
    conn.close()
    return out


def test_a_config_body_too_deep_to_parse_gets_400(live):
    status, _, body = _post(live, "/api/2.0/serving-endpoints", b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    answer = json.loads(body)
    assert (status, answer["error_code"]) == (400, "MALFORMED_REQUEST") and "nested too deeply" in answer["message"]


def test_a_traffic_split_sends_exact_shares(live):
    a, b = f"{live.name}-{live.v1}", f"{live.name}-{live.v2}"
    live.api.update(
        EP,
        {
            "served_entities": [entity(live, live.v1), entity(live, live.v2)],
            "traffic_config": {
                "routes": [{"served_model_name": a, "traffic_percentage": 80}, {"served_model_name": b, "traffic_percentage": 20}]
            },
        },
    )
    endpoint = live.api.wait(EP)
    assert endpoint["config"]["config_version"] == 2
    names = [live.api.query(EP, split(live, [1]))[1]["served-model-name"] for _ in range(50)]
    assert (names.count(a), names.count(b)) == (40, 10)
    live.api.update(EP, {"served_entities": [entity(live, live.v1)]})
    assert live.api.wait(EP)["config"]["config_version"] == 3


@pytest.mark.parametrize(
    "config, status, words",
    [
        ({"served_entities": [{"entity_name": "staging.flights.delay_model", "entity_version": "99"}]}, 400, "99"),
        (
            {"served_entities": [{"entity_name": "prod.flights.delay_model", "entity_version": "1"}]},
            403,
            "the staging server may not serve prod.flights.delay_model: catalog prod is read-only here (the staging server writes only catalog staging)",
        ),
        (
            {
                "served_entities": [
                    {"entity_name": "staging.flights.delay_model", "entity_version": "1", "name": "a"},
                    {"entity_name": "staging.flights.delay_model", "entity_version": "2", "name": "b"},
                ],
                "traffic_config": {
                    "routes": [
                        {"served_model_name": "a", "traffic_percentage": 50},
                        {"served_model_name": "b", "traffic_percentage": 40},
                    ]
                },
            },
            400,
            "sum to 90",
        ),
    ],
)
def test_bad_configs_are_refused_and_nothing_changes(live, config, status, words):
    with pytest.raises(ServingError) as error:
        live.api.update(EP, config)
    assert error.value.status == status and words in str(error.value)
    endpoint = live.api.get(EP)
    assert endpoint["config"]["config_version"] == 3 and endpoint["state"]["config_update"] == "NOT_UPDATING"


def test_a_config_that_fails_to_load_leaves_the_old_one_serving(live):
    live.api.update(EP, {"served_entities": [entity(live, live.broken)]})
    endpoint = live.api.wait(EP)
    assert endpoint["state"] == {"ready": "READY", "config_update": "UPDATE_FAILED"}
    failed = endpoint["pending_config"]["served_entities"][0]["state"]
    assert failed["deployment"] == "DEPLOYMENT_FAILED" and "failed to load" in failed["deployment_state_message"]
    assert endpoint["config"]["config_version"] == 3
    status, headers, _ = live.api.query(EP, split(live, [0]))
    assert (status, headers["served-model-name"]) == (200, f"{live.name}-{live.v1}")


def test_an_update_during_an_update_is_refused(live):
    live.api.update(EP, {"served_entities": [entity(live, live.v2)]})  # loads a model: takes a moment
    with pytest.raises(ServingError, match="409 RESOURCE_CONFLICT: endpoint 'flights' is already being updated"):
        live.api.update(EP, {"served_entities": [entity(live, live.v1)]})
    assert live.api.wait(EP)["config"]["served_entities"][0]["entity_version"] == str(live.v2)
    live.api.update(EP, {"served_entities": [entity(live, live.v1)]})
    assert live.api.wait(EP)["config"]["served_entities"][0]["entity_version"] == str(live.v1)


def test_config_updates_under_load_fail_no_request(live):
    statuses: list[int] = []
    stop = threading.Event()

    def load():
        client = Client(live.url, live.api.token)
        while not stop.is_set():
            statuses.append(client.query(EP, split(live, [3, 4]))[0])

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    a, b = f"{live.name}-{live.v1}", f"{live.name}-{live.v2}"
    outcomes = []
    for config in (
        {"served_entities": [entity(live, live.v2)]},
        {
            "served_entities": [entity(live, live.v1), entity(live, live.v2)],
            "traffic_config": {
                "routes": [{"served_model_name": a, "traffic_percentage": 50}, {"served_model_name": b, "traffic_percentage": 50}]
            },
        },
        {"served_entities": [entity(live, live.broken)]},
        {"served_entities": [entity(live, live.v1)]},
    ):
        live.api.update(EP, config)
        outcomes.append(live.api.wait(EP)["state"]["config_update"])
    time.sleep(0.5)
    stop.set()
    for w in workers:
        w.join()
    assert outcomes == ["NOT_UPDATING", "NOT_UPDATING", "UPDATE_FAILED", "NOT_UPDATING"]
    assert len(statuses) > 20 and set(statuses) == {200}


def test_metrics_count_each_served_entity(live):
    before = metrics.parse(live.api.metrics(EP))
    for _ in range(7):
        live.api.query(EP, split(live, [0]))
    live.api.query(EP, {"dataframe_records": [{"carrier": 1}]})
    after = metrics.parse(live.api.metrics(EP))
    name = f"{live.name}-{live.v1}"
    seen = after[name].since(before[name])
    assert (seen.requests, seen.errors) == (8, 0)
    assert 'status="400"' in live.api.metrics(EP)


def test_delete_removes_an_endpoint(live):
    live.api.create("scratch", {"served_entities": [entity(live, live.v2)]})
    assert live.api.wait("scratch")["state"]["ready"] == "READY"
    live.api.delete("scratch")
    assert live.api.get("scratch") is None
    assert [e["name"] for e in live.api.list()] == [EP]
    with pytest.raises(ServingError, match="404 RESOURCE_DOES_NOT_EXIST"):
        live.api.delete("scratch")


def test_every_request_lands_in_the_inference_table_and_a_restart_restores_endpoints(live):
    capture = {"catalog_name": "staging", "schema_name": "flights", "table_name_prefix": "captured"}
    live.api.create("captured", {"served_entities": [entity(live, live.v1)], "auto_capture_config": capture})
    assert live.api.wait("captured")["state"]["ready"] == "READY"
    sent = {}
    unknown = {"flight_id": "no-such-flight", "origin": "EWR", "sched_dep_ts": "2013-03-02 06:00:00"}
    for i in range(25):
        body = split(live, [i]) if i % 5 else {"dataframe_records": [{"carrier": "UA"}]}
        if i == 24:  # keys the online store does not hold: scored, and marked in the table
            body = {"dataframe_records": [unknown, unknown]}
        body["client_request_id"] = f"c{i}"
        status, headers, answer = live.api.query("captured", body)
        sent[headers["x-request-id"]] = (f"c{i}", status, answer)
    server.stop(live.env)  # a clean shutdown writes everything still queued
    table = live.lakehouse.read("staging.flights.captured_payload").toPandas()
    assert len(table) == 25 and set(table["databricks_request_id"]) == set(sent)
    for row in table.itertuples():
        client_id, status, answer = sent[row.databricks_request_id]
        assert (row.client_request_id, row.status_code) == (client_id, status)
        assert json.loads(row.response) == answer
        assert row.served_entity_id == f"{live.name}-{live.v1}"
        assert row.execution_duration_ms >= 0 and str(row.request_date) == str(row.request_time.date())
        assert row.feature_lookup_misses == (2 if client_id == "c24" else 0)

    running = server.start(live.env)  # the saved endpoints come back
    api = Client(running.url, live.api.token)
    restored = {e["name"]: e for e in (api.wait(n) for n in (EP, "captured"))}
    assert {n: e["state"]["ready"] for n, e in restored.items()} == {EP: "READY", "captured": "READY"}
    assert [e["entity_version"] for e in restored[EP]["config"]["served_entities"]] == [str(live.v1)]
    assert restored["captured"]["config"]["auto_capture_config"]["table_name_prefix"] == "captured"
    assert api.query(EP, split(live, [0]))[0] == 200
