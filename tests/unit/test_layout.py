"""The house's rules: lib/'s layers hold (import-linter), and a lib import inside a function says why."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from lib.core.config import PROJECT_DIR

SOURCES = [*sorted((PROJECT_DIR / "lib").rglob("*.py")), PROJECT_DIR / "run_pipeline.py"]


def unexplained_inner_imports(code: str) -> list[int]:
    """Lines of imports of lib modules inside a function with no comment on or just above them."""
    lines = code.splitlines()
    found = []
    for node in ast.walk(ast.parse(code)):
        if not isinstance(node, ast.Import | ast.ImportFrom) or node.col_offset == 0:
            continue
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        if not any(m == "lib" or m.startswith("lib.") for m in modules):
            continue
        here, above = lines[node.lineno - 1], lines[node.lineno - 2].strip() if node.lineno > 1 else ""
        if "#" not in here and not above.startswith("#"):
            found.append(node.lineno)
    return found


def test_the_check_finds_an_unexplained_import():
    code = "def f():\n    from lib.core import names\n\n\ndef g():\n    # heavy\n    from lib import x\n"
    assert unexplained_inner_imports(code) == [2]


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(PROJECT_DIR)) for p in SOURCES])
def test_a_function_level_lib_import_says_why(path: Path):
    assert unexplained_inner_imports(path.read_text()) == []


def test_the_import_contracts_hold():
    """lint-imports (the contracts in pyproject.toml): layers, no cycles, monitoring and serving apart."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout
