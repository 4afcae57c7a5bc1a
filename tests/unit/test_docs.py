"""The docs site: the config reference hook on a schema of the real models, and a strict build."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ConfigDict, create_model

from lib.monitoring.monitors import Monitor

REPO = Path(__file__).resolve().parents[2]
HOOK = REPO / "docs" / "hooks" / "config_reference.py"
QUIET = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def _load_hook():
    spec = importlib.util.spec_from_file_location("config_reference", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def hook():
    return _load_hook()


@pytest.fixture(scope="module")
def monitors_schema() -> dict:
    """conf/monitors.yml's shape: a map of name -> Monitor, from the model itself."""
    model = create_model("MonitorsFile", __config__=ConfigDict(extra="forbid"), monitors=(dict[str, Monitor], ...))
    return model.model_json_schema()


def _by_path(rows: list[dict]) -> dict[str, dict]:
    return {row["path"]: row for row in rows}


def test_flatten_gives_every_key_as_a_dotted_path(hook, monitors_schema):
    rows = _by_path(hook.flatten(monitors_schema))
    fields = [f"monitors.<name>.{name}" for name in Monitor.model_fields]
    metric_fields = [
        f"monitors.<name>.custom_metrics[].{name}" for name in ("name", "type", "definition", "input_columns", "output_data_type")
    ]
    assert list(rows) == ["monitors", *fields[: fields.index("monitors.<name>.custom_metrics") + 1], *metric_fields]


@pytest.mark.parametrize(
    "path, type_, default, allowed",
    [
        ("monitors", "map[string, object]", "required", ""),
        ("monitors.<name>.table_name", "string", "required", r"matches <code>^\w+$</code>"),
        (
            "monitors.<name>.problem_type",
            "string",
            "<code>PROBLEM_TYPE_CLASSIFICATION</code>",
            "<code>PROBLEM_TYPE_CLASSIFICATION</code>, <code>PROBLEM_TYPE_REGRESSION</code>",
        ),
        ("monitors.<name>.label_col", "string | null", "<code>null</code>", ""),
        ("monitors.<name>.slicing_exprs", "list[string]", "optional", ""),
        ("monitors.<name>.baseline_max_rows", "integer", "<code>20000</code>", "> 0"),
        (
            "monitors.<name>.custom_metrics[].type",
            "string",
            "required",
            "<code>AGGREGATE</code>, <code>DERIVED</code>, <code>DRIFT</code>",
        ),
        ("monitors.<name>.custom_metrics[].definition", "string", "required", "not empty"),
        (
            "monitors.<name>.custom_metrics[].output_data_type",
            "string",
            "<code>double</code>",
            "<code>double</code>, <code>bigint</code>, <code>int</code>, <code>boolean</code>, <code>string</code>",
        ),
    ],
)
def test_flatten_row(hook, monitors_schema, path, type_, default, allowed):
    row = _by_path(hook.flatten(monitors_schema))[path]
    assert (row["type"], row["default"], row["allowed"]) == (type_, default, allowed)


def test_flatten_takes_descriptions_from_the_models(hook, monitors_schema):
    rows = _by_path(hook.flatten(monitors_schema))
    assert rows["monitors"]["description"] == Monitor.__doc__.split("\n")[0]
    assert rows["monitors.<name>.custom_metrics"]["description"] == "One `custom_metrics` entry of a monitor."


def test_flatten_lists_of_enums_and_a_model_that_contains_itself(hook):
    schema = {
        "$defs": {
            "Node": {
                "type": "object",
                "description": "A node.",
                "properties": {
                    "name": {"type": "string", "description": "Its name."},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
                "required": ["name"],
            }
        },
        "type": "object",
        "properties": {
            "root": {"$ref": "#/$defs/Node"},
            "steps": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 100}, "default": [100]},
        },
    }
    rows = hook.flatten(schema)
    assert [(row["path"], row["type"], row["default"], row["description"], row["allowed"]) for row in rows] == [
        ("root", "object", "optional", "A node.", ""),
        ("root.name", "string", "required", "Its name.", ""),
        ("root.children", "list[object]", "optional", "A node.", ""),  # a Node again: not expanded twice
        ("steps", "list[integer]", "<code>[100]</code>", "", "each: ≥ 1; each: ≤ 100"),
    ]


def test_render_page_is_one_table_row_per_key(hook, monitors_schema):
    page = hook.render_page("monitors", monitors_schema)
    lines = page.splitlines()
    assert lines[0] == "# monitors"
    table = [line for line in lines if line.startswith("| <code>")]
    assert len(table) == len(hook.flatten(monitors_schema)) == 20
    # A `|` inside a cell (a union type) must not split the row into more columns.
    label_col = next(line for line in table if "label_col</code>" in line)
    assert label_col.count(" | ") == 4 and "string &#124; null" in label_col


def test_render_index_without_schemas_says_how_to_make_them(hook):
    page = hook.render_index([])
    assert "`make schemas` generates them" in page
    assert "](" not in page
    assert "- [monitors](monitors.md): `conf/monitors.yml`" in hook.render_index(["alerts", "monitors"])


def test_on_config_puts_a_page_per_schema_under_the_reference(hook, tmp_path):
    (tmp_path / "conf" / "schemas").mkdir(parents=True)
    for kind in ("monitors", "alerts"):
        (tmp_path / "conf" / "schemas" / f"{kind}.json").write_text("{}")
    nav = [{"Home": "index.md"}, {"Config reference": "reference/config/index.md"}]
    config = SimpleNamespace(config_file_path=str(tmp_path / "mkdocs.yml"), nav=nav)
    hook.on_config(config)
    assert config.nav[1] == {
        "Config reference": [
            {"Overview": "reference/config/index.md"},
            {"alerts": "reference/config/alerts.md"},
            {"monitors": "reference/config/monitors.md"},
        ]
    }


def _build(config_file: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config_file), "-d", str(site)],
        check=False,
        capture_output=True,
        text=True,
        env=QUIET,
        timeout=300,
    )


def test_a_site_renders_a_schema_file_as_a_page(monitors_schema, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Home\n\nSee the [config reference](reference/config/index.md).\n")
    (tmp_path / "conf" / "schemas").mkdir(parents=True)
    (tmp_path / "conf" / "schemas" / "monitors.json").write_text(json.dumps(monitors_schema))
    (tmp_path / "mkdocs.yml").write_text(
        f"site_name: t\nhooks: [{HOOK}]\nmarkdown_extensions: [tables]\n"
        "nav: [{Home: index.md}, {Config reference: reference/config/index.md}]\n"
    )
    result = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "site" / "reference" / "config" / "monitors" / "index.html").read_text()
    assert "<td><code>monitors.&lt;name&gt;.custom_metrics[].type</code></td>" in page
    assert "<code>AGGREGATE</code>, <code>DERIVED</code>, <code>DRIFT</code>" in page
    index = (tmp_path / "site" / "reference" / "config" / "index.html").read_text()
    assert 'href="monitors/"' in index


@pytest.mark.slow  # converts every notebook: 5-20 s; make test and CI run it
def test_the_project_site_builds_strict_with_every_notebook(tmp_path):
    result = _build(REPO / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    notebooks = sorted(
        path.relative_to(REPO).with_suffix("").as_posix()
        for path in (REPO / "notebooks").rglob("*.ipynb")
        if ".ipynb_checkpoints" not in path.parts
    )
    built = sorted(
        path.parent.relative_to(tmp_path / "site").as_posix() for path in (tmp_path / "site" / "notebooks").rglob("index.html")
    )
    assert built == notebooks and len(notebooks) == 10
    assert (tmp_path / "site" / "reference" / "config" / "index.html").exists()
