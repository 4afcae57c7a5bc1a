"""Jobs as conf/jobs.yml declares them (Databricks' job spec): tasks, dependencies, run_if,
retries and schedules, checked into Job and Task objects.
"""

from __future__ import annotations


import graphlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.core.config import CONF_DIR, PROJECT_DIR, parse_model, read_yaml
from lib.core.errors import ConfigError
from lib.platform.workflows.scheduler import Schedule


TRIGGER_KEY = "run_jobs"  # a task value: jobs to run after this one (an alert's run_job action)



_TASK_KEYS = {"task_key", "notebook_task", "run_job_task", "depends_on", "run_if", "max_retries", "description"}



RUN_IF = ("ALL_SUCCESS", "AT_LEAST_ONE_SUCCESS", "NONE_FAILED", "ALL_DONE", "AT_LEAST_ONE_FAILED", "ALL_FAILED")



_JOB_KEYS = {"description", "tasks", "schedule"}



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



def load_jobs(path: Path = CONF_DIR / "jobs.yml") -> dict[str, Job]:
    """Parse and check every job: known keys, existing notebooks and jobs, no cycles."""
    raw = read_yaml(path).get("jobs")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path} has no `jobs` mapping")
    jobs = {name: _parse_job(name, spec, path) for name, spec in raw.items()}
    for job in jobs.values():
        for task in job.tasks:
            if task.job is not None and task.job not in jobs:
                raise ConfigError(f"{path}: job {job.name} task {task.key} runs unknown job {task.job!r}")
    for name in jobs:
        _check_no_recursion(name, jobs, (), path)
    return jobs



def notebooks(all_jobs: dict[str, Job], name: str) -> set[Path]:
    """Every notebook a job runs, through the jobs it calls."""
    found: set[Path] = set()
    for task in all_jobs[name].tasks:
        found |= notebooks(all_jobs, task.job) if task.job else {task.notebook}
    return found



def _parse_job(name: str, spec: Any, path: Path) -> Job:
    where = f"{path}: job {name}"
    if not isinstance(spec, dict) or not isinstance(spec.get("tasks"), list) or not spec["tasks"]:
        raise ConfigError(f"{where} needs a non-empty `tasks` list")
    unknown = set(spec) - _JOB_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
    schedule = parse_model(Schedule, spec["schedule"], str(path), "jobs", name, "schedule") if "schedule" in spec else None
    tasks: dict[str, Task] = {}
    for item in spec["tasks"]:
        task = _parse_task(item, where)
        if task.key in tasks:
            raise ConfigError(f"{where} has two tasks named {task.key}")
        tasks[task.key] = task
    for task in tasks.values():
        for dep in task.depends_on:
            if dep not in tasks:
                raise ConfigError(f"{where} task {task.key} depends on unknown task {dep!r}")
    return Job(name, str(spec.get("description", "")), _topological(tasks, where), schedule)



def _parse_task(item: Any, where: str) -> Task:
    if not isinstance(item, dict) or not isinstance(item.get("task_key"), str):
        raise ConfigError(f"{where}: every task needs a `task_key`")
    key = item["task_key"]
    unknown = set(item) - _TASK_KEYS
    if unknown:
        raise ConfigError(f"{where} task {key}: unknown setting(s) {', '.join(sorted(unknown))}")
    if ("notebook_task" in item) == ("run_job_task" in item):
        raise ConfigError(f"{where} task {key} needs exactly one of notebook_task, run_job_task")
    depends = item.get("depends_on") or []
    if not isinstance(depends, list) or not all(isinstance(d, dict) and "task_key" in d for d in depends):
        raise ConfigError(f"{where} task {key}: depends_on must be a list of {{task_key: ...}}")
    run_if = item.get("run_if", "ALL_SUCCESS")
    if run_if not in RUN_IF:
        raise ConfigError(f"{where} task {key}: run_if must be one of {', '.join(RUN_IF)} (got {run_if!r})")
    if "run_if" in item and not depends:
        raise ConfigError(f"{where} task {key}: run_if needs depends_on (it is about the dependencies' outcomes)")
    retries = item.get("max_retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"{where} task {key}: max_retries must be a whole number >= 0")
    common = {"key": key, "depends_on": tuple(d["task_key"] for d in depends), "max_retries": retries,
              "run_if": run_if}
    if "run_job_task" in item:
        job = (item["run_job_task"] or {}).get("job_name")
        if not isinstance(job, str):
            raise ConfigError(f"{where} task {key}: run_job_task needs a job_name")
        return Task(job=job, **common)
    nb_task = item["notebook_task"] or {}
    notebook = PROJECT_DIR / str(nb_task.get("notebook_path", ""))
    if not notebook.is_file() or notebook.suffix != ".ipynb":
        raise ConfigError(f"{where} task {key}: notebook {nb_task.get('notebook_path')!r} does not exist")
    params = nb_task.get("base_parameters") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{where} task {key}: base_parameters must be a mapping")
    return Task(notebook=notebook, parameters=params, **common)



def _topological(tasks: dict[str, Task], where: str) -> tuple[Task, ...]:
    sorter = graphlib.TopologicalSorter({key: task.depends_on for key, task in tasks.items()})
    try:
        return tuple(tasks[key] for key in sorter.static_order())
    except graphlib.CycleError as exc:
        raise ConfigError(f"{where}: depends_on has a cycle: {' -> '.join(exc.args[1])}") from None



def _check_no_recursion(name: str, jobs: dict[str, Job], stack: tuple[str, ...], path: Path) -> None:
    if name in stack:
        raise ConfigError(f"{path}: job {name} runs itself through {' -> '.join(stack + (name,))}")
    for task in jobs[name].tasks:
        if task.job:
            _check_no_recursion(task.job, jobs, stack + (name,), path)

