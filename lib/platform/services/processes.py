"""Stopping the servers this project starts (SIGTERM, wait, reaping our own children, SIGKILL),
and the command line the lakehouse's own services share (PostgreSQL, Kafka)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import time
from pathlib import Path
from lib.core import config
from lib.core.errors import LakehouseError


def alive(pid: int) -> bool:
    """Whether pid still runs; a child of this process that exited is reaped, not a zombie."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def terminate(pid: int, timeout: float, kill: bool = True) -> bool:
    """SIGTERM pid and wait up to timeout for it to exit; then SIGKILL it if `kill`.

    Returns whether it is gone.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            if not kill:
                return False
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = float("inf")  # SIGKILL cannot be ignored: wait for it
        time.sleep(0.1)
    return True


def answers(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def locked(folder: Path):
    """One process at a time sets up, starts or stops the service whose files are in folder."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def running_port(state: Path) -> int | None:
    """The port a service's state file records, if something answers on it."""
    port = json.loads(state.read_text())["port"] if state.exists() else None
    return port if port and answers(port) else None


def service_main(prog: str, argv: list[str], name: str, start, stop, status, remove, extra: dict | None = None) -> int:
    """`python -m <prog> start|stop|status|remove [--env prod]` for a service run per lakehouse.

    start(home) -> its address; stop(home) -> whether one ran; status(home) -> its address or
    None; remove(home): stop it and delete its data. `extra` maps more commands to functions of
    no argument. Errors are one line on stderr and exit code 1.
    """
    import argparse
    import sys


    parser = argparse.ArgumentParser(prog=f"python -m {prog}")
    parser.add_argument("command", choices=[*(extra or {}), "start", "stop", "status", "remove"])
    parser.add_argument("--env", default="prod")
    args = parser.parse_args(argv)
    try:
        if args.command in (extra or {}):
            extra[args.command]()
            return 0
        home = config.load_env(args.env).home
        if args.command == "start":
            print(start(home))
        elif args.command == "remove":
            remove(home)
        elif args.command == "stop":
            if not stop(home):
                print(f"no {name} runs for {home}")
        else:
            print(status(home) or f"no {name} runs for {home}")
    except LakehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
