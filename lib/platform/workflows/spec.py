"""Jobs as conf/jobs.yml declares them (Databricks' job spec): tasks, dependencies, run_if,
retries and schedules, checked into Job and Task objects. A notebook task's notebook must exist
and its base_parameters must be names its `parameters` cell declares.
"""

from __future__ import annotations

import ast
import graphlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, StrictInt, model_validator

from lib.core.config import PROJECT_DIR, conf_dir, display_path, parse_model, read_yaml
from lib.core.config.loading import Strict, invalid, suggest
from lib.core.errors import ConfigError
from lib.platform.workflows.scheduler import Schedule

TRIGGER_KEY = "run_jobs"  # a task value: jobs to run after this one (an alert's run_job action)
RUN_IF = ("ALL_SUCCESS", "AT_LEAST_ONE_SUCCESS", "NONE_FAILED", "ALL_DONE", "AT_LEAST_ONE_FAILED", "ALL_FAILED")
PARAMETERS_TAG = "parameters"  # papermill's tag of the cell that declares a notebook's parameters


class NotebookTask(Strict):
    notebook_path: str  # relative to the project folder
    base_parameters: dict[str, str | int | float | bool] = Field(default_factory=dict)  # may hold {{...}} references

    @model_validator(mode="after")
    def _declared(self) -> NotebookTask:
        notebook = PROJECT_DIR / self.notebook_path
        if not notebook.is_file() or notebook.suffix != ".ipynb":
            raise invalid("notebook_path", f"notebook {self.notebook_path!r} does not exist")
        declared = notebook_parameters(notebook)
        for name in self.base_parameters:
            if name not in declared:
                raise invalid(
                    f"base_parameters.{name}",
                    f"not a parameter of {self.notebook_path} (its parameters "
                    f"cell declares {', '.join(declared) or 'none'})"
                    f"{suggest(name, declared)}",
                )
        return self


class RunJobTask(Strict):
    job_name: str  # a job of this file; its job parameters are passed on


class DependsOn(Strict):
    task_key: str


class TaskSpec(Strict):
    task_key: str
    description: str = ""
    notebook_task: NotebookTask | None = None
    run_job_task: RunJobTask | None = None
    depends_on: list[DependsOn] = Field(default_factory=list)
    run_if: Literal[RUN_IF] = "ALL_SUCCESS"  # type: ignore[valid-type]
    max_retries: StrictInt = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_kind(self) -> TaskSpec:
        if (self.notebook_task is None) == (self.run_job_task is None):
            raise invalid("", "needs exactly one of notebook_task, run_job_task")
        if "run_if" in self.model_fields_set and not self.depends_on:
            raise invalid("run_if", "needs depends_on (it is about the dependencies' outcomes)")
        return self


class JobSpec(Strict):
    description: str = ""
    tasks: list[TaskSpec] = Field(min_length=1)
    schedule: Schedule | None = None

    @model_validator(mode="after")
    def _a_dag(self) -> JobSpec:
        keys = [t.task_key for t in self.tasks]
        for i, task in enumerate(self.tasks):
            if task.task_key in keys[:i]:
                raise invalid(f"tasks.{i}.task_key", f"two tasks are named {task.task_key}")
            for j, dep in enumerate(task.depends_on):
                if dep.task_key not in keys:
                    raise invalid(
                        f"tasks.{i}.depends_on.{j}", f"depends on unknown task {dep.task_key!r}{suggest(dep.task_key, keys)}"
                    )
        sorter = graphlib.TopologicalSorter({t.task_key: [d.task_key for d in t.depends_on] for t in self.tasks})
        try:
            sorter.prepare()
        except graphlib.CycleError as exc:
            raise invalid("tasks", f"depends_on has a cycle: {' -> '.join(exc.args[1])}") from None
        return self


class JobsFile(Strict):
    """conf/jobs.yml: the jobs by name."""

    jobs: dict[str, JobSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_jobs(self) -> JobsFile:
        for name, job in self.jobs.items():
            for i, task in enumerate(job.tasks):
                called = task.run_job_task.job_name if task.run_job_task else None
                if called is not None and called not in self.jobs:
                    raise invalid(
                        f"jobs.{name}.tasks.{i}.run_job_task.job_name",
                        f"runs unknown job {called!r}{suggest(called, list(self.jobs))}",
                    )
        for name in self.jobs:
            self._no_recursion(name, ())
        return self

    def _no_recursion(self, name: str, stack: tuple[str, ...]) -> None:
        if name in stack:
            raise invalid(f"jobs.{name}", f"job {name} runs itself through {' -> '.join(stack + (name,))}")
        for task in self.jobs[name].tasks:
            if task.run_job_task:
                self._no_recursion(task.run_job_task.job_name, stack + (name,))


@dataclass(frozen=True)
class Task:
    key: str
    notebook: Path | None = None
    job: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    max_retries: int = 0
    run_if: str = "ALL_SUCCESS"


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    tasks: tuple[Task, ...]  # in an order that respects depends_on
    schedule: Schedule | None = None


def load_jobs(path: Path | None = None) -> dict[str, Job]:
    """conf/jobs.yml (default: of the conf folder in use), checked: known keys, existing
    notebooks, declared parameters and jobs, no cycles. Returns the jobs, tasks in run order."""
    path = path or conf_dir() / "jobs.yml"
    parsed = parse_model(JobsFile, read_yaml(path), str(path))
    return {name: _job(name, job) for name, job in parsed.jobs.items()}


def _job(name: str, job: JobSpec) -> Job:
    tasks = {}
    for t in job.tasks:
        common = {
            "key": t.task_key,
            "depends_on": tuple(d.task_key for d in t.depends_on),
            "max_retries": t.max_retries,
            "run_if": t.run_if,
        }
        if t.run_job_task:
            tasks[t.task_key] = Task(job=t.run_job_task.job_name, **common)
        else:
            assert t.notebook_task is not None, "a task has exactly one kind (TaskSpec._one_kind)"
            tasks[t.task_key] = Task(
                notebook=PROJECT_DIR / t.notebook_task.notebook_path, parameters=dict(t.notebook_task.base_parameters), **common
            )
    order = graphlib.TopologicalSorter({key: task.depends_on for key, task in tasks.items()}).static_order()
    return Job(name, job.description, tuple(tasks[key] for key in order), job.schedule)


def notebook_parameters(notebook: Path) -> list[str]:
    """The names a notebook's `parameters` cell assigns (read with ast; the cell is not run)."""
    try:
        cells = json.loads(Path(notebook).read_text())["cells"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{display_path(notebook)} is not a readable notebook: {exc}") from None
    found: list[str] = []
    for cell in cells:
        if cell.get("cell_type") == "code" and PARAMETERS_TAG in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            try:
                tree = ast.parse(source)
            except SyntaxError as exc:
                raise ConfigError(f"{display_path(notebook)}: its parameters cell does not parse: {exc.msg}") from None
            for node in ast.walk(tree):
                targets = (
                    node.targets
                    if isinstance(node, ast.Assign)
                    else [node.target]
                    if isinstance(node, (ast.AnnAssign, ast.AugAssign))
                    else []
                )
                found += [t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name)]
    return list(dict.fromkeys(found))


def notebooks(all_jobs: dict[str, Job], name: str) -> set[Path]:
    """Every notebook a job runs, through the jobs it calls."""
    found: set[Path] = set()
    for task in all_jobs[name].tasks:
        if task.job:
            found |= notebooks(all_jobs, task.job)
        else:
            assert task.notebook is not None, "a task runs a job or a notebook"
            found.add(task.notebook)
    return found
