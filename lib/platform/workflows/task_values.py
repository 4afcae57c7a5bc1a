"""Task values: the `dbutils.jobs.taskValues` stand-in.

A notebook run by a job calls `task_values.set(key, value)`; the job runner reads what its
tasks set and substitutes `{{tasks.<task_key>.values.<key>}}` in later tasks' parameters.
Outside a job (a data scientist running the notebook by hand) values are only printed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV_VAR = "LAKEHOUSE_TASK_VALUES"


def set(key: str, value: Any) -> None:  # noqa: A001 - mirrors dbutils.jobs.taskValues.set
    """Record a JSON-serialisable value for later tasks of the same job run."""
    json.dumps(value)  # fail here, in the notebook, if the value cannot be handed on
    path = os.environ.get(ENV_VAR)
    if path:
        values = read(Path(path))
        values[key] = value
        Path(path).write_text(json.dumps(values, indent=2, default=str))
    print(f"task value {key} = {value!r}")


def read(path: Path) -> dict[str, Any]:
    """All values one task set (empty if it set none)."""
    return json.loads(path.read_text()) if path.exists() else {}
