"""Helpers for testbook tests: execute a notebook with small parameters injected."""

from __future__ import annotations

import contextlib
import json

import pytest
from testbook import testbook

from lib.config import PROJECT_DIR

NOTEBOOKS = PROJECT_DIR / "notebooks"


@contextlib.contextmanager
def _executed(relative: str, **params):
    """Run a notebook with `params` injected after its parameters cell, as papermill does.

    Yields the testbook client while its kernel is alive, for tb.ref / tb.value.
    The kernel inherits this process's environment (LAKEHOUSE_HOME from the `home` fixture).
    """
    with testbook(str(NOTEBOOKS / relative), execute=False, timeout=900) as tb:
        tb.inject("\n".join(f"{k} = {v!r}" for k, v in params.items()), after="parameters", run=False)
        tb.execute()
        yield tb


@pytest.fixture
def task_values(tmp_path, monkeypatch):
    """Where the notebook's task values land; call it to read them."""
    from lib import task_values as tv

    path = tmp_path / "values.json"
    monkeypatch.setenv(tv.ENV_VAR, str(path))
    return lambda: json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture
def executed():
    """`with executed("pipelines/01_ingest.ipynb", env="staging") as tb:` runs a notebook."""
    return _executed
