"""Stopping the servers this project starts: SIGTERM, wait (reaping our own children), SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import time


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
