"""The processes behind the lakehouse's servers: whether a pid runs and which start of it that is,
stopping one (SIGTERM, wait, reaping our own children, SIGKILL), ports, and a log's last error."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

_ERROR_WORDS = ("Exception", "Error", "ERROR", "FATAL", "error:")


def alive(pid: int) -> bool:
    """Whether pid still runs; a child of this process that exited is reaped, not a zombie."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: it runs
        pass
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        # A zombie: exited, not yet reaped by its parent (or by an init that never reaps). A
        # leader that is a zombie while other threads still run (a JVM shutting down) runs.
        return not (fields[0] == "Z" and int(fields[17]) <= 1)
    return True


def start_token(pid: int) -> str | None:
    """When pid started: this boot's id and the clock tick it started at (None if it does not run).

    A pid that names another program later (after the server died, or a reboot) has another
    token, so a state file's pid is signalled only while the token it recorded still matches.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    return f"{boot}:{stat.rsplit(')', 1)[1].split()[19]}"  # field 22, starttime; the name may hold spaces


def terminate(pid: int, timeout: float, kill: bool = True, sig: int = signal.SIGTERM) -> bool:
    """Send pid `sig` (SIGTERM) and wait up to timeout for it to exit; then SIGKILL it if `kill`.

    A pid that leads its process group (a server started in a session of its own) is signalled
    alone, since it shuts its own children down; on SIGKILL, and once it has exited, the rest
    of its group is killed too (a Spark server's Python workers). Returns whether it is gone.
    """
    try:
        leads = os.getpgid(pid) == pid
    except ProcessLookupError:
        leads = False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            if not kill:
                return False
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if leads:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            deadline = float("inf")  # SIGKILL cannot be ignored: wait for it
        time.sleep(0.1)
    if leads:  # what it left of its group: a streaming query's worker outlives a JVM stopped mid-query
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
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


def last_error(log: Path, since: int = 0) -> str:
    """The last line of the log (from byte `since` on) that reports an error, else its last line."""
    try:
        with open(log, "rb") as handle:
            handle.seek(since)
            text = handle.read().decode(errors="replace")
    except OSError:
        text = ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if any(word in line for word in _ERROR_WORDS)]
    return (errors or lines or ["(no output)"])[-1][:300]
