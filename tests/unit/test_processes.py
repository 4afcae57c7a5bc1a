"""The managed-service helper with a real tiny server (Python's HTTP server on a free loopback
port): start, readiness, reuse, restart, stop, stale and foreign state files, a server that dies
at start, Ctrl-C while waiting, and two starters at once. No JVM, no PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from lib.core.errors import SetupError
from lib.platform.services import processes
from lib.platform.services.managed import Service

# argv: seconds to wait before listening, port[, "ignore-term"][, "child"]
SERVER = """
import http.server, signal, subprocess, sys, time
delay, port, flags = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
if "ignore-term" in flags:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if "child" in flags:  # a worker of its own, as a Spark server has: its pid goes to stdout
    print(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]).pid, flush=True)
print("starting", flush=True)
time.sleep(delay)
http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


@pytest.fixture
def service(tmp_path):
    svc = Service("the test server", tmp_path / "svc", stop_timeout=10.0)
    yield svc
    state = svc.read()
    if state is not None:  # a test that failed half way: no server outlives it
        processes.terminate(state["pid"], timeout=5)


def launch(
    service: Service, *flags: str, delay: float = 0.0, timeout: float = 30.0, fingerprint: str | None = None, ready=None
) -> dict:
    port = processes.free_port()
    return service.start(
        [sys.executable, "-c", SERVER, str(delay), str(port), *flags],
        ready or (lambda state: processes.answers(state["port"])),
        timeout,
        port=port,
        fingerprint=fingerprint,
    )


def ensure(service: Service, said: list[str], fingerprint: str | None = None, **kwargs) -> dict:
    return service.ensure(
        lambda: launch(service, fingerprint=fingerprint, **kwargs),
        lambda state: processes.answers(state["port"]),
        said.append,
        fingerprint=fingerprint,
    )


def a_sleeper() -> subprocess.Popen:
    """A process that is not the service's (it must never be signalled)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_start_ready_status_reuse_and_stop(service):
    said = []
    first = ensure(service, said)
    assert processes.answers(first["port"]) and said == []
    recorded = json.loads(service.state_file.read_text())
    assert recorded == first and recorded["pid_start"] == processes.start_token(first["pid"])
    assert os.getpgid(first["pid"]) == first["pid"]  # a session of its own: Ctrl-C in the starter spares it

    assert service.read() == first  # status
    assert ensure(service, said) == first and said == []  # running and current: reused, nothing said

    assert service.stop() == first
    assert not processes.alive(first["pid"]) and not processes.answers(first["port"])
    assert not service.state_file.exists() and service.read() is None
    assert service.stop() is None  # nothing runs: nothing to stop


def test_a_changed_fingerprint_or_a_silent_server_is_restarted(service):
    said = []
    first = ensure(service, said, fingerprint="code-1")
    second = ensure(service, said, fingerprint="code-2")
    assert said == [f"restarting the test server (pid {first['pid']}): what it runs changed since it started"]
    assert second["pid"] != first["pid"] and second["fingerprint"] == "code-2" and not processes.alive(first["pid"])

    said.clear()
    third = service.ensure(
        lambda: launch(service, fingerprint="code-2"),
        lambda state: state["pid"] != second["pid"],  # the second answers nobody
        said.append,
        fingerprint="code-2",
    )
    assert said == [f"restarting the test server (pid {second['pid']}): it does not answer"]
    assert third["pid"] != second["pid"] and not processes.alive(second["pid"])


def test_a_stale_state_file_after_a_crash_is_removed_and_a_fresh_server_started(service):
    said = []
    crashed = ensure(service, said)
    os.kill(crashed["pid"], signal.SIGKILL)
    os.waitpid(crashed["pid"], 0)
    assert service.state_file.exists() and service.read() is None and not service.state_file.exists()

    service.record(crashed["pid"], port=crashed["port"])  # the state a crash left behind
    fresh = ensure(service, said)
    assert fresh["pid"] != crashed["pid"] and said == [] and service.read() == fresh


@pytest.mark.parametrize(
    "state",
    [
        "token",  # the pid runs, but it is another start of it (the server died, the pid was reused)
        "no-token",  # a state file that does not say which start of its pid it names
        "not-json",  # half a file
    ],
)
def test_a_pid_that_is_not_ours_is_never_signalled(service, state):
    sleeper = a_sleeper()
    try:
        service.folder.mkdir(parents=True)
        text = {
            "token": json.dumps({"pid": sleeper.pid, "pid_start": "another-boot:1", "port": 1}),
            "no-token": json.dumps({"pid": sleeper.pid, "port": 1}),
            "not-json": f'{{"pid": {sleeper.pid}, "po',
        }[state]
        service.state_file.write_text(text)
        assert service.stop() is None and not service.state_file.exists()
        time.sleep(0.2)
        assert sleeper.poll() is None  # still running: never signalled
        said = []
        started = ensure(service, said)
        assert started["pid"] != sleeper.pid and sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_server_that_dies_before_ready_is_one_line_with_its_logs_last_error(service):
    service.folder.mkdir(parents=True)
    service.log_file.write_text("RuntimeError: an earlier run's error, not this one's\n")
    script = "import sys; print('starting'); print('ValueError: port is not a number', file=sys.stderr); sys.exit(3)"
    with pytest.raises(SetupError) as failed:
        service.start([sys.executable, "-c", script], lambda state: False, 30.0)
    assert str(failed.value) == (
        f"the test server exited at start (code 3): ValueError: port is not a number (log: {service.log_file})"
    )
    assert not service.state_file.exists()


def test_a_server_that_never_gets_ready_is_stopped(service):
    seen = []
    with pytest.raises(SetupError, match=r"^the test server did not get ready within 1 s: starting \(log: .*\)$"):
        launch(service, delay=60, timeout=1.0, ready=lambda state: seen.append(state["pid"]) and False)
    assert seen and not processes.alive(seen[0]) and not service.state_file.exists()


def test_ctrl_c_while_waiting_leaves_no_server_behind(service):
    seen = []

    def interrupted(state):
        seen.append(state["pid"])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        launch(service, ready=interrupted)
    assert len(seen) == 1 and not processes.alive(seen[0]) and not service.state_file.exists()


def test_stop_signals_its_process_group_and_a_stubborn_server_is_killed_or_refused(tmp_path):
    patient = Service("the patient server", tmp_path / "patient", stop_timeout=1.0, kill_late=False)
    state = launch(patient, "ignore-term")
    with pytest.raises(SetupError, match=rf"^the patient server \(pid {state['pid']}\) did not stop within 1 s$"):
        patient.stop()
    assert processes.alive(state["pid"]) and patient.read() == state  # refused: still recorded, its data kept

    killer = Service("the patient server", tmp_path / "patient", stop_timeout=1.0)  # SIGKILL after the timeout
    assert killer.stop() == state and not processes.alive(state["pid"]) and not killer.state_file.exists()

    grouped = Service("the grouped server", tmp_path / "grouped", stop_timeout=10.0)
    state = launch(grouped, "child")
    child = int(grouped.log_file.read_text().split()[0])
    assert processes.alive(child)
    grouped.stop()
    assert not processes.alive(state["pid"])
    deadline = time.monotonic() + 5
    while processes.alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not processes.alive(child)  # its worker went with it


def test_two_starters_at_once_start_one_server(service):
    launched, inside, results, said_first, said_second = [], threading.Event(), {}, [], []

    def slow_start():
        inside.set()  # the first starter holds the lock now
        launched.append(1)
        return launch(service, delay=1.0)

    def first():
        results["first"] = service.ensure(slow_start, lambda state: processes.answers(state["port"]), said_first.append)

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(30)
    results["second"] = service.ensure(
        lambda: launched.append(2) or launch(service), lambda state: processes.answers(state["port"]), said_second.append
    )
    thread.join(60)
    assert launched == [1] and results["first"] == results["second"]
    assert said_second == ["waiting: another run is starting or stopping the test server"] and said_first == []


def test_a_server_that_records_its_own_state(service):
    """The serving server's way: it writes its state once it listens (its port may be a free one)."""
    script = (
        "import http.server, os, sys; from pathlib import Path; from lib.platform.services.managed import Service; "
        "server = http.server.HTTPServer(('127.0.0.1', 0), http.server.SimpleHTTPRequestHandler); "
        "Service('the test server', Path(sys.argv[1])).record(os.getpid(), port=server.server_port); "
        "server.serve_forever()"
    )
    state = service.start(
        [sys.executable, "-c", script, str(service.folder)], lambda state: processes.answers(state["port"]), 30.0, record=False
    )
    assert processes.answers(state["port"]) and service.read() == state
    service.forget(state["pid"] + 1)  # another pid's clean-up leaves it alone
    assert service.read() == state
    assert service.stop() == state and not processes.alive(state["pid"])


@pytest.mark.parametrize(
    "text, since, expected",
    [
        ("starting\nWARN slow disk\nERROR bind failed\nshutting down\n", 0, "ERROR bind failed"),
        ("starting\nlistening\n", 0, "listening"),
        ("", 0, "(no output)"),
        ("Exception: old\nstarting again\n", len("Exception: old\n"), "starting again"),
        ("FATAL:  data directory has wrong ownership\n", 0, "FATAL:  data directory has wrong ownership"),
    ],
)
def test_last_error_is_the_last_line_that_reports_one(tmp_path, text, since, expected):
    log = tmp_path / "server.log"
    log.write_text(text)
    assert processes.last_error(log, since) == expected
