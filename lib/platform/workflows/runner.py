"""The Workflows stand-in: run jobs declared in conf/jobs.yml as papermill notebook runs.

Each task's executed notebook (and its kernel's log) is kept under a run folder. A task runs
when its dependencies' outcomes meet its `run_if` (Databricks' conditions; by default all of
them succeeded), else it is marked UPSTREAM_FAILED or EXCLUDED. A job with a failed task fails
once the tasks that may still run have run: the error names the task and the failing cell, and
notifies (console line always, webhook if configured).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from lib.core.config import PROJECT_DIR, EnvConfig
from lib.core.errors import ConfigError, JobFailedError
from lib.platform.workflows import task_values
from lib.platform.workflows.kernels import KernelPool
from lib.platform.workflows.notify import notify
from lib.platform.workflows.spec import TRIGGER_KEY, Job, Task, notebooks

_REF = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")


SUCCESS, FAILED, UPSTREAM_FAILED, EXCLUDED = "SUCCESS", "FAILED", "UPSTREAM_FAILED", "EXCLUDED"


def outcome_of(run_if: str, dependencies: list[str]) -> str | None:
    """Whether a task runs, given its dependencies' outcomes: None to run it, else the outcome
    it is marked with, as Databricks marks it (UPSTREAM_FAILED, or EXCLUDED for the conditions
    that wait for a failure; an excluded task counts as succeeded, and a task whose
    dependencies were all excluded is excluded too)."""
    if not dependencies:
        return None
    if all(d == EXCLUDED for d in dependencies):
        return EXCLUDED
    ok = [d in (SUCCESS, EXCLUDED) for d in dependencies]
    failed = [d in (FAILED, UPSTREAM_FAILED) for d in dependencies]
    runs = {
        "ALL_SUCCESS": all(ok),
        "AT_LEAST_ONE_SUCCESS": any(ok),
        "NONE_FAILED": not any(failed) and SUCCESS in dependencies,
        "ALL_DONE": True,
        "AT_LEAST_ONE_FAILED": any(failed),
        "ALL_FAILED": all(failed),
    }[run_if]
    if runs:
        return None
    return EXCLUDED if run_if in ("AT_LEAST_ONE_FAILED", "ALL_FAILED") else UPSTREAM_FAILED


def resolve(value: Any, job_params: dict[str, Any], values: dict[str, dict[str, Any]]) -> Any:
    """Substitute {{job.parameters.X}}, {{job.run_id}} and {{tasks.T.values.K}} in a parameter."""
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match) -> str:
        ref = match.group(1)
        parts = ref.split(".")
        if parts == ["job", "run_id"] and "run_id" in job_params:
            return str(job_params["run_id"])
        if len(parts) == 3 and parts[:2] == ["job", "parameters"] and parts[2] in job_params:
            return str(job_params[parts[2]])
        if len(parts) == 4 and parts[0] == "tasks" and parts[2] == "values":
            if parts[3] in values.get(parts[1], {}):
                return str(values[parts[1]][parts[3]])
            raise ConfigError(f"parameter reference {{{{{ref}}}}}: task {parts[1]} set no value {parts[3]!r}")
        raise ConfigError(f"unknown parameter reference {{{{{ref}}}}}")

    return _REF.sub(lookup, value)


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send this process's stderr (inherited by kernels and their JVMs) to a log file."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _failing_cell(notebook: Path) -> str:
    """Name the cell that raised in an executed notebook: its In [n] and the heading above it."""
    try:
        cells = json.loads(notebook.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return "an unknown cell"
    for index, cell in enumerate(cells):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            headings = [
                c for c in cells[:index] if c["cell_type"] == "markdown" and "".join(c["source"]).lstrip().startswith("#")
            ]
            title = "".join(headings[-1]["source"]).strip().splitlines()[0].lstrip("# ") if headings else ""
            return f"cell In [{cell.get('execution_count')}]" + (f" ({title})" if title else "")
    return "an unknown cell"


class Runner:
    """Runs one job (and the jobs it calls) for one environment, keeping every executed notebook."""

    def __init__(
        self,
        env: EnvConfig,
        jobs: dict[str, Job],
        run_dir: Path,
        stream: TextIO | None = None,
        health: Callable[[], str | None] | None = None,
    ):
        """`health` says why the Spark the kernels attach to is gone (None while it answers)."""
        self.env = env
        self.jobs = jobs
        self.run_dir = run_dir
        self.stream = stream or sys.stdout
        self.health = health
        self.kernels = KernelPool(run_dir)

    def out(self, text: str, end: str = "\n") -> None:
        self.stream.write(text + end)
        self.stream.flush()

    def run(self, job_name: str, params: dict[str, Any], follow_triggers: bool = True) -> dict[str, dict[str, Any]]:
        """Run a job, then the jobs its tasks asked for (task value `run_jobs`, e.g. an alert's
        retraining), each once, unless `follow_triggers` is False (the caller runs them);
        returns the task values each task set. Raises JobFailedError."""
        current = job_name
        try:
            values = self._run_job(job_name, params, self.run_dir, depth=0)
            done = {job_name}
            for name in triggered(values) if follow_triggers else []:
                if name in done:
                    continue
                if name not in self.jobs:
                    raise JobFailedError(f"a task of {job_name} asked to run unknown job {name!r}")
                if notebooks(self.jobs, name) <= notebooks(self.jobs, job_name):
                    self.out(
                        f"{name} (asked for by a task of {job_name}): skipped, {job_name} ran its notebooks "
                        "with these parameters already"
                    )
                    continue
                done.add(name)
                current = name
                self.out(f"{name} (job, asked for by a task of {job_name})")
                started = time.monotonic()
                values[f"triggered-{name}"] = {
                    k: v
                    for d in self._run_job(name, params, self.run_dir / f"triggered-{name}", depth=1).values()
                    for k, v in d.items()
                }
                self.out(f"{name} done in {time.monotonic() - started:.1f}s")
            return values
        except JobFailedError as exc:
            notify(self.env, f"job {current} failed: {exc}", self.out)
            raise
        finally:
            self.kernels.close()

    def _run_job(self, name: str, params: dict[str, Any], folder: Path, depth: int) -> dict[str, dict[str, Any]]:
        """Run a job's tasks in order, each as its run_if allows; raises the first failure's
        JobFailedError once the tasks that may still run have run."""
        folder.mkdir(parents=True, exist_ok=True)
        values: dict[str, dict[str, Any]] = {}
        outcomes: dict[str, str] = {}
        failures: list[JobFailedError] = []
        indent = "  " * depth
        for task in self.jobs[name].tasks:
            skipped = outcome_of(task.run_if, [outcomes[d] for d in task.depends_on])
            if skipped:
                outcomes[task.key] = skipped
                upstream = ", ".join(f"{d} {outcomes[d]}" for d in task.depends_on)
                self.out(f"{indent}{task.key:<20} {skipped} (run_if {task.run_if}: {upstream})")
                continue
            try:
                values[task.key] = self._run_task(task, params, values, folder, indent, depth)
                outcomes[task.key] = SUCCESS
            except JobFailedError as exc:
                outcomes[task.key] = FAILED
                failures.append(exc)
        if failures:
            more = f" (and {len(failures) - 1} more task(s) failed)" if len(failures) > 1 else ""
            raise JobFailedError(f"{failures[0]}{more}")
        return values

    def _run_task(
        self, task: Task, params: dict[str, Any], values: dict[str, dict[str, Any]], folder: Path, indent: str, depth: int
    ) -> dict[str, Any]:
        if task.job is not None:
            self.out(f"{indent}{task.key} (job {task.job})")
            started = time.monotonic()
            try:
                inner = self._run_job(task.job, params, folder / task.key, depth + 1)
            except JobFailedError:
                self.out(f"{indent}{task.key} FAILED after {time.monotonic() - started:.1f}s")
                raise
            self.out(f"{indent}{task.key} done in {time.monotonic() - started:.1f}s")
            return {k: v for d in inner.values() for k, v in d.items()}
        try:
            resolved = {k: resolve(v, params, values) for k, v in task.parameters.items()}
        except ConfigError as exc:
            raise JobFailedError(f"task {task.key} was not started: {exc}") from None
        return self._run_notebook(task, resolved, folder, indent)

    def _run_notebook(self, task: Task, params: dict[str, Any], folder: Path, indent: str) -> dict[str, Any]:
        import papermill as pm

        output = folder / f"{task.key}.ipynb"
        values_file = folder / f"{task.key}.values.json"
        log = folder / f"{task.key}.log"
        for attempt in range(task.max_retries + 1):
            values_file.unlink(missing_ok=True)
            started = time.monotonic()
            self.out(f"{indent}{task.key:<20} ", end="")  # the outcome completes this line
            kernel = None
            interrupted = False
            try:
                kernel = self.kernels.take({task_values.ENV_VAR: str(values_file)}, log)
                with _stderr_to(log):
                    interrupted, error = self._interruptible(
                        task,
                        kernel,
                        functools.partial(
                            pm.execute_notebook,
                            str(task.notebook),
                            str(output),
                            parameters=params,
                            km=kernel,
                            progress_bar=False,
                            log_output=False,
                            cwd=str(PROJECT_DIR),
                        ),
                    )
                    if error is not None:
                        raise error
            except Exception as exc:  # papermill raises its own types and kernel errors
                elapsed = time.monotonic() - started
                message = str(getattr(exc, "evalue", exc)).strip().splitlines() or [""]
                detail = f"{getattr(exc, 'ename', type(exc).__name__)}: {message[0]}"
                if interrupted:  # the notebook failed after Ctrl-C
                    self.out(f"stopped (Ctrl-C) after {elapsed:.1f}s, ending with {detail[:200]} (see {output})")
                    raise KeyboardInterrupt from None
                where = _failing_cell(output)
                gone = self.health() if self.health else None
                if gone:  # a dead server explains the failure better than the client's gRPC error
                    detail = gone
                self.out(f"FAILED after {elapsed:.1f}s")
                if attempt < task.max_retries:
                    self.out(f"{indent}  retrying {task.key} ({attempt + 1}/{task.max_retries})")
                    continue
                raise JobFailedError(f"task {task.key} failed in {where}: {detail} (see {output})") from None
            finally:
                if kernel is not None:
                    self.kernels.release(kernel)
            if interrupted:  # the notebook acted on Ctrl-C (a stream stopped its query) and ended
                self.out(f"stopped (Ctrl-C) after {time.monotonic() - started:.1f}s")
                raise KeyboardInterrupt
            self.out(f"ok {time.monotonic() - started:.1f}s")
            return task_values.read(values_file)
        raise AssertionError("unreachable")

    def _interruptible(self, task: Task, kernel, run: Callable[[], Any]) -> tuple[bool, BaseException | None]:
        """Run a notebook (`run`) in a thread and pass Ctrl-C on to its kernel; returns whether
        it was interrupted and what the notebook raised (None: it ended). The kernel runs in a
        session of its own, so the terminal's Ctrl-C reaches only this process, and papermill on
        the main thread would swallow it."""
        outcome: dict[str, BaseException] = {}

        def target() -> None:
            try:
                run()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                outcome["error"] = exc

        thread = threading.Thread(target=target, name=f"task-{task.key}", daemon=True)
        thread.start()
        interrupted = False
        while thread.is_alive():
            try:
                thread.join(0.5)
            except KeyboardInterrupt:
                if interrupted:
                    raise  # a second Ctrl-C: stop waiting (the kernel is shut down on the way out)
                interrupted = True
                self.out(f"Ctrl-C: letting {task.key} stop cleanly ... ", end="")
                kernel.interrupt_kernel()
        return interrupted, outcome.get("error")


def triggered(values: dict[str, dict[str, Any]]) -> list[str]:
    """The jobs that tasks asked to run next (task value TRIGGER_KEY: a list of job names), in order."""
    out: list[str] = []
    for task_values_ in values.values():
        for name in task_values_.get(TRIGGER_KEY) or []:
            if name not in out:
                out.append(name)
    return out


def new_run_dir(env: EnvConfig, job: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return env.home / "runs" / env.name / f"{stamp}-{job}"
