"""Every notebook reads like the guide: a title, one parameters cell, no stored outputs."""

import json

import pytest

from lib.core.config import PROJECT_DIR

NOTEBOOKS = sorted((PROJECT_DIR / "notebooks").rglob("*.ipynb"))
STAGES = [p for p in NOTEBOOKS if p.parent.name in ("pipelines", "monitoring")]


def cells(path):
    return json.loads(path.read_text())["cells"]


def test_every_stage_has_a_notebook():
    assert sorted(p.stem for p in STAGES) == [
        "01_ingest",
        "02_features",
        "03_train",
        "04_validate",
        "05_deploy",
        "05_serve",
        "06_batch_inference",
        "06_streaming_inference",
        "07_monitoring",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_title_cell(path):
    first = cells(path)[0]
    assert first["cell_type"] == "markdown" and "".join(first["source"]).startswith("# ")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exactly_one_parameters_cell(path):
    tagged = [c for c in cells(path) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and tagged[0]["cell_type"] == "code"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_outputs_or_execution_counts(path):
    code = [c for c in cells(path) if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code)


@pytest.mark.parametrize("path", STAGES, ids=lambda p: p.name)
def test_logic_lives_in_lib(path):
    """No function definitions, loops or path hacks in pipeline notebooks; under ~100 lines."""
    lines = "\n".join("".join(c["source"]) for c in cells(path) if c["cell_type"] == "code").splitlines()
    for banned in ("def ", "class ", "for ", "while ", "import sys", "%cd"):
        assert not [line for line in lines if line.lstrip().startswith(banned)], f"{path.name}: {banned!r}"
    assert len(lines) < 100


@pytest.mark.parametrize("path", STAGES, ids=lambda p: p.name)
def test_each_stage_hands_on_task_values(path):
    assert "task_values.set(" in "".join(cells(path)[-1]["source"])
