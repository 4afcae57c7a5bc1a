"""The lakehouse's Spark server under the faults a user meets: a taken port, a stale server,
a server that died, and its settings. Real servers, in a lakehouse of the test's own."""

import json
import os
import signal
import socket
from pathlib import Path

import pytest

from lib.core.config import PROJECT_DIR, load_env
from lib.core.errors import ConfigError, SetupError
from lib.platform.services import processes
from lib.platform.spark import builder as spark
from lib.platform.spark import server as spark_server


@pytest.fixture
def own_server(home, monkeypatch):
    """Start servers in this test's lakehouse (not the session's): no $SPARK_REMOTE."""
    monkeypatch.delenv(spark.REMOTE_ENV_VAR, raising=False)
    lines = []
    yield load_env("staging"), lines
    spark_server.stop(home, say=lines.append)


@pytest.mark.slow
def test_a_taken_port_a_stale_server_and_a_dead_one(own_server, home, monkeypatch):
    env, lines = own_server
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv(spark_server.PORT_ENV_VAR, str(port))
        first = spark_server.ensure(env, say=lines.append)
    assert lines[0] == f"port {port} is taken by another program: the Spark server uses port {first.url.rsplit(':', 1)[1]}"
    assert first.url != f"sc://127.0.0.1:{port}" and lines[1].startswith(f"started the Spark server at {first.url}")

    # Running and current: reused, nothing said.
    lines.clear()
    assert spark_server.ensure(env, say=lines.append) == first and lines == []
    session = spark.attach(first.url)
    assert session.range(3).count() == 3
    session.stop()

    # Started with other code or settings: restarted, with a line saying why.
    state_file = home / "spark" / "server.json"
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({**state, "fingerprint": "older-code"}))
    second = spark_server.ensure(env, say=lines.append)
    assert lines[0] == f"restarting the Spark server (pid {first.pid}): lib/ or its settings changed since it started"
    assert second.pid != first.pid
    with pytest.raises(ProcessLookupError):
        os.kill(first.pid, 0)

    # Died: a task is told where the log is; the next run starts a fresh one.
    os.kill(second.pid, signal.SIGKILL)
    os.waitpid(second.pid, 0)
    assert spark_server.died(home, second.url) == (
        f"the Spark server at {second.url} is gone (log: {home / 'spark' / 'server.log'}); the next run starts a fresh one"
    )
    lines.clear()
    third = spark_server.ensure(env, say=lines.append)
    assert third.pid not in (first.pid, second.pid) and lines[0].startswith("started the Spark server")
    assert spark_server.died(home, third.url) is None


def test_settings_are_checked_and_overridden(staging, monkeypatch):
    assert spark_server.settings(staging).mode == "connect"
    monkeypatch.setenv(spark_server.MODE_ENV_VAR, "local")
    monkeypatch.setenv(spark_server.MASTER_ENV_VAR, "spark://127.0.0.1:7077")
    cfg = spark_server.settings(staging)
    assert (cfg.mode, cfg.master, cfg.port) == ("local", "spark://127.0.0.1:7077", 15002)
    monkeypatch.setenv(spark_server.MODE_ENV_VAR, "cluster")
    with pytest.raises(
        ConfigError,
        match=r"^environment variables over conf/environments.yml \(environment staging\): "
        r"spark.mode: must be one of connect, local, got 'cluster'$",
    ):
        spark_server.settings(staging)


def test_a_misspelt_setting_is_named(tmp_path):
    text = (PROJECT_DIR / "conf" / "environments.yml").read_text()
    (tmp_path / "environments.yml").write_text(text.replace("    mode: connect", "    mod: local", 1))
    with pytest.raises(ConfigError, match=r"environments.yml: defaults.spark.mod: unknown key \(did you mean mode\?\)$"):
        load_env("staging", tmp_path)


def test_attaching_to_nothing_is_one_line():
    port = processes.free_port()
    with pytest.raises(SetupError) as nobody:
        spark.attach(f"sc://127.0.0.1:{port}")
    assert str(nobody.value) == (
        f"cannot attach to the Spark server at sc://127.0.0.1:{port}: nobody answers "
        "(start one with `python -m lib.platform.spark start`, or unset SPARK_REMOTE)"
    )


def test_the_server_maps_the_class_archive_made_at_set_up(request):
    """`make install` archived the server JVM's classes (`python -m lib.platform.spark archive`); the
    session's server maps that archive instead of loading each class from the jars."""
    running = request.getfixturevalue("spark_server")
    archive = spark_server.class_archive()
    assert archive.exists(), "no class archive: run `python -m lib.platform.spark archive` (make install does)"
    assert str(archive) in Path(f"/proc/{running.pid}/maps").read_text()
