"""The lakehouse's own PostgreSQL server, for real (Debian's programs), in a home of the test's own:
start, status, reuse, a SQL round trip, stop, a server no state file names, the command line, remove."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lib.platform.services import postgres, processes

pytestmark = pytest.mark.postgres


@pytest.fixture
def own(tmp_path, monkeypatch):
    """A lakehouse home whose server this test starts (not the session's), removed after it."""
    monkeypatch.delenv(postgres.URL_ENV_VAR, raising=False)
    monkeypatch.setenv(postgres.PORT_ENV_VAR, "0")
    home = tmp_path / "lakehouse"
    yield home
    postgres.remove(home)


def _postmaster(home) -> int:
    return int((postgres._data(home) / "postmaster.pid").read_text().split()[0])


def test_start_status_reuse_round_trip_stop_and_remove(own):
    said = []
    url = postgres.base_url(own, say=said.append)
    state = json.loads((own / "postgres" / "server.json").read_text())
    data = postgres._data(own)
    assert url == f"jdbc:postgresql://127.0.0.1:{state['port']}/" and state["data"] == str(data)
    assert said == [f"started PostgreSQL on 127.0.0.1:{state['port']} (data {data})"]
    assert state["pid"] == _postmaster(own) and postgres.has_data(own)
    assert postgres.running_url(own) == url  # status

    assert postgres.base_url(own, say=said.append) == url and len(said) == 1  # running: reused, not started twice

    with postgres.connect(url, "staging") as conn:
        conn.execute("CREATE SCHEMA flights")
        conn.execute("CREATE TABLE flights.predictions (flight INT, delay DOUBLE PRECISION)")
        conn.execute("INSERT INTO flights.predictions VALUES (1, 0.25), (2, 0.75)")
    with postgres.connect(url, "staging") as conn:
        rows = conn.execute("SELECT flight, delay FROM flights.predictions ORDER BY flight").fetchall()
    assert rows == [(1, 0.25), (2, 0.75)]

    assert postgres.stop(own, say=said.append) and said[-1] == f"stopped PostgreSQL (data {data})"
    assert postgres.running_url(own) is None and not processes.alive(state["pid"])
    assert not processes.answers(state["port"]) and not (own / "postgres" / "server.json").exists()
    assert not postgres.stop(own, say=said.append) and len(said) == 2  # nothing runs: nothing said

    again = postgres.base_url(own, say=said.append)  # the same data: the rows are still there
    with postgres.connect(again, "staging") as conn:
        assert conn.execute("SELECT count(*) FROM flights.predictions").fetchone() == (2,)
    postgres.remove(own)
    assert not data.exists() and postgres.running_url(own) is None and not postgres.has_data(own)


def test_a_server_that_no_state_file_names_is_stopped_before_a_new_one_starts(own):
    postgres.ensure(own, say=lambda line: None)
    orphan = _postmaster(own)
    (own / "postgres" / "server.json").unlink()  # e.g. started by pg_ctl, or its state file deleted
    assert postgres.running_url(own) is None
    port = postgres.ensure(own, say=lambda line: None)
    assert not processes.alive(orphan) and _postmaster(own) != orphan
    assert postgres.running_url(own) == f"jdbc:postgresql://127.0.0.1:{port}/" and processes.answers(port)


def test_the_command_line(own):
    env = {k: v for k, v in os.environ.items() if k != postgres.URL_ENV_VAR}
    env |= {"LAKEHOUSE_HOME": str(own), postgres.PORT_ENV_VAR: "0"}

    def run(*args: str) -> tuple[int, list[str], str]:
        done = subprocess.run(
            [sys.executable, "-m", "lib.platform.services.postgres", *args, "--env", "staging"],
            check=False,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        return done.returncode, done.stdout.splitlines(), done.stderr

    assert run("status") == (0, [f"no PostgreSQL server runs for {own}"], "")
    code, out, _ = run("start")
    port = json.loads((own / "postgres" / "server.json").read_text())["port"]
    data = postgres._data(own)
    assert (code, out) == (0, [f"started PostgreSQL on 127.0.0.1:{port} (data {data})", f"jdbc:postgresql://127.0.0.1:{port}/"])
    assert run("start")[:2] == (0, [f"jdbc:postgresql://127.0.0.1:{port}/"])  # reused
    assert run("status")[:2] == (0, [f"jdbc:postgresql://127.0.0.1:{port}/"])
    assert run("stop")[:2] == (0, [f"stopped PostgreSQL (data {data})"])
    assert run("stop")[:2] == (0, [f"no PostgreSQL server runs for {own}"])
    assert run("remove")[:2] == (0, []) and not data.exists()
    code, out, err = run("begin")
    assert code == 2 and "invalid choice: 'begin'" in err
