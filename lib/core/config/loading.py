"""Reading a config file into a typed model, once: YAML in, a pydantic model out, and every
problem one ConfigError line naming the file and the key's dotted path, e.g.

    conf/model.yml: deployment.approvel: unknown key (did you mean approval?)
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from lib.core.errors import ConfigError

PROJECT_DIR = Path(__file__).resolve().parents[3]
CONF_DIR = PROJECT_DIR / "conf"  # the shipped configuration
CONF_ENV_VAR = "LAKEHOUSE_CONF"  # another conf folder (run_pipeline.py and the notebooks it runs read it)
M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """A config block: an unknown (misspelt) key is an error, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def conf_dir() -> Path:
    """The conf folder in use: $LAKEHOUSE_CONF (relative to the working folder) if set, else conf/."""
    chosen = os.environ.get(CONF_ENV_VAR)
    return Path(chosen).expanduser().resolve() if chosen else CONF_DIR


def schema_comment(path: Path, kind: str) -> str:
    """The first line of a config file of this kind at `path`: its JSON Schema (conf/schemas/<kind>.json,
    relative to the file's folder), which editors with a YAML language server check it with."""
    schema = os.path.relpath(CONF_DIR / "schemas" / f"{kind}.json", Path(path).resolve().parent)
    return f"# yaml-language-server: $schema={Path(schema).as_posix()}"


def display_path(path: Path | str) -> str:
    """A path relative to the project folder when it is inside it, else absolute."""
    try:
        return Path(path).resolve().relative_to(PROJECT_DIR).as_posix()
    except ValueError:
        return Path(path).resolve().as_posix()


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every failure into one ConfigError line."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {display_path(path)} is missing") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {display_path(path)} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {display_path(path)} must hold a mapping at the top level")
    return data


def invalid(at: str | tuple[str, ...], message: str) -> PydanticCustomError:
    """A cross-field problem found by a model validator, at `at` below the model: a key, or the
    keys of a path (("deployment", "metric"): a path whose words are not a tag key or a name)."""
    where = ".".join(at) if isinstance(at, tuple) else at
    return PydanticCustomError("config", "{message}", {"at": where, "message": message})


def parse_model(model: type[M], raw: Any, source: str, *path: Any, skip_missing: bool = False) -> M:
    """`raw` checked by `model`; the first problem is one ConfigError line
    `<source>: <path>.<key>: <what is wrong>` (a misspelt key first: it explains a missing one).

    Args:
        source: the file (a path, shown relative to the project) or what else gave the values.
        path: the keys above `raw` in its file.
        skip_missing: let required keys be missing (a block that `defaults` completes).
    """
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = [e for e in exc.errors() if not (skip_missing and e["type"] == "missing")]
        if not errors:
            return None  # type: ignore[return-value]  # only missing keys: the caller merges first
        error = min(errors, key=lambda e: e["type"] != "extra_forbidden")
        where, message = describe(model, error)
        dotted = ".".join(str(p) for p in (*path, *where))
        raise ConfigError(f"{_source(source)}: {dotted or '(top level)'}: {message}") from None


def _source(source: str) -> str:
    return display_path(source) if ("/" in source or source.endswith((".yml", ".yaml"))) else source


def describe(model: type[BaseModel], error: ErrorDetails) -> tuple[tuple[Any, ...], str]:
    """The path of a pydantic error (union members left out) and its message in our words."""
    loc, kind, given = tuple(error["loc"]), error["type"], error.get("input")
    if kind == "config":
        return (*_plain(model, loc), *[p for p in error["ctx"]["at"].split(".") if p]), error["ctx"]["message"]
    if loc and loc[-1] == "[key]":
        where = _plain(model, loc[:-1])
        choices = _quoted(error.get("ctx", {}).get("expected", ""))
        return where, f"unknown key: use one of {', '.join(choices)}{suggest(str(given), choices)}"
    where = _plain(model, loc)
    if kind == "extra_forbidden":
        known = _keys_at(model, loc[:-1])
        return where, "unknown key" + (suggest(str(loc[-1]), known) if known else "")
    if kind == "missing":
        return where, "missing (required)"
    if kind == "literal_error":
        choices = _quoted(error["ctx"]["expected"])
        return where, f"must be one of {', '.join(choices)}, got {given!r}{suggest(str(given), choices)}"
    if kind in ("value_error", "assertion_error"):
        return where, re.sub(r"^(Value|Assertion) error, ", "", error["msg"])
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return where, f"must be a mapping, got {given!r}"
    message = re.sub(r"^Input should be ", "must be ", error["msg"])
    message = re.sub(r"^(\w+) should ", r"must ", message)
    if not isinstance(given, (dict, list, BaseModel)):
        message += f", got {given!r}"
    return where, message


def suggest(word: str, choices: list[str]) -> str:
    """` (did you mean x?)` for the choice closest to `word`, or nothing."""
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _quoted(expected: str) -> list[str]:
    return re.findall(r"'([^']*)'", expected)


def _plain(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The loc without the union-member names pydantic inserts (e.g. `RunJob`, `literal['x']`)."""
    out: list[Any] = []
    tp: Any = model  # then the annotation at each step: a model, a generic alias, a union, or None
    for part in loc:
        tp = _unwrap(tp)
        members = _union_members(tp)
        if members and isinstance(part, str):
            named = [m for m in members if getattr(m, "__name__", None) == part or part.startswith(("literal[", "function-"))]
            if named:
                tp = named[0] if isinstance(named[0], type) else None
                continue
        out.append(part)
        tp = _step(tp, part)
    return tuple(out)


def _keys_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys a mapping at `loc` (a pydantic loc) may hold, when it is a model's."""
    tp: Any = model
    for part in loc:
        tp = _step(_unwrap(tp), part)
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or name for name, f in tp.model_fields.items()]
    return []


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    members = _union_members(tp)
    if members:
        useful = [m for m in members if m is not type(None)]
        return useful[0] if len(useful) == 1 else tp
    return tp


def _union_members(tp: Any) -> tuple[Any, ...]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return tuple(_unwrap(m) for m in typing.get_args(tp))
    return ()


def _step(tp: Any, part: Any) -> Any:
    """The type found one key (or index) below `tp`, None when unknown."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, field in tp.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
        return None
    base, args = typing.get_origin(tp), typing.get_args(tp)
    if base is dict and len(args) == 2:
        return args[1]
    if base in (list, tuple, set, frozenset) and args:
        return args[0]
    return None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return base updated by override, merging nested mappings key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
