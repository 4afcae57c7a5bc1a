"""One lifecycle for the lakehouse's local servers: Spark Connect, Kafka, PostgreSQL and serving.

A server keeps its files in a folder of its own: `server.json`, its state (pid, when that pid
started, its address, the fingerprint of what it runs, when it was started); `lock`, so that one
process at a time starts, restarts or stops it (the others wait); and its log. It runs in a
session of its own, so Ctrl-C in the run that started it leaves it to the other runs that share
it; a run interrupted while it waits for the server to get ready stops it again. A state file
counts only while its pid runs and is the same start of that pid, so a server that crashed
leaves a stale file that is removed, and a pid another program got since is never signalled.

Each server module declares only what differs: its command line, environment, readiness probe,
fingerprint and what `remove` deletes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from lib.core.errors import SetupError
from lib.platform.services import processes

Say = Callable[[str], None]


@dataclass(frozen=True)
class Service:
    """A server run per lakehouse (or per environment): where its files are and how it stops."""

    name: str  # in messages: "the Spark server", "Kafka's broker"
    folder: Path  # its state, lock and (unless `log` is given) log
    log: Path | None = None
    stop_signal: int = signal.SIGTERM  # PostgreSQL's fast shutdown is SIGINT
    stop_timeout: float = 60.0
    kill_late: bool = True  # SIGKILL one that does not stop in time; else an error, its data kept

    @property
    def state_file(self) -> Path:
        return self.folder / "server.json"

    @property
    def log_file(self) -> Path:
        return self.log or self.folder / "server.log"

    @contextlib.contextmanager
    def lock(self, say: Say | None = None) -> Iterator[None]:
        """One process at a time starts, restarts or stops the server; the others wait (and say so)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.folder / "lock")
        try:
            lock.acquire(blocking=False)
        except Timeout:
            if say is not None:
                say(f"waiting: another run is starting or stopping {self.name}")
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def read(self) -> dict | None:
        """The running server's state, or None; a stale state file (its pid gone, or another
        program's since) is removed."""
        try:
            text = self.state_file.read_text()
        except FileNotFoundError:
            return None
        state = _parse(text)
        if state is not None and processes.alive(state["pid"]) and processes.start_token(state["pid"]) == state["pid_start"]:
            return state
        with contextlib.suppress(FileNotFoundError):
            if self.state_file.read_text() == text:  # not one a starter wrote meanwhile
                self.state_file.unlink()
        return None

    def record(self, pid: int, **fields) -> dict:
        """Write the state of the server at pid; a reader never sees half a file."""
        state = {"pid": pid, "pid_start": processes.start_token(pid), "started_at": time.time(), **fields}
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / f".server.json.{os.getpid()}"
        partial.write_text(json.dumps(state, indent=2))
        partial.replace(self.state_file)
        return state

    def forget(self, pid: int) -> None:
        """Remove the state file if it names pid (a server that exits cleans up after itself)."""
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
            if json.loads(self.state_file.read_text())["pid"] == pid:
                self.state_file.unlink()

    def start(
        self,
        command: list[str],
        ready: Callable[[dict], bool],
        timeout: float,
        *,
        env: dict | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        fresh_log: bool = False,
        record: bool = True,
        **fields,
    ) -> dict:
        """Launch the server and wait until it is ready; returns its state.

        Args:
            command: its command line; env, cwd: its environment and folder; user: run it as
                this user (when we are root).
            ready: the readiness probe, given the state: polled until it answers True, the server
                exits or `timeout` seconds pass (then one SetupError line with the log's last error).
            fresh_log: start its log anew (else appended to).
            record: write its state (with `fields`) at launch; False for a server that writes
                its own state once it listens (`record` in that process).
        """
        log = self.log_file
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb" if fresh_log else "ab") as out:
            since = out.tell()
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
                cwd=cwd,
                user=user,
                group=user,
                extra_groups=[] if user else None,
            )
        try:
            if record:
                self.record(process.pid, **fields)
            started = time.monotonic()
            while True:
                if process.poll() is not None:  # before anything else reaps it: its exit code is said
                    raise SetupError(
                        f"{self.name} exited at start (code {process.returncode}): "
                        f"{processes.last_error(log, since)} (log: {log})"
                    )
                with contextlib.suppress(FileNotFoundError):
                    state = _parse(self.state_file.read_text())
                    if state is not None and state["pid"] == process.pid and ready(state):
                        break
                if time.monotonic() - started > timeout:
                    raise SetupError(
                        f"{self.name} did not get ready within {timeout:.0f} s: {processes.last_error(log, since)} (log: {log})"
                    )
                time.sleep(0.2)
        except BaseException:  # a failed start, or Ctrl-C while waiting: no server left behind
            processes.terminate(process.pid, timeout=10, sig=self.stop_signal)
            self.forget(process.pid)
            raise
        return state

    def ensure(
        self,
        start: Callable[[], dict],
        answers: Callable[[dict], bool],
        say: Say,
        fingerprint: str | None = None,
        changed: str = "what it runs changed since it started",
    ) -> dict:
        """The running server's state if it answers and runs what `fingerprint` names; else the
        state `start()` returns, after stopping a server that does not answer or runs stale code."""
        with self.lock(say):
            state = self.read()
            if state is not None:
                same = state.get("fingerprint") == fingerprint
                if same and answers(state):
                    return state
                say(f"restarting {self.name} (pid {state['pid']}): {'it does not answer' if same else changed}")
                self._halt(state, self.stop_timeout)
            return start()

    def stop(self, say: Say | None = None, timeout: float | None = None) -> dict | None:
        """Stop the server (its stop signal, then wait); returns the state of what was stopped."""
        if not self.state_file.exists():  # nothing to stop: no folder or lock made for it
            return None
        with self.lock(say):
            state = self.read()
            if state is not None:
                self._halt(state, self.stop_timeout if timeout is None else timeout)
            return state

    def _halt(self, state: dict, timeout: float) -> None:
        pid = int(state["pid"])
        if not processes.terminate(pid, timeout, kill=self.kill_late, sig=self.stop_signal):
            raise SetupError(f"{self.name} (pid {pid}) did not stop within {timeout:.0f} s")
        self.forget(pid)


def _parse(text: str) -> dict | None:
    """A state file's state: None for one that is half written or names no pid's start."""
    try:
        state = json.loads(text)
        state["pid"] = int(state["pid"])
    except (ValueError, KeyError, TypeError):
        return None
    return state if state.get("pid_start") else None
