"""The lakehouse's own Kafka broker: started, stopped, restarted with its topics; bad setups are one line."""

import pytest

from lib.core import names
from lib.core.config import parse_model
from lib.core.config.blocks import Destinations
from lib.core.errors import ConfigError, PublishError, SetupError
from lib.platform.services import kafka_client as kafka
from lib.platform.services import kafka_server, processes


@pytest.mark.slow
@pytest.mark.kafka  # a broker of its own, a JVM from Maven's jars: out of `make unit`, which needs no Java or Maven
def test_a_broker_of_its_own_keeps_its_topics_across_a_restart(tmp_path, monkeypatch):
    monkeypatch.delenv(kafka_server.SERVERS_ENV_VAR, raising=False)
    monkeypatch.setenv(kafka_server.PORT_ENV_VAR, "0")
    said = []
    bootstrap = kafka_server.servers(tmp_path, say=said.append)
    try:
        assert said == [f"started Kafka {kafka_server.KAFKA_VERSION} on {bootstrap} (data {tmp_path / 'kafka' / 'data'})"]
        assert kafka_server.servers(tmp_path, say=said.append) == bootstrap and len(said) == 1  # running: not started twice
        kafka.ensure_topic(bootstrap, "staging.flights.delay-model.predictions")
        assert kafka_server.stop(tmp_path, say=said.append) and kafka_server.running_servers(tmp_path) is None
        assert kafka_server.servers(tmp_path, say=said.append) == bootstrap  # the same ports, the same storage
        assert not kafka.delete_topic(bootstrap, "never.made")
        assert kafka.delete_topic(bootstrap, "staging.flights.delay-model.predictions")  # it was still there
    finally:
        kafka_server.remove(tmp_path)
    assert not (tmp_path / "kafka").exists() and kafka_server.running_servers(tmp_path) is None


def test_no_broker_is_one_line_naming_the_destination():
    port = processes.free_port()
    with pytest.raises(
        PublishError,
        match=rf"^kafka destination: no broker answers at 127.0.0.1:{port} \(.*\): "
        r"start it \(python -m lib.platform.services.kafka_server start\)",
    ):
        kafka.ensure_topic(f"127.0.0.1:{port}", "some.topic", timeout=1)


def test_fetching_the_broker_without_maven_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(kafka_server, "_manifest", lambda: tmp_path / "none-yet.txt")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SetupError, match=r"^Maven \(mvn\) is needed once to fetch Kafka's broker jars: apt-get install maven"):
        kafka_server.broker_classpath()


def test_the_topic_is_named_by_endpoint_and_servers_are_checked(staging):
    assert names.topic(staging.catalog, staging.schema, "delay-model") == "staging.flights.delay-model.predictions"
    with pytest.raises(ConfigError, match=r"^kafka: publish.kafka.bootstrap_servers: must match pattern .*, got 'broker 9092'$"):
        parse_model(Destinations, {"kafka": {"enabled": True, "bootstrap_servers": "broker 9092"}}, "kafka", "publish")
    found = parse_model(Destinations, {"kafka": {"enabled": True, "bootstrap_servers": "a:9092,b.c:9093"}}, "kafka")
    assert found.kafka.bootstrap_servers == "a:9092,b.c:9093"


def test_the_command_line_says_what_runs(home, capsys, monkeypatch):
    monkeypatch.delenv(kafka_server.SERVERS_ENV_VAR, raising=False)
    assert kafka_server.main(["status", "--env", "staging"]) == 0 and kafka_server.main(["stop", "--env", "staging"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"no Kafka broker runs for {home}"] * 2
    assert kafka_server.main(["status", "--env", "nowhere"]) == 1
    assert capsys.readouterr().err.startswith("error: unknown environment 'nowhere'")
