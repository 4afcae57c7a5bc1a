"""The rows of the profile and drift metric tables, computed from sketches (numpy, vectorized).

Input is what lib/monitoring/sketch.py merges from Spark's partitions: per group (granularity, window,
model, slice) and column, exact counts and moments and the counts over the column's cells.
Each statistic is computed for all groups at once: counts, nulls, zeros, mean, standard
deviation, min and max exactly; quantiles, distinct counts, drift and the ROC AUC from the
cells (exact where the values are the cells' edges: see lib/monitoring/sketch.py); the confusion matrix
and log loss exactly; a regression's errors exactly, under Lakehouse Monitoring's column names.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from lib.core import metrics as metric_registry
from lib.monitoring import drift
from lib.monitoring.sketch import ABSOLUTE, ERRORS, NEGATIVE, POSITIVE, RELATIVE, TARGETS, Merged, Spec, window_ends

TABLE = ":table"  # column_name of the table-level rows (row count and model quality)
QUANTILES = [0.05, 0.25, 0.5, 0.75, 0.95]
FREQUENT_ITEMS = 5
QUALITY_METRICS = ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"]
# The two a chart of quality over time shows, by the monitor's problem type (the second dashed).
SHOWN_QUALITY = {
    "PROBLEM_TYPE_CLASSIFICATION": ("roc_auc", "accuracy"),
    "PROBLEM_TYPE_REGRESSION": ("root_mean_squared_error", "mean_absolute_error"),
}
# A regression's quality columns: Lakehouse Monitoring's names, as the metrics registry gives them.
REGRESSION_METRICS = [m.monitoring_column for m in metric_registry.of(metric_registry.REGRESSION) if m.monitoring_column]
WINDOW = ["granularity", "window_start", "window_end"]
GROUP = [*WINDOW, "model_id"]
SLICE = ["slice_key", "slice_value"]

WINDOW_TYPE = "struct<start:timestamp_ntz,end:timestamp_ntz>"
_TEST = "struct<statistic:double,pvalue:double>"
PROFILE_FIELDS = [
    ("window", WINDOW_TYPE),
    ("granularity", "string"),
    ("model_id", "string"),
    ("slice_key", "string"),
    ("slice_value", "string"),
    ("column_name", "string"),
    ("data_type", "string"),
    ("log_type", "string"),
    ("count", "bigint"),
    ("num_nulls", "bigint"),
    ("avg", "double"),
    ("quantiles", "array<double>"),
    ("min", "double"),
    ("max", "double"),
    ("stddev", "double"),
    ("num_zeros", "bigint"),
    ("num_nan", "bigint"),
    ("median", "double"),
    ("distinct_count", "bigint"),
    ("frequent_items", "array<struct<item:string,count:bigint>>"),
    ("percent_null", "double"),
    ("percent_zeros", "double"),
    ("percent_distinct", "double"),
    ("labelled_count", "bigint"),
    *[(m, "double") for m in QUALITY_METRICS],
    *[(m, "double") for m in REGRESSION_METRICS],
    ("confusion_matrix", "struct<tp:bigint,fp:bigint,tn:bigint,fn:bigint>"),
    ("refreshed_as_of", "date"),
]
DRIFT_FIELDS = [
    ("window", WINDOW_TYPE),
    ("window_cmp", WINDOW_TYPE),
    ("drift_type", "string"),
    ("granularity", "string"),
    ("model_id", "string"),
    ("slice_key", "string"),
    ("slice_value", "string"),
    ("column_name", "string"),
    ("data_type", "string"),
    ("count_delta", "double"),
    ("avg_delta", "double"),
    ("percent_null_delta", "double"),
    ("js_distance", "double"),
    ("ks_test", _TEST),
    ("wasserstein_distance", "double"),
    ("population_stability_index", "double"),
    ("chi_squared_test", _TEST),
    ("tv_distance", "double"),
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
    windows = (
        current[WINDOW]
        .drop_duplicates()
        .assign(window_start=lambda f: pd.to_datetime(f["window_start"]), window_end=lambda f: pd.to_datetime(f["window_end"]))
    )
    changed = changed.assign(window_start=pd.to_datetime(changed["window_start"]))
    present = changed.merge(windows, on=["granularity", "window_start"])
    after = windows.merge(present[["granularity", "window_end"]].rename(columns={"window_end": "window_start"}))
    compared = pd.concat([present, after]).drop_duplicates()
    before = windows.merge(compared[["granularity", "window_start"]].rename(columns={"window_start": "window_end"}))
    needed = pd.concat([compared, before]).drop_duplicates()
    return compared.reset_index(drop=True), needed.reset_index(drop=True)


# --- Groups -------------------------------------------------------------------------------------


def group_keys(groups: pd.DataFrame, granularities: list[str], slicing_exprs: list[str]) -> pd.DataFrame:
    """The merged groups' keys as table columns: granularity, window_start, window_end (none for
    a baseline), model_id, slice_key, slice_value."""
    out = pd.DataFrame(
        {
            "model_id": groups["model"].to_numpy(dtype=object),
            "slice_key": [None if s == 0 else slicing_exprs[s - 1] for s in groups["s"]],
            "slice_value": groups["v"].to_numpy(dtype=object),
        }
    )
    if len(groups) and (groups["g"] >= 0).all():
        starts = groups["w"].to_numpy(dtype=np.int64)
        ends = np.empty_like(starts)
        for g, name in enumerate(granularities):
            mine = groups["g"].to_numpy() == g
            ends[mine] = window_ends(starts[mine], name)
        out.insert(0, "granularity", [granularities[g] for g in groups["g"]])
        out.insert(1, "window_start", pd.to_datetime(starts, unit="s"))
        out.insert(2, "window_end", pd.to_datetime(ends, unit="s"))
    return out


# --- Profile rows -------------------------------------------------------------------------------


def _quantile_cells(dense: np.ndarray, n: np.ndarray, levels: list[float]) -> np.ndarray:
    """Per row and level, the first cell whose cumulative count reaches level x n (inverted CDF)."""
    cum = np.cumsum(dense, axis=1)
    return np.minimum(np.stack([(cum < q * n[:, None]).sum(axis=1) for q in levels], axis=1), dense.shape[1] - 1)


def _ratio(a: np.ndarray, b: np.ndarray, scale: float = 1.0) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, scale * a / np.where(b > 0, b, 1), np.nan)


def _numeric_profile(st: pd.DataFrame, dense: np.ndarray, x: np.ndarray, data_type: str) -> dict[str, Any]:
    n = dense.sum(axis=1).astype(float)
    avg = _ratio(st["total"].to_numpy(), n)
    with np.errstate(invalid="ignore"):
        variance = np.where(n > 1, np.maximum(st["squares"].to_numpy() - n * avg**2, 0) / np.maximum(n - 1, 1), np.nan)
    low, high = st["low"].to_numpy(), st["high"].to_numpy()
    quantiles = np.clip(x[_quantile_cells(dense, n, QUANTILES)], low[:, None], high[:, None])
    quantiles[n == 0] = np.nan
    exact = st["off"].to_numpy() == 0
    distinct = np.where(exact, (dense > 0).sum(axis=1), np.nan)  # unknown once values fall between edges
    return {
        "data_type": data_type,
        "count": n,
        "num_nulls": st["nulls"].to_numpy(),
        "num_nan": st["nans"].to_numpy(),
        "avg": avg,
        "stddev": np.sqrt(variance),
        "min": low,
        "max": high,
        "quantiles": [None if np.isnan(q[0]) else q.tolist() for q in quantiles],
        "median": quantiles[:, QUANTILES.index(0.5)],
        "num_zeros": np.where(n > 0, st["zeros"], np.nan),
        "percent_zeros": _ratio(st["zeros"].to_numpy(), n, 100.0),
        "distinct_count": distinct,
        "percent_null": _ratio(st["nulls"].to_numpy(), st["rows"].to_numpy(), 100.0),
        "percent_distinct": _ratio(distinct, n, 100.0),
    }


def _categorical_profile(st: pd.DataFrame, dense: np.ndarray, items: np.ndarray, data_type: str) -> dict[str, Any]:
    n = dense.sum(axis=1).astype(float)
    distinct = (dense > 0).sum(axis=1)
    top = np.argsort(-dense, axis=1, kind="stable")[:, :FREQUENT_ITEMS]
    frequent = [
        [{"item": str(items[j]), "count": int(row[j])} for j in order if row[j] > 0] or None for row, order in zip(dense, top)
    ]
    return {
        "data_type": data_type,
        "count": n,
        "num_nulls": st["nulls"].to_numpy(),
        "distinct_count": distinct,
        "frequent_items": frequent,
        "percent_null": _ratio(st["nulls"].to_numpy(), st["rows"].to_numpy(), 100.0),
        "percent_distinct": _ratio(distinct, n, 100.0),
    }


def _regression_quality(merged: Merged) -> dict[str, Any]:
    """A regression's quality per group from the sums of its errors and labels. The percentage
    error leaves out the rows whose label is 0 (it has none there); r2 is null when the labels
    of a window do not vary."""
    err, target = merged.stats[ERRORS], merged.stats[TARGETS]
    n = err["rows"].to_numpy().astype(float)
    mse = _ratio(err["squares"].to_numpy(), n)
    spread = target["squares"].to_numpy() - _ratio(target["total"].to_numpy() ** 2, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        varies = spread > 1e-12 * np.maximum(target["squares"].to_numpy(), 1.0)
        r2 = np.where(varies, 1 - err["squares"].to_numpy() / spread, np.nan)
    relative = merged.stats[RELATIVE]
    return {
        "labelled_count": err["rows"].to_numpy(),
        "mean_squared_error": mse,
        "root_mean_squared_error": np.sqrt(mse),
        "mean_absolute_error": _ratio(merged.stats[ABSOLUTE]["total"].to_numpy(), n),
        "mean_absolute_percentage_error": _ratio(relative["total"].to_numpy(), relative["rows"].to_numpy().astype(float)),
        "r2_score": np.where(n > 0, r2, np.nan),
    }


def _quality(merged: Merged) -> dict[str, Any]:
    """Model quality per group from the quality sketches; only labelled_count (0) before labels."""
    if ERRORS in merged.stats:
        return _regression_quality(merged)
    if POSITIVE not in merged.stats:
        return {"labelled_count": np.zeros(len(merged.groups), dtype=np.int64)}
    pos, neg = merged.stats[POSITIVE], merged.stats[NEGATIVE]
    p, n = pos["rows"].to_numpy(), neg["rows"].to_numpy()
    tp, fp = pos["above"].to_numpy(), neg["above"].to_numpy()
    fn, tn = p - tp, n - fp
    labelled = p + n
    # ROC AUC: the share of (positive, negative) pairs ordered right, a tie counting one half.
    pos_cells, neg_cells = merged.dense[POSITIVE].astype(float), merged.dense[NEGATIVE].astype(float)
    below = np.cumsum(neg_cells, axis=1) - neg_cells
    auc = _ratio((pos_cells * (below + 0.5 * neg_cells)).sum(axis=1), p.astype(float) * n)
    out = {
        "labelled_count": labelled,
        "accuracy": _ratio(tp + tn, labelled),
        "precision": np.nan_to_num(_ratio(tp, tp + fp)),
        "recall": np.nan_to_num(_ratio(tp, p)),
        "f1": np.nan_to_num(_ratio(2 * tp, 2 * tp + fp + fn)),
        "roc_auc": auc,
        "log_loss": _ratio(pos["total"].to_numpy() + neg["total"].to_numpy(), labelled),
    }
    some = labelled > 0
    out = {k: np.where(some, v, np.nan) if k != "labelled_count" else v for k, v in out.items()}
    out["confusion_matrix"] = [
        {"tp": int(a), "fp": int(b), "tn": int(c), "fn": int(d)} if s else None for a, b, c, d, s in zip(tp, fp, tn, fn, some)
    ]
    return out


def profile_rows(
    merged: Merged, spec: Spec, types: dict[str, str], keys: pd.DataFrame, as_of: dt.date, log_type: str = "INPUT"
) -> pd.DataFrame:
    """One row per group and column, plus a `:table` row per group (rows and model quality).

    Args:
        keys: group_keys() of merged.groups.
        types: column -> Spark data type.
    """
    if not len(merged.groups):
        return pd.DataFrame()
    parts, rows = [], None
    for i, column in enumerate(spec.columns):
        st = merged.stats[i]
        rows = st["rows"].to_numpy() if rows is None else rows
        values = (
            _numeric_profile(st, merged.dense[i], spec.numeric[column], types[column])
            if column in spec.numeric
            else _categorical_profile(st, merged.dense[i], merged.items[i], types[column])
        )
        parts.append(keys.assign(column_name=column, **values))
    table = keys.assign(column_name=TABLE, count=rows if rows is not None else 0, **_quality(merged))
    frame = pd.concat([*parts, table], ignore_index=True)
    frame["log_type"], frame["refreshed_as_of"] = log_type, as_of
    return frame


# --- Drift rows ---------------------------------------------------------------------------------


def _pairs(keys: pd.DataFrame, compared: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(rows, previous): the compared windows' groups and the group of the same model and slice in
    the window ending where each starts (-1 if none)."""
    index = keys.reset_index()
    targets = compared[["granularity", "window_start"]].assign(window_start=lambda f: pd.to_datetime(f["window_start"]))
    rows = index.merge(targets, on=["granularity", "window_start"])["index"].to_numpy()
    on = ["granularity", "model_id", "slice_key", "slice_value"]
    mine = index.loc[rows, [*on, "window_start"]].rename(columns={"window_start": "window_end"})
    before = index[[*on, "window_end", "index"]].rename(columns={"index": "previous"})
    return rows, _lookup(mine, before, [*on, "window_end"])


def _lookup(left: pd.DataFrame, right: pd.DataFrame, on: list[str]) -> np.ndarray:
    """For each row of left, right's `previous` of the row with equal `on` values (nulls equal), or -1."""

    def key(frame):
        return pd.MultiIndex.from_frame(frame[on].astype(object).where(frame[on].notna(), "\x00null").astype(str))

    where = pd.Series(right["previous"].to_numpy(), index=key(right))
    where = where[~where.index.duplicated()]
    return where.reindex(key(left)).fillna(-1).to_numpy(dtype=np.int64)


def _drift_values(
    cur: np.ndarray, ref: np.ndarray, cur_st: pd.DataFrame, ref_st: pd.DataFrame, column: str, spec: Spec, data_type: str
) -> dict[str, Any]:
    rows_a, rows_b = cur_st["rows"].to_numpy(), ref_st["rows"].to_numpy()
    null_a, null_b = cur_st["nulls"].to_numpy(), ref_st["nulls"].to_numpy()
    out: dict[str, Any] = {
        "count_delta": (rows_a - rows_b).astype(float),
        "percent_null_delta": _ratio(null_a, rows_a, 100.0) - _ratio(null_b, rows_b, 100.0),
    }
    if column in spec.numeric:
        got = drift.numeric(cur, ref, spec.numeric[column])
        n_a, n_b = cur.sum(axis=1), ref.sum(axis=1)
        out["avg_delta"] = _ratio(cur_st["total"].to_numpy(), n_a) - _ratio(ref_st["total"].to_numpy(), n_b)
        out["ks_test"] = _tests(got["ks_statistic"], got["ks_pvalue"])
        for name in drift.NUMERIC[1:]:
            out[name] = got[name]
    else:
        got = drift.categorical(cur, ref)
        out["chi_squared_test"] = _tests(got["chi_statistic"], got["chi_pvalue"])
        for name in drift.CATEGORICAL[1:]:
            out[name] = got[name]
    out["data_type"] = data_type
    return out


def _tests(statistic: np.ndarray, pvalue: np.ndarray) -> list:
    return [
        None if np.isnan(s) else {"statistic": float(s), "pvalue": None if np.isnan(p) else float(p)}
        for s, p in zip(statistic, pvalue)
    ]


def _categorical_union(a: Merged, b: Merged, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Both sides' categorical counts over the union of their items."""
    items = np.union1d(a.items[i], b.items[i])
    out = []
    for side in (a, b):
        dense = np.zeros((len(side.groups), len(items)), dtype=np.int64)
        dense[:, np.searchsorted(items, side.items[i])] = side.dense[i]
        out.append(dense)
    return out[0], out[1]


def drift_rows(
    merged: Merged,
    keys: pd.DataFrame,
    baseline: Merged | None,
    base_keys: pd.DataFrame | None,
    spec: Spec,
    types: dict[str, str],
    compared: pd.DataFrame,
) -> pd.DataFrame:
    """CONSECUTIVE rows (each compared window against the one ending where it starts, same model
    and slice) and BASELINE rows (against the model's baseline), per column, plus `:table` rows
    (count_delta) per group."""
    if not len(merged.groups) or compared.empty:
        return pd.DataFrame()
    rows, previous = _pairs(keys, compared)
    parts = []
    window = [{"start": s, "end": e} for s, e in zip(keys["window_start"], keys["window_end"])]
    # (drift type, the compared rows, the rows they are compared against, the side those are in, window_cmp)
    sides: list[tuple[str, np.ndarray, np.ndarray, Merged, list[dict[str, Any] | None]]] = []
    has_prev = previous >= 0
    if has_prev.any():
        a, b = rows[has_prev], previous[has_prev]
        sides.append(
            ("CONSECUTIVE", a, b, merged, [{"start": window[j]["start"], "end": window[i]["start"]} for i, j in zip(a, b)])
        )
    if baseline is not None and len(baseline.groups):
        assert base_keys is not None, "a baseline comes with its keys"
        base_index = base_keys.reset_index().rename(columns={"index": "previous"})
        found = _lookup(keys.loc[rows], base_index, ["model_id", "slice_key", "slice_value"])
        has_base = found >= 0
        if has_base.any():
            sides.append(("BASELINE", rows[has_base], found[has_base], baseline, [None] * int(has_base.sum())))
    first = spec.columns[0] if spec.columns else None
    for kind, a, b, other, cmp in sides:
        fixed = keys.iloc[a].reset_index(drop=True).assign(drift_type=kind, window=[window[i] for i in a], window_cmp=cmp)
        for i, column in enumerate(spec.columns):
            if column in spec.numeric:
                cur, ref = merged.dense[i][a], other.dense[i][b]
            else:
                cur_all, ref_all = _categorical_union(merged, other, i)
                cur, ref = cur_all[a], ref_all[b]
            values = _drift_values(cur, ref, merged.stats[i].iloc[a], other.stats[i].iloc[b], column, spec, types[column])
            parts.append(fixed.assign(column_name=column, **values))
        if first is not None:
            count = merged.stats[0]["rows"].to_numpy()[a] - other.stats[0]["rows"].to_numpy()[b]
            parts.append(fixed.assign(column_name=TABLE, data_type=None, count_delta=count.astype(float)))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


# --- To Spark -------------------------------------------------------------------------------------

_ARROW = {
    "string": pa.string(),
    "bigint": pa.int64(),
    "int": pa.int32(),
    "smallint": pa.int16(),
    "tinyint": pa.int8(),
    "double": pa.float64(),
    "float": pa.float32(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp_ntz": pa.timestamp("us"),
}


def arrow_type(kind: str) -> pa.DataType | None:
    """The Arrow type of a Spark DDL type of the metric tables (None: let Arrow infer it)."""
    kind = kind.strip()
    if kind.startswith("array<"):
        inner = arrow_type(kind[6:-1])
        return None if inner is None else pa.list_(inner)
    if kind.startswith("struct<"):
        fields, depth, start, body = [], 0, 0, kind[7:-1]
        for i, ch in enumerate(body + ","):
            depth += ch == "<"
            depth -= ch == ">"
            if ch == "," and depth == 0:
                name, _, inner = body[start:i].partition(":")
                fields.append((name.strip(), arrow_type(inner)))
                start = i + 1
        return None if any(t is None for _, t in fields) else pa.struct(fields)
    return _ARROW.get(kind)


def to_arrow(frame: pd.DataFrame, fields: list[tuple[str, str]]) -> pa.Table:
    """The frame as an Arrow table of the fields, in their order (a missing column or NaN is null)."""
    columns = {}
    for name, kind in fields:
        kind_arrow = arrow_type(kind)
        values = frame[name] if name in frame else pd.Series([None] * len(frame), dtype=object)
        if kind_arrow is not None and pa.types.is_integer(kind_arrow):
            values = pd.array(values, dtype="Float64").round().astype("Int64")  # NaN to null
        columns[name] = pa.array(values, type=kind_arrow, from_pandas=True)
    return pa.table(columns)
