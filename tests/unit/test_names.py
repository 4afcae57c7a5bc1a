"""lib/core/names.py is the one home of the names layers share: tag keys, aliases, table and
topic names, and the own-catalog rule. Nothing else spells them out."""

import ast
import json

import pytest

from lib.core import names
from lib.core.config import PROJECT_DIR, load_env
from lib.core.errors import AccessDeniedError
from lib.platform import registry

HOME = PROJECT_DIR / "lib" / "core" / "names.py"
TAG_PREFIXES = (names.ALIAS_PREFIX, names.VALIDATION_PREFIX, "approval.", "deployment.")
EXACT = {names.CHAMPION, names.CHALLENGER, names.PREVIOUS, names.VALIDATION_STATUS}
TABLE_SUFFIXES = ("_payload", "_serving_metrics", "_profile_metrics", "_drift_metrics", "_quarantine", ".predictions")


def _sources() -> list[tuple[str, str]]:
    """(where, code) of every lib module but names.py, run_pipeline.py and each notebook's code cells."""
    found = [(str(p.relative_to(PROJECT_DIR)), p.read_text()) for p in sorted((PROJECT_DIR / "lib").rglob("*.py")) if p != HOME]
    found.append(("run_pipeline.py", (PROJECT_DIR / "run_pipeline.py").read_text()))
    for nb in sorted((PROJECT_DIR / "notebooks").rglob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        found.append((str(nb.relative_to(PROJECT_DIR)), code))
    return found


def _literals(code: str) -> list[tuple[int, str, bool]]:
    """(line, text, part of an f-string) of every string literal but docstrings."""
    tree = ast.parse(code)
    docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    parts = {id(p) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for p in n.values}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            out += [(p.lineno, p.value, True) for p in node.values if isinstance(p, ast.Constant)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings | parts:
            out.append((node.lineno, node.value, False))
    return out


def contract_literals(code: str) -> list[str]:
    """The literals that spell out a tag key, an alias, or a table or topic naming rule."""
    bad = []
    for line, text, in_fstring in _literals(code):
        if (
            text in EXACT
            or text.startswith(TAG_PREFIXES)
            or (text.endswith(TABLE_SUFFIXES) and (in_fstring or text.startswith(TABLE_SUFFIXES)))
        ):
            bad.append(f"{line}: {text!r}")
    return bad


def test_the_scan_finds_what_it_looks_for():
    """The scan below can fail: each way of spelling a contract out is caught."""
    code = (
        'a = "model_validation_status"\nb = f"alias.{x}.at"\nc = f"{t}_payload"\nd = "Champion"\n'
        'e = "_profile_metrics"\nf = "validation.mode"\ndef g():\n    """About x_payload tables."""\n'
    )
    assert [s.split(":")[0] for s in contract_literals(code)] == ["1", "2", "3", "4", "5", "6"]


@pytest.mark.parametrize("where,code", _sources(), ids=[w for w, _ in _sources()])
def test_no_contract_is_spelt_out_outside_its_home(where, code):
    assert contract_literals(code) == [], f"{where}: use lib.core.names instead"


def test_alias_tags_round_trip():
    at, by, reason = names.alias_tags(names.CHAMPION)
    lost_at, _, _ = names.alias_tags(names.CHAMPION, removed=True)
    assert (at, by, reason, lost_at) == (
        "alias.Champion.at",
        "alias.Champion.by",
        "alias.Champion.reason",
        "alias.Champion.removed_at",
    )
    tags = {at: "t1", by: "me", lost_at: "t2", "alias.Challenger.at": "t0", "validation.mode": "enabled"}
    assert sorted(names.alias_events(tags)) == [("Challenger", "t0", False), ("Champion", "t1", False), ("Champion", "t2", True)]


def test_table_and_topic_names():
    assert names.payload_table("prod", "flights", "delay-model") == "prod.flights.delay_model_payload"
    assert names.serving_metrics_table("prod.flights.delay_model_payload") == "prod.flights.delay_model_payload_serving_metrics"
    assert names.profile_metrics_table("a.b.p") == "a.b.p_profile_metrics"
    assert names.drift_metrics_table("a.b.p") == "a.b.p_drift_metrics"
    assert names.topic("prod", "flights", "delay-model") == "prod.flights.delay-model.predictions"
    env = load_env("staging")
    assert (env.payload_table, env.topic) == ("staging.flights.delay_model_payload", "staging.flights.delay-model.predictions")


def test_the_own_catalog_rule_is_one_function():
    names.check_own("dev", "dev.flights.t", "environment dev")
    with pytest.raises(
        AccessDeniedError,
        match="^environment dev may not write prod.flights.t: catalog prod is read-only "
        r"here \(environment dev writes only catalog dev\)$",
    ):
        names.check_own("dev", "prod.flights.t", "environment dev")


def test_the_registry_refuses_tags_and_aliases_on_another_catalogs_model(home, tmp_path):
    """From dev, a prod model's tags and aliases cannot be written, whoever calls the registry."""
    prod, dev = load_env("prod"), load_env("dev")
    registry.configure(prod)
    client = registry.client()
    client.create_registered_model(prod.model_name)
    (tmp_path / "model").mkdir()
    version = client.create_model_version(prod.model_name, str(tmp_path / "model")).version
    ref = registry.ModelRef(prod.model_name, str(version))
    registry.move_alias(ref, names.CHAMPION, "set up", by="test")
    before = dict(client.get_model_version(ref.name, ref.version).tags)

    registry.configure(dev)
    refused = f"environment dev may not write {prod.model_name}: catalog prod is read-only"
    for write in (
        lambda: registry.set_tags(ref, {"x": "y"}),
        lambda: registry.move_alias(ref, names.CHALLENGER, "sneak", by="test"),
        lambda: registry.remove_alias(ref, names.CHAMPION, "sneak", by="test"),
    ):
        with pytest.raises(AccessDeniedError, match=refused):
            write()
    assert dict(client.get_model_version(ref.name, ref.version).tags) == before
    assert registry.aliases(prod.model_name) == {names.CHAMPION: str(version)}

    registry.configure(prod)  # from prod itself the same write goes through
    registry.set_tags(ref, {"x": "y"})
    assert client.get_model_version(ref.name, ref.version).tags["x"] == "y"
