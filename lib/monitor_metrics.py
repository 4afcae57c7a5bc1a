"""The rows of the profile and drift metric tables, computed from value counts (pure pandas).

Input is what `monitoring.value_counts` collects from Spark: per group (granularity, window,
model), slice and column, each distinct value and how many rows hold it. Everything here is
exact on those counts: weighted moments and quantiles for the profile, lib/drift.py (scipy)
for drift, sklearn with the counts as sample weights for model quality.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sklearn

from lib import drift
from lib.drift import Distribution
from lib.evaluation import classification_metrics

TABLE = ":table"  # column_name of the table-level rows (row count and model quality)
QUALITY = ":quality"  # value counts of (label, prediction) pairs
QUANTILES = [0.05, 0.25, 0.5, 0.75, 0.95]
FREQUENT_ITEMS = 5
QUALITY_METRICS = ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"]
WINDOW = ["granularity", "window_start", "window_end"]
GROUP = [*WINDOW, "model_id"]
SLICE = ["slice_key", "slice_value"]

WINDOW_TYPE = "struct<start:timestamp_ntz,end:timestamp_ntz>"
_TEST = "struct<statistic:double,pvalue:double>"
PROFILE_FIELDS = [
    ("window", WINDOW_TYPE), ("granularity", "string"), ("model_id", "string"), ("slice_key", "string"),
    ("slice_value", "string"), ("column_name", "string"), ("data_type", "string"), ("log_type", "string"),
    ("count", "bigint"), ("num_nulls", "bigint"), ("avg", "double"), ("quantiles", "array<double>"),
    ("min", "double"), ("max", "double"), ("stddev", "double"), ("num_zeros", "bigint"), ("num_nan", "bigint"),
    ("median", "double"), ("distinct_count", "bigint"), ("frequent_items", "array<struct<item:string,count:bigint>>"),
    ("percent_null", "double"), ("percent_zeros", "double"), ("percent_distinct", "double"),
    ("labelled_count", "bigint"), *[(m, "double") for m in QUALITY_METRICS],
    ("confusion_matrix", "struct<tp:bigint,fp:bigint,tn:bigint,fn:bigint>"), ("refreshed_as_of", "date"),
]
DRIFT_FIELDS = [
    ("window", WINDOW_TYPE), ("window_cmp", WINDOW_TYPE), ("drift_type", "string"), ("granularity", "string"),
    ("model_id", "string"), ("slice_key", "string"), ("slice_value", "string"), ("column_name", "string"),
    ("data_type", "string"), ("count_delta", "double"), ("avg_delta", "double"), ("percent_null_delta", "double"),
    ("js_distance", "double"), ("ks_test", _TEST), ("wasserstein_distance", "double"),
    ("population_stability_index", "double"), ("chi_squared_test", _TEST), ("tv_distance", "double"),
    ("l_infinity_distance", "double"),
]


def ddl(fields: list[tuple[str, str]]) -> str:
    """A Spark DDL schema string of (name, type) pairs."""
    return ", ".join(f"`{name}` {kind}" for name, kind in fields)


_NUMERIC = ("tinyint", "smallint", "int", "bigint", "float", "double")


def is_numeric(data_type: str) -> bool:
    return data_type in _NUMERIC or data_type.startswith("decimal")


# --- Which windows to recompute ----------------------------------------------------------------

def changed_windows(current: pd.DataFrame, recorded: pd.DataFrame | None) -> pd.DataFrame:
    """(granularity, window_start) of the windows whose rows per model or labelled rows differ
    from what the profile table recorded, or that it lacks or no longer matches (all if None)."""
    keys = ["granularity", "window_start"]
    facts = ["model_id", "count", "labelled_count"]

    def signature(frame: pd.DataFrame) -> pd.Series:
        frame = frame.assign(window_start=pd.to_datetime(frame["window_start"]))
        return frame.groupby(keys)[facts].apply(lambda f: tuple(sorted(map(tuple, f.astype(str).to_numpy()))))

    now = signature(current)
    if recorded is None or recorded.empty:
        return now.index.to_frame(index=False)
    before = signature(recorded)
    both = now.to_frame("now").join(before.to_frame("before"), how="outer")
    return both[both["now"] != both["before"]].index.to_frame(index=False)


def with_neighbours(changed: pd.DataFrame, current: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(compared, needed): the windows whose drift rows change (the changed ones and the window
    after each), and those whose counts that takes (the compared ones and the window before each)."""
    windows = current[WINDOW].drop_duplicates().assign(window_start=lambda f: pd.to_datetime(f["window_start"]),
                                                       window_end=lambda f: pd.to_datetime(f["window_end"]))
    changed = changed.assign(window_start=pd.to_datetime(changed["window_start"]))
    present = changed.merge(windows, on=["granularity", "window_start"])
    after = windows.merge(present[["granularity", "window_end"]].rename(columns={"window_end": "window_start"}))
    compared = pd.concat([present, after]).drop_duplicates()
    before = windows.merge(compared[["granularity", "window_start"]].rename(columns={"window_start": "window_end"}))
    needed = pd.concat([compared, before]).drop_duplicates()
    return compared.reset_index(drop=True), needed.reset_index(drop=True)


# --- Counts, grouped ---------------------------------------------------------------------------

_NO_SLICE = "\x00null"  # a null slice key or value in lookups (NaN never equals itself)


@dataclass(frozen=True)
class Part:
    """The value counts of one column in one group and slice: s (categorical value, or "NaN"),
    d (numeric value), n (rows)."""

    s: np.ndarray
    d: np.ndarray
    n: np.ndarray


def parts(counts: pd.DataFrame, keys: list[str]) -> dict[tuple, Part]:
    """The counts split by `keys` (one sort, numpy slices; a null slice key or value is _NO_SLICE)."""
    if counts.empty:
        return {}
    frame = counts.assign(**{c: counts[c].astype(object).where(counts[c].notna(), _NO_SLICE)
                             for c in SLICE if c in keys})
    codes = frame.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(codes[order])) + 1]
    ends = np.r_[starts[1:], len(order)]
    s, d, n = (frame[c].to_numpy(dtype=object if c == "s" else None)[order] for c in ("s", "d", "n"))
    heads = frame[keys].iloc[order[starts]].itertuples(index=False, name=None)
    return {head: Part(s[a:b], d[a:b].astype(float), n[a:b]) for head, a, b in zip(heads, starts, ends)}


def _unslice(value: Any) -> Any:
    return None if value == _NO_SLICE else value


# --- Profile rows -------------------------------------------------------------------------------

def _distribution(part: Part, numeric: bool) -> tuple[Distribution, int, int]:
    """A column's distribution (nulls and NaN left out), its null count and its NaN count.

    A numeric value is in `d` (a NaN is marked by s = "NaN": pandas reads a null double as NaN
    too); a categorical one in `s`.
    """
    s, d, n = part.s, part.d, part.n
    if numeric:
        nan = s == "NaN"
        null = np.isnan(d) & ~nan
        kept = ~null & ~nan
        values = d[kept]
    else:
        null = pd.isna(s)
        nan = np.zeros(len(s), dtype=bool)
        kept = ~null
        values = s[kept]
    return Distribution(values, n[kept]), int(n[null].sum()), int(n[nan].sum())


def _column_profile(part: Part, data_type: str) -> dict[str, Any]:
    numeric = is_numeric(data_type)
    dist, nulls, nans = _distribution(part, numeric)
    n, rows = dist.n, dist.n + nulls + nans
    out: dict[str, Any] = {"data_type": data_type, "count": n, "num_nulls": nulls, "num_nan": nans if numeric else None,
                           "distinct_count": len(dist.values),
                           "percent_null": 100.0 * nulls / rows if rows else None,
                           "percent_distinct": 100.0 * len(dist.values) / n if n else None}
    if numeric and n:
        values, weights = dist.values.astype(float), dist.counts.astype(float)
        mean = float(np.average(values, weights=weights))
        variance = float(np.sum(weights * (values - mean) ** 2) / (n - 1)) if n > 1 else None
        cumulative = np.cumsum(weights)
        quantiles = [float(values[np.searchsorted(cumulative, q * n, side="left")]) for q in QUANTILES]
        zeros = int(dist.counts[values == 0].sum())
        out.update(avg=mean, min=float(values[0]), max=float(values[-1]),
                   stddev=None if variance is None else float(np.sqrt(variance)), quantiles=quantiles,
                   median=quantiles[QUANTILES.index(0.5)], num_zeros=zeros, percent_zeros=100.0 * zeros / n)
    if not numeric and n:
        top = np.argsort(-dist.counts, kind="stable")[:FREQUENT_ITEMS]
        out["frequent_items"] = [{"item": str(dist.values[i]), "count": int(dist.counts[i])} for i in top]
    return out


def _quality(part: Part | None, threshold: float) -> dict[str, Any]:
    """Model quality from (label, prediction) pair counts; nothing before labels arrive."""
    if part is None or not len(part.n):
        return {"labelled_count": 0}
    y, proba, n = part.s.astype(float).astype(int), part.d, part.n
    # Checked inputs: sklearn's per-call argument validation was most of the cost (~16 ms a window).
    with sklearn.config_context(skip_parameter_validation=True, assume_finite=True):
        metrics = classification_metrics(y, proba, threshold, weights=n)
    predicted = proba >= threshold
    matrix = {"tp": int(n[predicted & (y == 1)].sum()), "fp": int(n[predicted & (y == 0)].sum()),
              "tn": int(n[~predicted & (y == 0)].sum()), "fn": int(n[~predicted & (y == 1)].sum())}
    return {"labelled_count": int(n.sum()), **{m: _finite(metrics[m]) for m in QUALITY_METRICS},
            "confusion_matrix": matrix}


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def profile_rows(counts: pd.DataFrame, columns: dict[str, str], as_of: dt.date, threshold: float,
                 log_type: str = "INPUT") -> pd.DataFrame:
    """One row per group, slice and column, plus a `:table` row per group and slice.

    Args:
        counts: value counts with the GROUP columns (model_id only, for a baseline).
        columns: profiled column -> Spark data type (e.g. "double", "string").
    """
    group = [c for c in GROUP if c in counts.columns]
    out, tables = [], {}
    for key, part in parts(counts, [*group, *SLICE, "column_name"]).items():
        head, column = key[:-1], key[-1]
        table = tables.setdefault(head, {})
        if column == QUALITY:
            table["quality"] = part
        elif column in columns:
            out.append({**_fixed(group, head), "column_name": column, **_column_profile(part, columns[column])})
            table.setdefault("rows", int(part.n.sum()))  # every row is counted once in each column
    for head, table in tables.items():
        out.append({**_fixed(group, head), "column_name": TABLE, "count": table.get("rows", 0),
                    **_quality(table.get("quality"), threshold)})
    frame = pd.DataFrame(out)
    if frame.empty:
        return frame
    frame["log_type"], frame["refreshed_as_of"] = log_type, as_of
    if "window_start" in frame:
        frame["window"] = [{"start": s, "end": e} for s, e in zip(frame["window_start"], frame["window_end"])]
    return frame


def _fixed(group: list[str], head: tuple) -> dict[str, Any]:
    """The group and slice columns of a row, from a parts() key without its column name."""
    fixed = dict(zip([*group, *SLICE], head))
    return {**fixed, **{c: _unslice(fixed[c]) for c in SLICE}}


# --- Drift rows ---------------------------------------------------------------------------------

def _drift(cur: tuple[Distribution, int, int], ref: tuple[Distribution, int, int], numeric: bool) -> dict[str, Any]:
    """The drift statistics of one column between two distributions (with their null and NaN counts)."""
    (a, a_null, a_nan), (b, b_null, b_nan) = cur, ref
    stats = drift.numeric_drift(a, b) if numeric else drift.categorical_drift(a, b)
    rows_a, rows_b = a.n + a_null + a_nan, b.n + b_null + b_nan
    out = {**stats, "count_delta": float(rows_a - rows_b),
           "percent_null_delta": (100.0 * a_null / rows_a - 100.0 * b_null / rows_b) if rows_a and rows_b else None}
    if numeric and a.n and b.n:
        out["avg_delta"] = float(np.average(a.values.astype(float), weights=a.counts)
                                 - np.average(b.values.astype(float), weights=b.counts))
    return out


def drift_rows(counts: pd.DataFrame, baseline: pd.DataFrame | None, columns: dict[str, str],
               compared: pd.DataFrame) -> pd.DataFrame:
    """CONSECUTIVE rows (a window against the one ending where it starts, same model and slice)
    and BASELINE rows (against the model's baseline) for the compared windows' columns."""
    counts = counts[counts["column_name"].isin(list(columns))].assign(
        window_start=lambda f: pd.to_datetime(f["window_start"]), window_end=lambda f: pd.to_datetime(f["window_end"]))
    windows = parts(counts, [*GROUP, *SLICE, "column_name"])
    ending = {(k[0], k[2], *k[3:]): (k, p) for k, p in windows.items()}  # by (granularity, window end, the rest)
    base = {} if baseline is None else parts(baseline[baseline["column_name"].isin(list(columns))],
                                             ["model_id", *SLICE, "column_name"])
    targets = set(zip(compared["granularity"], pd.to_datetime(compared["window_start"])))
    distributions: dict[int, tuple[Distribution, int, int]] = {}

    def of(part: Part, column: str) -> tuple[Distribution, int, int]:  # each part once
        if id(part) not in distributions:
            distributions[id(part)] = _distribution(part, is_numeric(columns[column]))
        return distributions[id(part)]

    out = []
    tabled: set[tuple] = set()  # (window, model, slice) groups given their `:table` rows
    for key, part in windows.items():
        g, start, end, model, slice_key, slice_value, column = key
        if (g, start) not in targets:
            continue
        numeric = is_numeric(columns[column])
        fixed = {"granularity": g, "model_id": model, "column_name": column, "window": {"start": start, "end": end},
                 "slice_key": _unslice(slice_key), "slice_value": _unslice(slice_value), "data_type": columns[column]}
        previous = ending.get((g, start, model, slice_key, slice_value, column))
        reference = base.get((model, slice_key, slice_value, column))
        # The group's `:table` rows (row counts; custom DRIFT metrics of `:table` hang on them),
        # from its first column: every row is counted once in each column.
        first = key[:-1] not in tabled
        tabled.add(key[:-1])
        if previous is not None:
            out.append({**fixed, "drift_type": "CONSECUTIVE", "window_cmp": {"start": previous[0][1], "end": start},
                        **_drift(of(part, column), of(previous[1], column), numeric)})
            if first:
                out.append({**fixed, "column_name": TABLE, "data_type": None, "drift_type": "CONSECUTIVE",
                            "window_cmp": {"start": previous[0][1], "end": start},
                            "count_delta": float(part.n.sum() - previous[1].n.sum())})
        if reference is not None:
            out.append({**fixed, "drift_type": "BASELINE", "window_cmp": None,
                        **_drift(of(part, column), of(reference, column), numeric)})
            if first:
                out.append({**fixed, "column_name": TABLE, "data_type": None, "drift_type": "BASELINE",
                            "window_cmp": None, "count_delta": float(part.n.sum() - reference.n.sum())})
    return pd.DataFrame(out)


# --- To Spark -------------------------------------------------------------------------------------

def to_records(frame: pd.DataFrame, fields: list[tuple[str, str]]) -> list[tuple]:
    """The frame's rows as tuples in the fields' order (a missing column or NaN is None)."""
    if frame.empty:
        return []
    names = [name for name, _ in fields]
    ordered = frame.reindex(columns=names)
    return [tuple(_plain(v) for v in row) for row in ordered.itertuples(index=False, name=None)]


def _plain(value: Any) -> Any:
    """A value Spark's createDataFrame takes: no numpy scalars, pandas timestamps or NaN."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, np.ndarray)):
        return [_plain(v) for v in value]
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.generic):
        return None if isinstance(value, np.floating) and np.isnan(value) else value.item()
    return value
