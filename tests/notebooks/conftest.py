"""Helpers for testbook tests: execute a notebook with small parameters injected."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from testbook import testbook

from lib.core.config import PROJECT_DIR
from lib.platform.workflows.kernels import KernelPool

NOTEBOOKS = PROJECT_DIR / "notebooks"


@pytest.fixture(scope="session")
def kernels(tmp_path_factory):
    """Warm kernels, as job runs get them: the next test's kernel boots while a test runs."""
    pool = KernelPool(tmp_path_factory.mktemp("kernels"))
    yield pool
    pool.close()


@pytest.fixture
def task_values(tmp_path, monkeypatch):
    """Where the notebook's task values land; call it to read them."""
    from lib.platform.workflows import task_values as tv

    path = tmp_path / "values.json"
    monkeypatch.setenv(tv.ENV_VAR, str(path))
    return lambda: json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture
def executed(kernels, tmp_path, spark_server, postgres_server):
    """`with executed("pipelines/01_ingest.ipynb", env="staging") as tb:` runs a notebook.

    The notebook runs with `params` injected after its parameters cell, as papermill does, in
    a kernel of its own with this process's environment as it is then (LAKEHOUSE_HOME from
    the `home` fixture; the session's Spark server and PostgreSQL through $SPARK_REMOTE and
    $LAKEHOUSE_JDBC_URL, which is why it asks for them). Yields the testbook client while the kernel is alive, for tb.ref /
    tb.value; the kernel's stderr goes to `<notebook>.log` in the test's tmp_path.
    """

    @contextlib.contextmanager
    def run(relative: str, **params):
        kernel = kernels.take({}, tmp_path / f"{Path(relative).stem}.log")
        with testbook(str(NOTEBOOKS / relative), execute=False, timeout=900, km=kernel) as tb:
            tb.inject("\n".join(f"{k} = {v!r}" for k, v in params.items()), after="parameters", run=False)
            tb.execute()
            yield tb

    return run
