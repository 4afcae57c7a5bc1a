import threading
import time

import pytest

from lib.core import names
from lib.core.config import load_env
from lib.platform import registry
from lib.serving import server, settings
from lib.serving.client import Client

pytestmark = pytest.mark.slow


def test_without_a_champion_nothing_is_served(executed, trained, task_values, home):
    with executed("pipelines/05_serve.ipynb", env="staging"):
        pass
    assert task_values() == {"endpoint": "delay-model", "endpoint_action": "skipped", "serving": ""}
    assert server.find(settings.load(load_env("staging"))) is None


def test_creates_the_endpoint_then_moves_it_to_a_new_champion_without_a_failed_request(
    executed, champion, task_values, holdout, home
):
    with executed("pipelines/05_serve.ipynb", env="staging", run_id="job-1"):
        pass
    first = f"{champion.name}-{champion.version}"
    assert task_values() == {"endpoint": "delay-model", "endpoint_action": "created", "serving": first}
    cfg = settings.load(load_env("staging"))
    api = Client(server.find(cfg).url, cfg.token())
    keys = holdout[["flight_id", "origin", "sched_dep_ts"]].head(3).astype({"sched_dep_ts": str})
    body = {"dataframe_records": keys.to_dict(orient="records")}
    status, headers, answer = api.query("delay-model", body)
    assert status == 200 and headers["served-model-name"] == first and len(answer["predictions"]) == 3

    # A new Champion (the same artifacts registered again), rolled out 50% -> 100% under load.
    # step_seconds=0 watches the 50% step for no time: far fewer than min_requests (50) reach
    # the new version, so the step is "not judged" (the ok/failed verdicts: test_serving_rollout).
    source = registry.client().get_model_version_download_uri(champion.name, champion.version)
    v2 = registry.ModelRef(champion.name, str(registry.client().create_model_version(champion.name, source=source).version))
    registry.move_alias(v2, names.CHAMPION, "test: a new Champion")
    registry.move_alias(champion, names.PREVIOUS, "test: replaced")
    second = f"{champion.name}-{v2.version}"
    statuses, served, stop = [], set(), threading.Event()

    def load():
        client = Client(api.url, api.token)
        while not stop.is_set():
            code, headers, _ = client.query("delay-model", body)
            statuses.append(code)
            served.add(headers.get("served-model-name"))

    worker = threading.Thread(target=load)
    worker.start()
    try:
        with executed("pipelines/05_serve.ipynb", env="staging", rollout_steps="50,100", step_seconds=0.0) as tb:
            steps = tb.value("[(s.percent, s.verdict) for s in outcome.steps]")
        deadline = time.monotonic() + 30
        while second not in served and time.monotonic() < deadline:  # the load's next request, on 100%
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join()
    assert task_values()["endpoint_action"] == "updated" and task_values()["serving"] == second
    assert steps == [[50, "not judged"]]
    assert len(statuses) > 50 and set(statuses) == {200}
    assert served == {first, second}
    endpoint = api.get("delay-model")
    assert [e["name"] for e in endpoint["config"]["served_entities"]] == [second]
    assert endpoint["config"]["auto_capture_config"]["state"]["payload_table"]["name"] == "staging.flights.delay_model_payload"
