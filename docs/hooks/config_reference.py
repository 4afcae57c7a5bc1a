"""MkDocs hook: a config reference page per JSON Schema in conf/schemas/ (`make schemas`).

Each page is a table of the file's keys as dotted paths (`serving.rollout.steps`; a list's
items as `alerts[].name`, a map's values as `<name>.table_name`) with their type, default,
description and allowed values. With no schema files, one page says how to generate them.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

SCHEMA_DIR = "conf/schemas"
PAGE_DIR = "reference/config"
INDEX = f"{PAGE_DIR}/index.md"


# --- flattening a schema into rows -------------------------------------------------------------


def _resolve(node: dict, defs: dict) -> dict:
    """The schema a `$ref` (or a one-item `allOf`, pydantic's wrapper) points at."""
    while True:
        if "$ref" in node:
            target = defs.get(node["$ref"].rsplit("/", 1)[-1], {})
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        elif len(node.get("allOf", [])) == 1:
            node = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
        else:
            return node


def _variants(node: dict, defs: dict) -> list[dict]:
    """The alternatives of an `anyOf`/`oneOf` (resolved), or the node itself."""
    node = _resolve(node, defs)
    options = node.get("anyOf") or node.get("oneOf")
    return [_resolve(option, defs) for option in options] if options else [node]


def _type(node: dict, defs: dict) -> str:
    names = []
    for variant in _variants(node, defs):
        kind = variant.get("type")
        if isinstance(kind, list):
            names.extend(kind)
        elif kind == "array":
            items = variant.get("items")
            names.append(f"list[{_type(items, defs)}]" if items else "list")
        elif kind == "object" or "properties" in variant:
            extra = variant.get("additionalProperties")
            if isinstance(extra, dict) and not variant.get("properties"):
                names.append(f"map[string, {_type(extra, defs)}]")
            else:
                names.append("object")
        elif kind:
            names.append(kind)
        elif "const" in variant:
            names.append(type(variant["const"]).__name__)
        else:
            names.append("any")
    return " | ".join(dict.fromkeys(names))


_BOUNDS = {
    "minimum": "≥ {}",
    "exclusiveMinimum": "> {}",
    "maximum": "≤ {}",
    "exclusiveMaximum": "< {}",
    "minLength": "at least {} characters",
    "maxLength": "at most {} characters",
    "minItems": "at least {} items",
    "maxItems": "at most {} items",
}


def _bound(key: str, value: Any) -> str:
    if value == 1 and key in ("minLength", "minItems"):
        return "not empty"
    return _BOUNDS[key].format(value)


def _allowed(node: dict, defs: dict) -> list[str]:
    """Allowed values and constraints, as short phrases (values in code spans)."""
    phrases: list[str] = []
    for variant in _variants(node, defs):
        if variant.get("type") == "null":
            continue
        if "const" in variant:
            phrases.append(_code(variant["const"]))
        if "enum" in variant:
            phrases.append(", ".join(_code(value) for value in variant["enum"]))
        phrases.extend(_bound(key, variant[key]) for key in _BOUNDS if key in variant)
        if "pattern" in variant:
            phrases.append(f"matches {_code(variant['pattern'], raw=True)}")
        items = variant.get("items")
        if isinstance(items, dict):
            phrases.extend(f"each: {phrase}" for phrase in _allowed(items, defs))
    return list(dict.fromkeys(phrases))


def _children(node: dict, path: str, defs: dict, seen: tuple[str, ...]) -> list[dict]:
    """Rows for what a node holds: an object's keys, a list's items, a map's values."""
    ref = node.get("$ref", "")
    if ref and ref in seen:  # a model that contains itself: stop at the second visit
        return []
    seen = (*seen, ref) if ref else seen
    rows: list[dict] = []
    for variant in _variants(node, defs):
        properties = variant.get("properties") or {}
        required = set(variant.get("required", []))
        for name, prop in properties.items():
            rows.extend(_rows(prop, f"{path}.{name}" if path else name, name in required, defs, seen))
        items, extra = variant.get("items"), variant.get("additionalProperties")
        if variant.get("type") == "array" and isinstance(items, dict):
            rows.extend(_children(items, f"{path}[]", defs, seen))
        if isinstance(extra, dict) and not properties:
            rows.extend(_children(extra, f"{path}.<name>" if path else "<name>", defs, seen))
    return rows


def _rows(prop: dict, path: str, required: bool, defs: dict, seen: tuple[str, ...]) -> list[dict]:
    target = _resolve(prop, defs)
    description = prop.get("description") or target.get("description") or _element_description(target, defs)
    default = "required" if required else (_code(prop["default"]) if "default" in prop else "optional")
    row = {
        "path": path,
        "type": _type(prop, defs),
        "default": default,
        "description": " ".join(description.split()),
        "allowed": "; ".join(_allowed(prop, defs)),
    }
    return [row, *_children(prop, path, defs, seen)]


def _element_description(node: dict, defs: dict) -> str:
    """A list's or a map's description, from what it holds (`One custom_metrics entry ...`)."""
    for variant in _variants(node, defs):
        element = variant.get("items") or variant.get("additionalProperties")
        if isinstance(element, dict) and (text := _resolve(element, defs).get("description")):
            return text
    return ""


def flatten(schema: dict) -> list[dict]:
    """One row per key of the schema, nested objects as dotted paths, in declaration order."""
    return _children(schema, "", schema.get("$defs") or schema.get("definitions") or {}, ())


# --- markdown --------------------------------------------------------------------------------


def _code(value: Any, raw: bool = False) -> str:
    """A value as YAML shows it (a string bare unless empty), in a code span safe in a table."""
    text = value if isinstance(value, str) and (raw or value) else json.dumps(value)
    return f"<code>{html.escape(text)}</code>".replace("|", "&#124;")


def _cell(text: str) -> str:
    return text.replace("|", "&#124;").replace("\n", " ")


_PAGE_INTRO = (
    "Generated from `{path}` (`make schemas` writes it from the typed config models). A key not "
    "listed here is an error when the file is loaded. `<name>` stands for a key you choose; `[]` "
    "for each item of a list."
)
_INDEX_INTRO = (
    "Every file under `conf/` is parsed when a run starts into typed models that refuse an unknown "
    "key, a wrong type or a value out of range, naming the file and the key's path. The pages below "
    "are generated from those models' JSON Schemas."
)
_NO_SCHEMAS = (
    "No schema files are in `{folder}/` yet: `make schemas` generates them, and the next `make docs` renders a page per file."
)


def render_page(kind: str, schema: dict) -> str:
    """The reference page of one config file's schema."""
    lines = [f"# {kind}", ""]
    if schema.get("description"):
        lines += [" ".join(schema["description"].split()), ""]
    lines += [
        _PAGE_INTRO.format(path=f"{SCHEMA_DIR}/{kind}.json"),
        "",
        "| key | type | default | description | allowed values |",
        "|---|---|---|---|---|",
    ]
    for row in flatten(schema):
        cells = [
            f"<code>{html.escape(row['path'])}</code>",
            _cell(row["type"]),
            row["default"],
            _cell(html.escape(row["description"])),
            row["allowed"],
        ]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def render_index(kinds: list[str]) -> str:
    """The reference's first page: the list of schemas, or how to generate them."""
    lines = ["# Config reference", "", _INDEX_INTRO, ""]
    if not kinds:
        lines.append(_NO_SCHEMAS.format(folder=SCHEMA_DIR))
    lines += [f"- [{kind}]({kind}.md): `conf/{kind}.yml`" for kind in kinds]
    return "\n".join(lines) + "\n"


# --- MkDocs events ---------------------------------------------------------------------------


def _schemas(config) -> dict[str, Path]:
    root = Path(config.config_file_path).parent
    return {path.stem: path for path in sorted((root / SCHEMA_DIR).glob("*.json"))}


def on_config(config):
    """Under the nav's config reference entry, a page per schema."""
    kinds = list(_schemas(config))

    def expand(items):
        for index, item in enumerate(items or []):
            if isinstance(item, dict):
                for title, value in item.items():
                    if value == INDEX and kinds:
                        item[title] = [{"Overview": INDEX}, *({kind: f"{PAGE_DIR}/{kind}.md"} for kind in kinds)]
                    elif isinstance(value, list):
                        expand(value)
            elif item == INDEX and kinds:
                items[index] = {"Config reference": [INDEX, *(f"{PAGE_DIR}/{kind}.md" for kind in kinds)]}

    expand(config.nav)
    return config


def on_files(files: Files, config) -> Files:
    schemas = _schemas(config)
    files.append(File.generated(config, INDEX, content=render_index(list(schemas))))
    for kind, path in schemas.items():
        files.append(File.generated(config, f"{PAGE_DIR}/{kind}.md", content=render_page(kind, json.loads(path.read_text()))))
    return files
