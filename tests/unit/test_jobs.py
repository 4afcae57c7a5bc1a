import dataclasses
import io

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from lib.core.config import load_env
from lib.core.errors import ConfigError, JobFailedError
from lib.platform.workflows import notify, spec
from lib.platform.workflows import runner as jobs


def test_the_project_jobs_load():
    all_jobs = spec.load_jobs()
    assert set(all_jobs) == {
        "workflow",
        "ingest",
        "training",
        "deployment",
        "retraining",
        "serving",
        "batch_inference",
        "score_and_monitor",
        "monitoring",
        "streaming",
        "streaming_catchup",
    }
    # One notebook, two triggers: until stopped, and what has arrived (then stop).
    assert [t.parameters["trigger"] for name in ("streaming", "streaming_catchup") for t in all_jobs[name].tasks] == [
        "1 second",
        "availableNow",
    ]
    assert [t.job for t in all_jobs["retraining"].tasks] == ["training", "deployment"]
    assert [t.job for t in all_jobs["score_and_monitor"].tasks] == ["batch_inference", "monitoring"]
    assert {name for name, job in all_jobs.items() if job.schedule} == {"retraining"}
    assert all_jobs["retraining"].schedule.quartz_cron_expression == "0 0 6 1 1/3 ?"
    assert [t.key for t in all_jobs["training"].tasks] == ["features", "train", "validate"]
    assert [t.key for t in all_jobs["deployment"].tasks] == ["deploy", "serve"]
    assert [t.key for t in all_jobs["serving"].tasks] == ["serve"]
    assert [t.job for t in all_jobs["workflow"].tasks] == ["ingest", "training", "deployment", "batch_inference", "monitoring"]
    # Scoring and monitoring go on with the current Champion when training or deployment
    # fails, not when ingest does.
    scoring = all_jobs["workflow"].tasks[3]
    assert (scoring.depends_on, scoring.run_if) == (("ingest", "deployment"), "AT_LEAST_ONE_SUCCESS")
    assert jobs.outcome_of(scoring.run_if, ["SUCCESS", "UPSTREAM_FAILED"]) is None
    assert jobs.outcome_of(scoring.run_if, ["FAILED", "UPSTREAM_FAILED"]) == "UPSTREAM_FAILED"
    validate = all_jobs["training"].tasks[2]
    assert validate.parameters["model_uri"] == "{{tasks.train.values.model_uri}}"
    assert validate.parameters["run_id"] == "{{job.run_id}}"


def test_job_run_id_resolves():
    assert jobs.resolve("{{job.run_id}}", {"run_id": "prod/20131001-x"}, {}) == "prod/20131001-x"


def load(tmp_path, text):
    (tmp_path / "jobs.yml").write_text(text)
    return spec.load_jobs(tmp_path / "jobs.yml")


NB = "notebook_task: {notebook_path: notebooks/pipelines/01_ingest.ipynb}"


@pytest.mark.parametrize(
    "text,message",
    [
        ("jobs: {}", "jobs: must have at least 1 item after validation, not 0"),
        ("jobs: {a: {tasks: []}}", "jobs.a.tasks: must have at least 1 item after validation, not 0"),
        (
            f"jobs: {{a: {{tasks: [{{task_key: x, {NB}, depends_on: [{{task_key: y}}]}}]}}}}",
            "jobs.a.tasks.0.depends_on.0: depends on unknown task 'y'",
        ),
        (
            f"jobs: {{a: {{tasks: [{{task_key: x, {NB}, depends_on: [{{task_key: y}}]}}, "
            f"{{task_key: y, {NB}, depends_on: [{{task_key: x}}]}}]}}}}",
            "jobs.a.tasks: depends_on has a cycle: ",
        ),
        (
            "jobs: {a: {tasks: [{task_key: x, notebook_task: {notebook_path: nope.ipynb}}]}}",
            "jobs.a.tasks.0.notebook_task.notebook_path: notebook 'nope.ipynb' does not exist",
        ),
        (f"jobs: {{a: {{tasks: [{{task_key: x, {NB}, timeout: 3}}]}}}}", "jobs.a.tasks.0.timeout: unknown key"),
        (
            f"jobs: {{a: {{tasks: [{{task_key: x, {NB}, max_retry: 3}}]}}}}",
            "jobs.a.tasks.0.max_retry: unknown key (did you mean max_retries?)",
        ),
        (
            f"jobs: {{a: {{tasks: [{{task_key: x, {NB}, max_retries: -1}}]}}}}",
            "jobs.a.tasks.0.max_retries: must be greater than or equal to 0, got -1",
        ),
        (
            "jobs: {a: {tasks: [{task_key: x, run_job_task: {job_name: b}}]}}",
            "jobs.a.tasks.0.run_job_task.job_name: runs unknown job 'b'",
        ),
        ("jobs: {a: {tasks: [{task_key: x, run_job_task: {job_name: a}}]}}", "jobs.a: job a runs itself through a -> a"),
        (
            f"jobs: {{a: {{tasks: [{{task_key: x, {NB}}}, {{task_key: x, {NB}}}]}}}}",
            "jobs.a.tasks.1.task_key: two tasks are named x",
        ),
        (
            f"jobs: {{a: {{tasks: [{{task_key: x, {NB}}}, {{task_key: y, {NB}, depends_on: [{{task_key: x}}], run_if: ALWAYS}}]}}}}",
            "jobs.a.tasks.1.run_if: must be one of ALL_SUCCESS, AT_LEAST_ONE_SUCCESS, NONE_FAILED, ALL_DONE, AT_LEAST_ONE_FAILED, "
            "ALL_FAILED, got 'ALWAYS'",
        ),
        (
            f"jobs: {{a: {{tasks: [{{task_key: x, {NB}, run_if: ALL_DONE}}]}}}}",
            "jobs.a.tasks.0.run_if: needs depends_on (it is about the dependencies' outcomes)",
        ),
        ("jobs: {a: {tasks: [{task_key: x}]}}", "jobs.a.tasks.0: needs exactly one of notebook_task, run_job_task"),
        (
            "jobs: {a: {tasks: [{task_key: x, notebook_task: {notebook_path: notebooks/pipelines/01_ingest.ipynb, "
            "base_parameters: {env: prod, as_of: '', asof: ''}}}]}}",
            "jobs.a.tasks.0.notebook_task.base_parameters.asof: not a parameter of notebooks/pipelines/01_ingest.ipynb "
            "(its parameters cell declares env, as_of) (did you mean as_of?)",
        ),
    ],
)
def test_malformed_jobs_are_named(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, text)
    assert str(error.value).startswith(f"{(tmp_path / 'jobs.yml').resolve().as_posix()}: {message}")


def test_a_notebooks_parameters_are_read_from_its_parameters_cell(tmp_path):
    nb = new_notebook(cells=[new_code_cell("x = 1", metadata={"tags": ["parameters"]})])
    nb.cells[0].source = "env = 'dev'  # a comment\nas_of: str = ''\nlimit = rows = 3\n"
    nb.cells.append(new_code_cell("later = 2"))
    nbformat.write(nb, tmp_path / "n.ipynb")
    assert spec.notebook_parameters(tmp_path / "n.ipynb") == ["env", "as_of", "limit", "rows"]
    assert spec.notebook_parameters(spec.PROJECT_DIR / "notebooks/pipelines/05_serve.ipynb") == [
        "env",
        "endpoint",
        "rollout_steps",
        "step_seconds",
        "run_id",
    ]


def test_tasks_run_in_dependency_order(tmp_path):
    text = (
        f"jobs: {{a: {{tasks: [{{task_key: c, {NB}, depends_on: [{{task_key: b}}]}}, "
        f"{{task_key: b, {NB}, depends_on: [{{task_key: a}}]}}, {{task_key: a, {NB}}}]}}}}"
    )
    assert [t.key for t in load(tmp_path, text)["a"].tasks] == ["a", "b", "c"]


S, F, U, X = "SUCCESS", "FAILED", "UPSTREAM_FAILED", "EXCLUDED"


@pytest.mark.parametrize(
    "run_if,dependencies,expected",
    [
        ("ALL_SUCCESS", [S, S], None),
        ("ALL_SUCCESS", [S, F], U),
        ("ALL_SUCCESS", [S, U], U),
        ("ALL_SUCCESS", [S, X], None),
        ("AT_LEAST_ONE_SUCCESS", [F, S], None),
        ("AT_LEAST_ONE_SUCCESS", [F, U], U),
        ("AT_LEAST_ONE_SUCCESS", [X, F], None),
        ("NONE_FAILED", [S, X], None),
        ("NONE_FAILED", [S, F], U),
        ("NONE_FAILED", [X, U], U),
        ("ALL_DONE", [F, U], None),
        ("ALL_DONE", [S], None),
        ("AT_LEAST_ONE_FAILED", [S, U], None),
        ("AT_LEAST_ONE_FAILED", [S, S], X),
        ("ALL_FAILED", [F, U], None),
        ("ALL_FAILED", [F, S], X),
        ("ALL_DONE", [X, X], X),  # every dependency excluded: excluded too, whatever the condition
        ("ALL_SUCCESS", [], None),  # no dependencies: runs
    ],
)
def test_run_if_as_databricks_decides(run_if, dependencies, expected):
    assert jobs.outcome_of(run_if, dependencies) == expected


def test_resolve_references():
    values = {"train": {"model_uri": "models:/m/3"}}
    params = {"env": "prod", "as_of": "2013-10-01"}
    assert jobs.resolve("{{job.parameters.env}}", params, values) == "prod"
    assert jobs.resolve("{{ tasks.train.values.model_uri }}", params, values) == "models:/m/3"
    assert jobs.resolve(5, params, values) == 5
    with pytest.raises(ConfigError, match="task train set no value 'model_name'"):
        jobs.resolve("{{tasks.train.values.model_name}}", params, values)
    with pytest.raises(ConfigError, match="unknown parameter reference"):
        jobs.resolve("{{job.parameters.nope}}", params, values)


def notebook(path, *code, title="# A task"):
    cells = [new_markdown_cell(title), new_code_cell('x = ""'), new_markdown_cell("## Work")]
    cells[1].metadata["tags"] = ["parameters"]
    cells += [new_code_cell(c) for c in code]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_runner_passes_task_values_and_stops_at_a_failure(tmp_path, home):
    first = notebook(tmp_path / "first.ipynb", "from lib.platform.workflows import task_values\ntask_values.set('uri', x + '/7')")
    second = notebook(
        tmp_path / "second.ipynb",
        "from lib.platform.workflows import task_values\ntask_values.set('got', x)\n"
        "task_values.set('run_jobs', ['k', 'k', 'again'])",
    )  # as an alert asks for retraining
    later = notebook(tmp_path / "later.ipynb", "open(x, 'a').write('ran\\n')")
    broken = notebook(tmp_path / "broken.ipynb", "raise ValueError(f'bad input {x}')")
    never = notebook(tmp_path / "never.ipynb", "open('ran', 'w')")
    job = spec.Job(
        "j",
        "",
        (
            spec.Task("first", notebook=first, parameters={"x": "{{job.parameters.env}}"}),
            spec.Task("second", notebook=second, parameters={"x": "{{tasks.first.values.uri}}"}, depends_on=("first",)),
        ),
    )
    # After a failure, what does not need it still runs; the job fails at the end.
    failing = spec.Job(
        "f",
        "",
        (
            spec.Task("broken", notebook=broken, parameters={"x": "42"}),
            spec.Task("never", notebook=never, depends_on=("broken",)),
            spec.Task(
                "anyway",
                notebook=later,
                parameters={"x": str(tmp_path / "anyway.txt")},
                depends_on=("broken", "never"),
                run_if="ALL_DONE",
            ),
            spec.Task("also_never", notebook=never, depends_on=("anyway",), run_if="ALL_FAILED"),
        ),
    )
    out = io.StringIO()
    triggered = spec.Job("k", "", (spec.Task("later", notebook=later, parameters={"x": str(tmp_path / "k.txt")}),))
    again = spec.Job("again", "", (spec.Task("first", notebook=first, parameters={"x": "again"}),))
    runner = jobs.Runner(
        load_env("staging"), {"j": job, "f": failing, "k": triggered, "again": again}, tmp_path / "run", stream=out
    )
    values = runner.run("j", {"env": "staging", "as_of": "2013-03-01"})
    assert values == {
        "first": {"uri": "staging/7"},
        "second": {"got": "staging/7", "run_jobs": ["k", "k", "again"]},
        "triggered-k": {},
    }
    # A job whose notebooks the job itself just ran (as the workflow's training) is not run again.
    assert "again (asked for by a task of j): skipped" in out.getvalue()
    assert not (tmp_path / "run" / "triggered-again").exists()
    assert (tmp_path / "run" / "second.ipynb").exists()
    assert "first                ok" in out.getvalue()
    # The job a task asked for ran after the job, once, in a folder of its own.
    assert (tmp_path / "k.txt").read_text() == "ran\n" and (tmp_path / "run" / "triggered-k" / "later.ipynb").exists()
    assert "k (job, asked for by a task of j)" in out.getvalue()

    with pytest.raises(JobFailedError, match=r"task broken failed in cell In \[\d\] \(Work\): ValueError: bad input 42"):
        runner.run("f", {"env": "staging", "as_of": "2013-03-01"})
    assert not (tmp_path / "run" / "never.ipynb").exists() and not (tmp_path / "run" / "also_never.ipynb").exists()
    assert "broken               FAILED after" in out.getvalue()
    assert "never                UPSTREAM_FAILED (run_if ALL_SUCCESS: broken FAILED)" in out.getvalue()
    assert (tmp_path / "anyway.txt").read_text() == "ran\n"
    assert "also_never           EXCLUDED (run_if ALL_FAILED: anyway SUCCESS)" in out.getvalue()
    assert "NOTIFY [staging] job f failed: task broken" in out.getvalue()


@pytest.mark.slow
def test_a_task_that_failed_because_spark_is_gone_says_so(tmp_path, home):
    broken = notebook(tmp_path / "broken.ipynb", "raise ConnectionError('grpc: UNAVAILABLE')")
    job = spec.Job("f", "", (spec.Task("broken", notebook=broken),))
    gone = "the Spark server at sc://127.0.0.1:1 is gone (log: /x/server.log); the next run starts a fresh one"
    runner = jobs.Runner(load_env("staging"), {"f": job}, tmp_path / "run", stream=io.StringIO(), health=lambda: gone)
    with pytest.raises(JobFailedError) as failed:
        runner.run("f", {"env": "staging", "as_of": "2013-03-01"})
    assert str(failed.value).startswith("task broken failed in cell In [") and f"(Work): {gone} (see " in str(failed.value)


def test_notify_posts_to_the_webhook(home, webhook):
    url, received = webhook
    env = dataclasses.replace(load_env("prod"), webhook_url=url)
    lines = []
    notify.notify(env, "job workflow failed: task validate", lines.append)
    assert received == [{"environment": "prod", "text": "job workflow failed: task validate"}]
    assert lines == ["NOTIFY [prod] job workflow failed: task validate"]


def test_unreachable_webhook_is_reported_not_raised(home):
    env = dataclasses.replace(load_env("prod"), webhook_url="http://127.0.0.1:9/hook")
    lines = []
    notify.notify(env, "boom", lines.append)
    assert lines[0] == "NOTIFY [prod] boom" and "webhook http://127.0.0.1:9/hook failed" in lines[1]


def test_task_values_outside_a_job_only_print(monkeypatch, capsys, tmp_path):
    from lib.platform.workflows import task_values

    monkeypatch.delenv(task_values.ENV_VAR, raising=False)
    task_values.set("k", 1)
    assert "task value k = 1" in capsys.readouterr().out
    monkeypatch.setenv(task_values.ENV_VAR, str(tmp_path / "v.json"))
    task_values.set("k", 2)
    task_values.set("j", "x")
    assert task_values.read(tmp_path / "v.json") == {"k": 2, "j": "x"}
    with pytest.raises(TypeError):
        task_values.set("bad", object())
