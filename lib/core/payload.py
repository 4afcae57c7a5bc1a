"""Invocation payloads: parse the four MLflow/Databricks input formats, check them against
the served model's signature, and encode predictions.

Each request is checked on its own before it joins a batch, so a bad request gets a 400 that
names the column and row, and never fails the requests it would have been batched with.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lib.core.errors import ApiError, bad

INPUT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_OTHER_KEYS = {"params", "client_request_id"}
_NUMBER = ("double", "float")
_INTEGER = ("long", "integer")


@dataclass(frozen=True)
class InputSpec:
    """What a served model accepts: its signature columns, or its lookup keys instead."""

    columns: tuple[str, ...]
    types: dict[str, str]
    required: frozenset[str]
    keys: tuple[str, ...] = ()
    timestamp_keys: frozenset[str] = frozenset()

    @staticmethod
    def from_model(meta) -> InputSpec:
        """From an mlflow.models.Model (the MLmodel file): signature plus packaged lookups."""
        inputs = meta.signature.inputs
        names = tuple(inputs.input_names())
        types = {c.name: c.type.name for c in inputs.inputs}
        required = frozenset(c.name for c in inputs.inputs if c.required)
        lookups = (meta.metadata or {}).get("feature_lookups") or []
        keys = tuple((meta.metadata or {}).get("keys") or ()) if lookups else ()
        return InputSpec(names, types, required, keys, frozenset(lk["timestamp_lookup_key"] for lk in lookups))


@dataclass
class Parsed:
    columns: dict[str, list]
    rows: int
    client_request_id: str | None


def loads(body: bytes, error_code: str = "INVALID_PARAMETER_VALUE") -> Any:
    """A request body's JSON; a 400 for anything that does not parse, nesting too deep for the
    parser included."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, error_code, f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, error_code, "request body is not valid JSON: nested too deeply to parse") from None


def parse(body: bytes) -> Parsed:
    """Decode a request body into columns; one 400 line for anything malformed."""
    doc = loads(body)
    if not isinstance(doc, dict):
        raise bad(f"request body must be a JSON object with one of {', '.join(INPUT_KEYS)}")
    given = [k for k in INPUT_KEYS if k in doc]
    if len(given) != 1:
        found = ", ".join(given) if given else "none"
        raise bad(f"request must hold exactly one of {', '.join(INPUT_KEYS)} (found: {found})")
    unknown = sorted(set(doc) - set(INPUT_KEYS) - _OTHER_KEYS)
    if unknown:
        raise bad(f"unknown request field(s): {', '.join(unknown)}")
    request_id = doc.get("client_request_id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad("client_request_id must be a string")
    key, value = given[0], doc[given[0]]
    if key == "dataframe_split":
        columns = _split(value)
    elif key == "inputs" and isinstance(value, dict):
        columns = _columnar(value)
    else:
        columns = _records(value, key)
    rows = len(next(iter(columns.values()))) if columns else 0
    if rows == 0:
        raise bad(f"{key} holds no rows")
    return Parsed(columns, rows, request_id)


def _split(value: Any) -> dict[str, list]:
    if not isinstance(value, dict) or not isinstance(value.get("columns"), list) or not isinstance(value.get("data"), list):
        raise bad("dataframe_split must be an object with a `columns` list and a `data` list of rows")
    names = value["columns"]
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise bad("dataframe_split.columns must be distinct strings")
    for i, row in enumerate(value["data"]):
        if not isinstance(row, list) or len(row) != len(names):
            raise bad(f"dataframe_split.data[{i}] must be a list of {len(names)} values, one per column")
    return {n: [row[j] for row in value["data"]] for j, n in enumerate(names)}


def _records(value: Any, key: str) -> dict[str, list]:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise bad(f"{key} must be a list of objects (one per row, column name to value)")
    names: dict[str, None] = {}
    for record in value:
        names.update(dict.fromkeys(record))
    return {n: [r.get(n) for r in value] for n in names}


def _columnar(value: dict) -> dict[str, list]:
    lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
    if -1 in lengths or len(lengths) > 1:
        raise bad("inputs as an object must map every column to a list, all of the same length")
    return {str(k): v for k, v in value.items()}


def check(parsed: Parsed, spec: InputSpec) -> tuple[dict[str, np.ndarray], bool]:
    """Typed columns for the model, and whether features must be looked up from the keys."""
    allowed = set(spec.columns) | set(spec.keys)
    unknown = [c for c in parsed.columns if c not in allowed]
    if unknown:
        raise bad(
            f"unknown column(s) {', '.join(unknown)}: the model takes {', '.join(spec.columns)}"
            + (f" (or the keys {', '.join(spec.keys)})" if spec.keys else "")
        )
    missing = [c for c in spec.columns if c in spec.required and c not in parsed.columns]
    lookup = bool(missing)
    if lookup:
        missing_keys = [k for k in spec.keys if k not in parsed.columns]
        if not spec.keys or missing_keys:
            hint = f"; or send the keys {', '.join(spec.keys)} to look the features up" if spec.keys else ""
            raise bad(f"missing column(s) {', '.join(missing)}{hint}")
    out = {}
    for name, values in parsed.columns.items():
        kind = "timestamp" if name in spec.timestamp_keys else spec.types.get(name, "key")
        out[name] = _typed(name, values, kind, name in spec.required or name in spec.keys)
    if not lookup:  # optional columns left out are missing values, as MLflow treats them
        for name in spec.columns:
            if name not in out:
                out[name] = np.full(
                    parsed.rows,
                    math.nan if spec.types[name] in _NUMBER else None,
                    dtype="float64" if spec.types[name] in _NUMBER else object,
                )
    return out, lookup


def _typed(name: str, values: list, kind: str, required: bool) -> np.ndarray:
    if kind in _NUMBER:
        for i, v in enumerate(values):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise bad(f"column {name!r} must hold numbers ({kind}), row {i} holds {v!r}")
        return np.array([math.nan if v is None else v for v in values], dtype="float64")
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            if required or kind != "string":
                raise bad(f"column {name!r} has no value in row {i}, and the signature requires one ({kind})")
        elif kind == "string" and not isinstance(v, str):
            raise bad(f"column {name!r} must hold strings, row {i} holds {v!r}")
        elif kind in _INTEGER and (isinstance(v, bool) or not isinstance(v, int)):
            raise bad(f"column {name!r} must hold integers ({kind}), row {i} holds {v!r}")
        elif kind == "boolean" and not isinstance(v, bool):
            raise bad(f"column {name!r} must hold true/false, row {i} holds {v!r}")
        elif kind == "key" and not isinstance(v, (str, int)):
            raise bad(f"key column {name!r} must hold strings or integers, row {i} holds {v!r}")
    if kind == "timestamp":
        try:
            return pd.to_datetime(pd.Series(values), format="ISO8601").to_numpy()
        except (ValueError, TypeError) as exc:
            raise bad(f"key column {name!r} must hold ISO timestamps like 2013-10-02T06:00:00: {exc}") from None
    return np.array(values, dtype="int64" if kind in _INTEGER else object)


def frame(batch: list[dict[str, np.ndarray]], order: list[str] | None = None) -> pd.DataFrame:
    """One DataFrame from the checked columns of several requests (same columns each)."""
    names = order or list(batch[0])
    if len(batch) == 1:
        return pd.DataFrame({n: batch[0][n] for n in names})
    return pd.DataFrame({n: np.concatenate([cols[n] for cols in batch]) for n in names})


def encode_predictions(values: Any) -> bytes:
    """{"predictions": [...]} with NaN as null, as MLflow's scoring server answers."""
    array = np.asarray(values)
    items = [None if isinstance(v, float) and math.isnan(v) else v for v in array.tolist()]
    return json.dumps({"predictions": items}).encode()
