"""Sketches: what a monitoring refresh keeps of each window, model, slice and column.

Spark hands each partition's rows (Arrow) to `partial`, which sums them per group into a
sketch; the driver adds the partitions' sketches up (`merge`). Only sketches leave Spark, and
their size depends on the number of groups, not of rows.

A numeric column's sketch: its rows, nulls, NaN, zeros, sum, sum of squares, min and max (all
exact) and its counts over cells fixed for the refresh (`cells`). Cell j holds the values in
[e_j, e_j+1) (below e_0 counts as e_0; the last cell is open). The edges are the distinct values
of a reference sample when it has at most EXACT_MAX of them, else its CELLS quantiles: on a
column whose values all are edges, each cell holds one value, so every statistic computed from
the cells is exact; `off` counts the values that are not an edge (the sketch is then binned).
A categorical column's sketch: each value and its count (exact). The model quality of a
classifier: per label, the prediction's counts over its cells, the rows predicted positive and the
summed log loss. Of a regression: the labelled rows' sums of the error e = prediction - label and
of e², of the label and its square, of |e|, and of |e / label| over the rows whose label is not 0
(every regression metric is a ratio of these sums, so windows and partitions add up exactly).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

EXACT_MAX = 1024  # a column with at most this many distinct sample values gets one cell each
CELLS = 256  # else this many quantile cells (plus the sample's deciles)
SAMPLE_ROWS = 20_000
LOG_LOSS_CLIP = 1e-6  # as lib.lifecycle.evaluation.classification_metrics clips the probabilities
POSITIVE, NEGATIVE = -1, -2  # the `c` of a classifier's quality sketches (labels 1 and 0)
# The `c` of a regression's quality sketches: rows, sum and sum of squares of each of these.
ERRORS, TARGETS, ABSOLUTE, RELATIVE = -3, -4, -5, -6  # e, the label, |e|, |e / label| (label != 0)
MOMENTS = (ERRORS, TARGETS, ABSOLUTE, RELATIVE)
PROBLEM_TYPES = ("classification", "regression")
_SECONDS = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}

SCHEMA = pa.schema(
    [
        ("g", pa.int8()),
        ("w", pa.int64()),
        ("model", pa.string()),
        ("s", pa.int8()),
        ("v", pa.string()),
        ("c", pa.int16()),
        ("rows", pa.int64()),
        ("nulls", pa.int64()),
        ("nans", pa.int64()),
        ("zeros", pa.int64()),
        ("off", pa.int64()),
        ("above", pa.int64()),
        ("total", pa.float64()),
        ("squares", pa.float64()),
        ("low", pa.float64()),
        ("high", pa.float64()),
        ("cells", pa.list_(pa.int32())),
        ("counts", pa.list_(pa.int64())),
        ("items", pa.list_(pa.string())),
    ]
)
# The same as Spark DDL, for mapInArrow.
DDL = (
    "g tinyint, w bigint, model string, s tinyint, v string, c smallint, rows bigint, nulls bigint, nans bigint, "
    "zeros bigint, off bigint, above bigint, total double, squares double, low double, high double, "
    "cells array<int>, counts array<bigint>, items array<string>"
)


def edges(sample: np.ndarray) -> np.ndarray:
    """A numeric column's cell edges from a reference sample (its NaN ignored)."""
    values = np.asarray(sample, dtype=float)
    values = values[~np.isnan(values)]
    distinct = np.unique(values)
    if len(distinct) > EXACT_MAX:
        levels = np.union1d(np.linspace(0, 1, CELLS + 1), np.arange(1, 10) / 10)
        distinct = np.unique(np.quantile(values, levels, method="inverted_cdf"))
    return distinct if len(distinct) else np.array([0.0])


@dataclass(frozen=True)
class Spec:
    """What `partial` sketches: the columns (numeric ones with their edges), the windows, the
    slices (per slicing expression, the string column of the rows holding its values) and the
    model quality."""

    numeric: dict[str, np.ndarray]
    categorical: list[str]
    granularities: list[str] = field(default_factory=list)  # none: one group per model and slice (a baseline)
    timestamp: str = "_ts"
    slices: tuple[str, ...] = ()
    label: str | None = None
    prediction: str | None = None
    threshold: float = 0.5  # a classifier's: a probability at or above it is predicted positive
    problem_type: str = "classification"  # or "regression" (PROBLEM_TYPES)

    def __post_init__(self) -> None:
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type {self.problem_type!r}: choose one of {', '.join(PROBLEM_TYPES)}")

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @property
    def bases(self) -> dict[int, int | None]:
        """Per granularity (index), the finest other one whose windows nest in its windows (its
        sketches are sums of that one's: days make weeks and months), or None (from the rows)."""
        out = {}
        for i, g in enumerate(self.granularities):
            inside = [j for j, f in enumerate(self.granularities) if j != i and _nests(f, g)]
            out[i] = min(inside, key=lambda j: _length(self.granularities[j])) if inside else None
        return out


# --- Windows ------------------------------------------------------------------------------------


def window_starts(seconds: np.ndarray, granularity: str) -> np.ndarray:
    """Each timestamp's window start (epoch seconds), aligned as Databricks aligns windows:
    days at midnight, weeks on Mondays, months on the 1st (UTC)."""
    count, unit = granularity.split()
    number, unit = int(count), unit.rstrip("s")
    if unit in ("month", "year"):
        months = seconds.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)
        step = number * (12 if unit == "year" else 1)
        start = (months // step) * step if unit == "year" else months - (months % step)
        return start.astype("datetime64[M]").astype("datetime64[s]").astype(np.int64)
    length = number * _SECONDS[unit]
    offset = 4 * _SECONDS["day"] if unit == "week" else 0  # weeks from Monday 1970-01-05
    return (seconds - offset) // length * length + offset


def _parse(granularity: str) -> tuple[int, str]:
    number, unit = granularity.split()
    return int(number), unit.rstrip("s")


def _length(granularity: str) -> float:
    number, unit = _parse(granularity)
    return number * {"month": 31 * 86400, "year": 366 * 86400}.get(unit, _SECONDS.get(unit, 0))


def _nests(finer: str, coarser: str) -> bool:
    """Every window of `finer` lies inside one window of `coarser`."""
    (nf, uf), (nc, uc) = _parse(finer), _parse(coarser)
    if uf in ("month", "year"):
        return (uc, nc) == ("year", 1) and (uf == "year" and nf == 1 or uf == "month" and 12 % nf == 0)
    step = nf * _SECONDS[uf]
    if uc in ("month", "year"):
        return uf != "week" and 86400 % step == 0  # months start at midnight
    offset = {"week": 4 * 86400}
    return (nc * _SECONDS[uc]) % step == 0 and (offset.get(uc, 0) - offset.get(uf, 0)) % step == 0 and (uf, nf) != (uc, nc)


def window_ends(starts: np.ndarray, granularity: str) -> np.ndarray:
    count, unit = granularity.split()
    number, unit = int(count), unit.rstrip("s")
    if unit in ("month", "year"):
        months = starts.astype("datetime64[s]").astype("datetime64[M]")
        return (months + number * (12 if unit == "year" else 1)).astype("datetime64[s]").astype(np.int64)
    return starts + number * _SECONDS[unit]


# --- The partition pass -------------------------------------------------------------------------


def _codes(values: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Codes and distinct values of a string column (null is a value of its own)."""
    codes, uniques = pd.factorize(np.asarray(values.to_pandas(), dtype=object), use_na_sentinel=False)
    return codes.astype(np.int64), np.array([None if pd.isna(u) else u for u in uniques], dtype=object)


def _float(column) -> tuple[np.ndarray, np.ndarray]:
    """(values as float64 with nulls as NaN, null mask)."""
    null = column.is_null().to_numpy(zero_copy_only=False)
    values = column.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(float, copy=True)
    values[null] = np.nan
    return values, null


def partial(table: pa.Table, spec: Spec) -> pa.Table:
    """The sketches of these rows (a table of SCHEMA): one row per group and column, for the
    granularities computed from rows (Spec.bases; `derive` makes the others)."""
    n = table.num_rows
    if n == 0:
        return SCHEMA.empty_table()
    model_codes, models = _codes(table.column("model_id"))
    if spec.granularities:
        seconds = (
            pc.cast(table.column(spec.timestamp).cast(pa.timestamp("us")), pa.int64()).to_numpy(zero_copy_only=False) // 1_000_000
        )
        windows = [(g, window_starts(seconds, spec.granularities[g])) for g, base in spec.bases.items() if base is None]
    else:
        windows = [(-1, np.zeros(n, dtype=np.int64))]
    slices = [(np.zeros(n, dtype=np.int64), np.array([None], dtype=object))]
    slices += [_codes(table.column(name)) for name in spec.slices]
    columns = [_numeric_column(table.column(c), e) for c, e in spec.numeric.items()]
    columns += [_categorical_column(table.column(c)) for c in spec.categorical]
    if spec.label and spec.prediction:
        columns += _quality_columns(table, spec) if spec.problem_type == "classification" else _regression_columns(table, spec)
    out = []
    for g, starts in windows:
        w_values, w_codes = np.unique(starts, return_inverse=True)
        for s, (v_codes, v_values) in enumerate(slices):
            key = (w_codes * len(models) + model_codes) * len(v_values) + v_codes
            present, group = np.unique(key, return_inverse=True)
            head = {
                "g": np.full(len(present), g, dtype=np.int8),
                "w": w_values[present // (len(models) * len(v_values))],
                "model": models[(present // len(v_values)) % len(models)],
                "s": np.full(len(present), s, dtype=np.int8),
                "v": v_values[present % len(v_values)],
            }
            rows = np.bincount(group, minlength=len(present))
            out += [
                _sketch_column(column.get("c", c), column, group, len(present), head, rows) for c, column in enumerate(columns)
            ]
    return pa.concat_tables(out)


def _numeric_column(column, e: np.ndarray) -> dict:
    """What every group's sketch of a numeric column needs, computed once for all groups."""
    x, null = _float(column)
    valid = np.flatnonzero(~np.isnan(x))
    xv = x[valid]
    cell = np.clip(np.searchsorted(e, xv, side="right") - 1, 0, None)
    return {
        "valid": valid,
        "x": xv,
        "cell": cell,
        "width": len(e),
        "null": np.flatnonzero(null),
        "nan": np.flatnonzero(np.isnan(x) & ~null),
        "zero": valid[xv == 0],
        "off": valid[e[cell] != xv],
    }


def _categorical_column(column) -> dict:
    codes, values = _codes(column)
    null = pd.isna(values)
    missing = codes == int(np.flatnonzero(null)[0]) if null.any() else np.zeros(len(codes), dtype=bool)
    return {
        "valid": np.flatnonzero(~missing),
        "cell": codes[~missing],
        "width": len(values),
        "values": values,
        "null": np.flatnonzero(missing),
    }


def _quality_columns(table: pa.Table, spec: Spec) -> list[dict]:
    """Per label (1: POSITIVE, 0: NEGATIVE), the labelled rows' prediction cells, whether each
    is predicted positive, and its log loss."""
    assert spec.label and spec.prediction, "called only for a spec that has both"
    y, y_null = _float(table.column(spec.label))
    p, p_null = _float(table.column(spec.prediction))
    e = spec.numeric[spec.prediction]
    out = []
    for c, label in ((POSITIVE, 1), (NEGATIVE, 0)):
        rows = np.flatnonzero(~y_null & ~p_null & ~np.isnan(p) & (y == label))
        clipped = np.clip(p[rows], LOG_LOSS_CLIP, 1 - LOG_LOSS_CLIP)
        out.append(
            {
                "c": c,
                "valid": rows,
                "cell": np.clip(np.searchsorted(e, p[rows], side="right") - 1, 0, None),
                "width": len(e),
                "above": rows[p[rows] >= spec.threshold],
                "loss": -np.log(clipped) if label == 1 else -np.log1p(-clipped),
            }
        )
    return out


def _regression_columns(table: pa.Table, spec: Spec) -> list[dict]:
    """The labelled rows' moments: of the error, the label, the absolute error and the absolute
    relative error (rows whose label is 0 have none). One cell each, holding the rows."""
    assert spec.label and spec.prediction, "called only for a spec that has both"
    y, y_null = _float(table.column(spec.label))
    p, p_null = _float(table.column(spec.prediction))
    rows = np.flatnonzero(~y_null & ~p_null & ~np.isnan(p) & ~np.isnan(y))
    e = p[rows] - y[rows]
    nonzero = y[rows] != 0
    out = []
    for c, where, values in (
        (ERRORS, rows, e),
        (TARGETS, rows, y[rows]),
        (ABSOLUTE, rows, np.abs(e)),
        (RELATIVE, rows[nonzero], np.abs(e[nonzero] / y[rows][nonzero])),
    ):
        out.append({"c": c, "valid": where, "cell": np.zeros(len(where), dtype=np.int64), "width": 1, "moments": values})
    return out


def _sketch_column(c: int, column: dict, group: np.ndarray, size: int, head: dict, rows: np.ndarray) -> pa.Table:
    """One column's sketches of every group."""

    def count(index: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(group[index], weights=weights, minlength=size)

    at = group[column["valid"]]
    dense = np.bincount(at * column["width"] + column["cell"], minlength=size * column["width"])
    nonzero = np.flatnonzero(dense)
    offsets = np.searchsorted(nonzero // column["width"], np.arange(size + 1)).astype(np.int32)
    cells = pa.ListArray.from_arrays(offsets, pa.array((nonzero % column["width"]).astype(np.int32)))
    given = {**head, "c": np.full(size, c, dtype=np.int16), "counts": pa.ListArray.from_arrays(offsets, pa.array(dense[nonzero]))}
    if "values" in column:  # categorical: the cells are codes; name them
        given |= {
            "rows": rows,
            "nulls": count(column["null"]),
            "items": pa.ListArray.from_arrays(
                offsets, pa.array(column["values"][nonzero % column["width"]].astype(str) if len(nonzero) else [], pa.string())
            ),
        }
    elif "moments" in column:  # a regression's quality
        values = column["moments"]
        given |= {
            "rows": np.bincount(at, minlength=size),
            "total": np.bincount(at, weights=values, minlength=size),
            "squares": np.bincount(at, weights=values * values, minlength=size),
            "cells": cells,
        }
    elif "loss" in column:  # a classifier's quality
        given |= {
            "rows": np.bincount(at, minlength=size),
            "above": count(column["above"]),
            "total": np.bincount(at, weights=column["loss"], minlength=size),
            "cells": cells,
        }
    else:
        x = column["x"]
        low, high = np.full(size, np.inf), np.full(size, -np.inf)
        np.minimum.at(low, at, x)
        np.maximum.at(high, at, x)
        given |= {
            "rows": rows,
            "nulls": count(column["null"]),
            "nans": count(column["nan"]),
            "zeros": count(column["zero"]),
            "off": count(column["off"]),
            "total": np.bincount(at, weights=x, minlength=size),
            "squares": np.bincount(at, weights=x * x, minlength=size),
            "low": np.where(np.isinf(low), np.nan, low),
            "high": np.where(np.isinf(high), np.nan, high),
            "cells": cells,
        }
    return pa.table([given[f.name] if f.name in given else pa.nulls(size, f.type) for f in SCHEMA], schema=SCHEMA)


# --- The driver: partitions added up --------------------------------------------------------------


@dataclass
class Merged:
    """The sketches of every group: `groups` (one row per group: g, w, model, s, v) and per
    column index c (numeric, categorical, POSITIVE, NEGATIVE or MOMENTS) its stats aligned with `groups`:
    a frame of the scalar fields and a dense counts array [groups, cells] (`items` for categorical)."""

    groups: pd.DataFrame
    stats: dict[int, pd.DataFrame]
    dense: dict[int, np.ndarray]
    items: dict[int, np.ndarray]


_KEYS = ["g", "w", "model", "s", "v"]
_STATS = ["rows", "nulls", "nans", "zeros", "off", "above", "total", "squares", "low", "high"]


def _groups(keys: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The distinct groups of these key rows, and each row's group index."""
    groups = keys.drop_duplicates(ignore_index=True)
    return groups, keys.merge(groups.reset_index(), on=list(keys.columns), how="left")["index"].to_numpy()


def _add_up(stats: pd.DataFrame, to: np.ndarray, size: int) -> pd.DataFrame:
    """Scalar sketch fields of rows added up into `size` groups (row i into group to[i]): counts
    and sums add, min and max combine (a null is nothing to add)."""
    out = {
        f: np.bincount(to, weights=stats[f].fillna(0).to_numpy(dtype=float), minlength=size)
        for f in _STATS
        if f not in ("low", "high")
    }
    for f, ufunc, start in (("low", np.fmin, np.inf), ("high", np.fmax, -np.inf)):
        value = np.full(size, start)
        ufunc.at(value, to, stats[f].to_numpy(dtype=float, na_value=np.nan))
        out[f] = np.where(np.isinf(value), np.nan, value)
    return pd.DataFrame(out)


def merge(table: pa.Table, spec: Spec) -> Merged:
    """Add up the partitions' sketches of each group and column."""
    frame = table.drop_columns(["cells", "counts", "items"]).to_pandas()
    groups, gid = _groups(frame[_KEYS])
    size = len(groups)
    stats, dense, items = {}, {}, {}
    cells = table.column("cells").combine_chunks()
    counts = table.column("counts").combine_chunks()
    names = table.column("items").combine_chunks()
    widths = {i: len(e) for i, e in enumerate(spec.numeric.values())}
    if spec.prediction in spec.numeric:
        widths[POSITIVE] = widths[NEGATIVE] = len(spec.numeric[spec.prediction])
    widths |= {c: 1 for c in MOMENTS}
    for c in np.unique(frame["c"]):
        rows = np.flatnonzero(frame["c"].to_numpy() == c)
        part = frame.iloc[rows]
        to = gid[rows]
        stats[int(c)] = _add_up(part[_STATS], to, size)
        picked = pa.array(rows)
        c_cells, c_counts = cells.take(picked), counts.take(picked)
        flat_counts = pc.list_flatten(c_counts).to_numpy()
        if int(c) in widths:
            parents = to[pc.list_parent_indices(c_cells).to_numpy()]
            flat_cells = pc.list_flatten(c_cells).to_numpy().astype(np.int64)
            width = widths[int(c)]
            dense[int(c)] = (
                np.bincount(parents * width + flat_cells, weights=flat_counts, minlength=size * width)
                .reshape(size, width)
                .astype(np.int64)
            )
        else:  # categorical: the cells are codes local to a partition; the items name them
            c_items = names.take(picked)
            parents = to[pc.list_parent_indices(c_items).to_numpy()]
            flat_items = pc.list_flatten(c_items).to_numpy(zero_copy_only=False)
            values, codes = (
                np.unique(flat_items.astype(str), return_inverse=True)
                if len(flat_items)
                else (np.array([], dtype=str), np.array([], dtype=np.int64))
            )
            dense[int(c)] = (
                np.bincount(parents * max(len(values), 1) + codes, weights=flat_counts, minlength=size * max(len(values), 1))
                .reshape(size, -1)[:, : len(values)]
                .astype(np.int64)
            )
            items[int(c)] = values
    return Merged(groups, stats, dense, items)


def select(merged: Merged, keep: np.ndarray) -> Merged:
    """The merged sketches of the groups where `keep` is true."""
    return Merged(
        merged.groups[keep].reset_index(drop=True),
        {c: st[keep].reset_index(drop=True) for c, st in merged.stats.items()},
        {c: d[keep] for c, d in merged.dense.items()},
        merged.items,
    )


def derive(merged: Merged, spec: Spec) -> Merged:
    """Add the granularities made of finer ones (Spec.bases): each window's sketch is the sum of
    the sketches of the finer windows inside it (counts and sums add, min and max combine)."""
    parts = [merged]
    groups = merged.groups
    for target, base in spec.bases.items():
        if base is None:
            continue
        src = np.flatnonzero(groups["g"].to_numpy() == base)
        keys = groups.iloc[src].assign(
            g=np.int8(target), w=window_starts(groups["w"].to_numpy()[src], spec.granularities[target])
        )
        new, to = _groups(keys)
        size = len(new)
        stats, dense = {}, {}
        for c, st in merged.stats.items():
            stats[c] = _add_up(st.iloc[src], to, size)
            width = merged.dense[c].shape[1]
            flat = (to[:, None] * width + np.arange(width)).ravel()
            dense[c] = (
                np.bincount(flat, weights=merged.dense[c][src].ravel(), minlength=size * width)
                .reshape(size, width)
                .astype(np.int64)
            )
        parts.append(Merged(new, stats, dense, merged.items))
    return concat(parts)


def concat(parts: list[Merged]) -> Merged:
    """One Merged of several with the same columns (their groups one after the other)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return Merged(
        pd.concat([p.groups for p in parts], ignore_index=True),
        {c: pd.concat([p.stats[c] for p in parts], ignore_index=True) for c in first.stats},
        {c: np.vstack([p.dense[c] for p in parts]) for c in first.dense},
        first.items,
    )
