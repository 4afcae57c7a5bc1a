"""Warm notebook kernels for job runs: the next task's kernel boots while this task runs.

Starting a Python kernel costs ~3 s here, and importing pyspark, MLflow and lib ~1.5 s more;
a job of eight tasks paid that eight times in a row, and stopping each kernel ~1 s after it.
The pool keeps one kernel booting ahead (its imports preloaded, leaving no names behind) and
stops used kernels in the background, the way a Databricks job cluster keeps its REPLs warm.
Each task still gets a kernel of its own that no other task has run in.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from pathlib import Path

from lib.core.config import PROJECT_DIR

# Imported at kernel start, before the kernel answers; the notebooks' own imports then find them.
PRELOAD = ("pandas", "pyspark.sql.connect.session", "mlflow", "lib.platform.session")
START_TIMEOUT_S = 120.0


class KernelPool:
    """One kernel ahead: `take` hands out a booted kernel and starts booting the next one."""

    def __init__(self, folder: Path, kernel_name: str = "python3", preload: tuple[str, ...] = PRELOAD):
        self.folder = folder
        self.kernel_name = kernel_name
        self.preload = preload
        self._next = None  # (kernel manager, the file its stderr goes to, the environment it started with)
        self._numbers = itertools.count(1)
        self._stopping: list[threading.Thread] = []

    def _launch(self):
        from jupyter_client import KernelManager

        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.folder / f".kernel-{os.getpid()}-{next(self._numbers)}.log"
        code = f"import importlib as _m; [_m.import_module(n) for n in {list(self.preload)!r}]; del _m"
        km = KernelManager(kernel_name=self.kernel_name)
        started_with = dict(os.environ)
        with open(log, "ab") as err:  # the kernel keeps its own handle on the file
            km.start_kernel(
                cwd=str(PROJECT_DIR), stderr=err, env=started_with, extra_arguments=[f"--IPKernelApp.exec_lines={[code]!r}"]
            )
        return km, log, started_with

    def start(self) -> None:
        """Boot the first kernel now, e.g. while the Spark server starts."""
        if self._next is None:
            self._next = self._launch()

    def take(self, environment: dict[str, str], log: Path):
        """A booted kernel with this process's environment as it is now, plus `environment`;
        its stderr goes to `log`. The kernel is the caller's: hand it back with `release`.
        """
        km, boot_log, started_with = self._next or self._launch()
        self._next = None
        os.replace(boot_log, log)  # the open file moves with it: the kernel's stderr lands in the task's log
        # What changed here since the kernel was launched (e.g. $SPARK_REMOTE, set once the
        # server answered), and the task's own variables.
        changed = {k: v for k, v in {**os.environ, **environment}.items() if started_with.get(k) != v}
        removed = [k for k in started_with if k not in os.environ and k not in environment]
        client = km.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=START_TIMEOUT_S)
            reply = client.execute_interactive(
                f"import os as _os; _os.environ.update({changed!r}); [_os.environ.pop(k, None) for k in {removed!r}]; del _os",
                store_history=False,
                timeout=START_TIMEOUT_S,
                output_hook=lambda msg: None,
            )
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"a new kernel failed to take its environment: {reply['content'].get('evalue')}")
        except BaseException:
            self._stop(km, now=True)
            raise
        finally:
            client.stop_channels()
        self._next = self._launch()
        return km

    def release(self, km) -> None:
        """Stop a kernel a task is done with, in the background."""
        thread = threading.Thread(target=self._stop, args=(km,), daemon=True)
        thread.start()
        self._stopping.append(thread)

    @staticmethod
    def _stop(km, now: bool = False) -> None:
        """Shut a kernel down: gracefully (its atexit hooks run) or, unused, at once."""
        try:
            km.shutdown_kernel(now=now)
        except Exception:  # noqa: BLE001 - a kernel that is already gone has nothing to stop
            pass

    def close(self) -> None:
        """Stop the kernel booting ahead and wait for every stop to finish."""
        if self._next is not None:
            km, log, _ = self._next
            self._next = None
            self._stop(km, now=True)  # it ran nothing: no need to wait for it to finish booting
            log.unlink(missing_ok=True)
        for thread in self._stopping:
            thread.join()
        self._stopping.clear()
        with contextlib.suppress(OSError):
            self.folder.rmdir()  # only if nothing ran: a run that never started leaves no folder
