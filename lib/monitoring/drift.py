"""Drift statistics between distributions of one column, as Lakehouse Monitoring names them.

Vectorized: each function compares many pairs at once, given as rows of counts over shared
cells (numeric: cells at ascending locations `x`; categorical: shared categories), the form
the refresh's sketches take (lib/monitoring/sketch.py). On counts of the values themselves (one cell per
distinct value) every statistic is exact and equals scipy's, or the textbook formula for the
population stability index (on the reference's deciles); `Distribution` and the two
single-pair functions build such cells from two samples. A side with no rows makes every
statistic None: an undefined number is never made up.

The KS p-value is the asymptotic Kolmogorov distribution at sqrt(nm/(n+m)) D
(scipy.stats.kstwobign, via scipy.special.kolmogorov): scipy's finite-sample distributions
cost about a millisecond a call, and a refresh makes hundreds of thousands of comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special, stats
from scipy.spatial import distance

# Which statistics each kind of column gets (Lakehouse Monitoring's choice).
NUMERIC = ("ks_test", "wasserstein_distance", "js_distance", "population_stability_index")
CATEGORICAL = ("chi_squared_test", "tv_distance", "l_infinity_distance", "js_distance")
PSI_BINS = 10
PSI_FLOOR = 1e-4  # an empty bin counts as this share, so ln(p/q) stays finite


def numeric(cur: np.ndarray, ref: np.ndarray, x: np.ndarray) -> dict[str, np.ndarray]:
    """KS test, Wasserstein, JS distance and PSI of each row of `cur` against the same row of
    `ref` (counts over cells at locations x); NaN where either side has no rows.

    Returns: {"ks_statistic", "ks_pvalue", "wasserstein_distance", "js_distance",
    "population_stability_index"}, arrays of len(cur).
    """
    cur, ref = np.asarray(cur, dtype=float), np.asarray(ref, dtype=float)
    n, m = cur.sum(axis=1), ref.sum(axis=1)
    empty = (n == 0) | (m == 0)
    n_, m_ = np.where(empty, 1, n), np.where(empty, 1, m)
    cum_cur, cum_ref = np.cumsum(cur, axis=1), np.cumsum(ref, axis=1)
    gap = np.abs(cum_cur / n_[:, None] - cum_ref / m_[:, None])
    statistic = gap.max(axis=1)
    pvalue = special.kolmogorov(np.sqrt(n_ * m_ / (n_ + m_)) * statistic)
    wasserstein = (gap[:, :-1] * np.diff(np.asarray(x, dtype=float))).sum(axis=1)
    p_cur, p_ref = _decile_shares(cum_cur, cum_ref, n_, m_)
    out = {
        "ks_statistic": statistic,
        "ks_pvalue": pvalue,
        "wasserstein_distance": wasserstein,
        "js_distance": _js(p_cur, p_ref),
        "population_stability_index": psi(p_cur, p_ref),
    }
    return {k: np.where(empty, np.nan, v) for k, v in out.items()}


def categorical(cur: np.ndarray, ref: np.ndarray) -> dict[str, np.ndarray]:
    """Chi-squared test, total variation, L-infinity and JS distance of each row of `cur`
    against the same row of `ref` (counts over shared categories); NaN where a side is empty,
    and for the chi-squared test where fewer than two categories occur.

    Returns: {"chi_statistic", "chi_pvalue", "tv_distance", "l_infinity_distance", "js_distance"}.
    """
    cur, ref = np.asarray(cur, dtype=float), np.asarray(ref, dtype=float)
    n, m = cur.sum(axis=1), ref.sum(axis=1)
    empty = (n == 0) | (m == 0)
    n_, m_ = np.where(empty, 1, n), np.where(empty, 1, m)
    p_cur, p_ref = cur / n_[:, None], ref / m_[:, None]
    statistic, pvalue = chi_squared(cur, ref)
    out = {
        "chi_statistic": statistic,
        "chi_pvalue": pvalue,
        "tv_distance": 0.5 * np.abs(p_cur - p_ref).sum(axis=1),
        "l_infinity_distance": np.abs(p_cur - p_ref).max(axis=1, initial=0.0),
        "js_distance": _js(p_cur, p_ref),
    }
    return {k: np.where(empty, np.nan, v) for k, v in out.items()}


def chi_squared(cur: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scipy.stats.chi2_contingency on each 2 x k table (the categories either side holds),
    Yates' correction at one degree of freedom included, as scipy applies it."""
    observed = np.stack([cur, ref], axis=1)  # [pairs, 2, categories]
    column = observed.sum(axis=1, keepdims=True)
    row = observed.sum(axis=2, keepdims=True)
    total = np.maximum(row.sum(axis=1, keepdims=True), 1)
    expected = row * column / total
    dof = (column[:, 0, :] > 0).sum(axis=1) - 1
    diff = expected - observed
    corrected = np.where((dof == 1)[:, None, None], observed + np.sign(diff) * np.minimum(0.5, np.abs(diff)), observed)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(expected > 0, (corrected - expected) ** 2 / np.where(expected > 0, expected, 1), 0.0)
    statistic = terms.sum(axis=(1, 2))
    defined = (dof >= 1) & (row[:, :, 0] > 0).all(axis=1)
    pvalue = stats.chi2.sf(statistic, np.maximum(dof, 1))
    return np.where(defined, statistic, np.nan), np.where(defined, pvalue, np.nan)


def psi(p_current: np.ndarray, p_reference: np.ndarray) -> np.ndarray:
    """Population stability index: sum of (cur - ref) * ln(cur / ref) over bins, empty bins floored."""
    cur, ref = np.maximum(p_current, PSI_FLOOR), np.maximum(p_reference, PSI_FLOOR)
    return np.sum((cur - ref) * np.log(cur / ref), axis=-1)


def _js(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance in bits (0 = same, 1 = disjoint), as scipy computes it."""
    return distance.jensenshannon(p, q, base=2, axis=-1)


def _decile_shares(cum_cur: np.ndarray, cum_ref: np.ndarray, n: np.ndarray, m: np.ndarray):
    """Both sides' shares of rows in the bins (-inf, d1], (d1, d2], ..., (d9, inf) of the
    reference's deciles (inverted CDF: the first cell whose cumulative count reaches q m). Two
    equal deciles make an empty bin on both sides, which adds nothing to PSI or JS: the same
    as dropping the duplicate edge."""
    levels = np.arange(1, PSI_BINS) / PSI_BINS
    at = np.stack([(cum_ref < q * m[:, None]).sum(axis=1) for q in levels], axis=1)
    at = np.minimum(at, cum_ref.shape[1] - 1)
    rows = np.arange(len(cum_ref))[:, None]

    def shares(cum, total):
        upto = np.concatenate([np.zeros((len(cum), 1)), cum[rows, at], total[:, None]], axis=1)
        return np.diff(upto, axis=1) / total[:, None]

    return shares(cum_cur, n), shares(cum_ref, m)


# --- Two samples --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distribution:
    """A column's non-null values: distinct values (ascending) and their row counts."""

    values: np.ndarray
    counts: np.ndarray

    def __post_init__(self) -> None:
        order = np.argsort(self.values, kind="stable")
        object.__setattr__(self, "values", np.asarray(self.values)[order])
        object.__setattr__(self, "counts", np.asarray(self.counts, dtype=np.int64)[order])

    @classmethod
    def of(cls, rows: Any) -> Distribution:
        """From the rows themselves (nulls and NaN dropped)."""
        array = np.asarray(rows, dtype=object)
        kept = array[[v is not None and v == v for v in array]]  # v == v drops NaN
        if len(kept) == 0:
            return cls(np.array([]), np.array([], dtype=np.int64))
        values, counts = np.unique(kept.astype(type(kept[0]) if isinstance(kept[0], str) else float), return_counts=True)
        return cls(values, counts.astype(np.int64))

    @property
    def n(self) -> int:
        return int(self.counts.sum())


def _aligned(a: Distribution, b: Distribution) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both distributions' counts over the union of their values (one cell per value)."""
    cells = np.union1d(a.values, b.values)
    out = []
    for d in (a, b):
        row = np.zeros(len(cells))
        row[np.searchsorted(cells, d.values)] = d.counts
        out.append(row[None, :])
    return cells, out[0], out[1]


def _plain(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def numeric_drift(current: Distribution, reference: Distribution) -> dict[str, Any]:
    """KS test, Wasserstein distance, JS distance and PSI of current against reference."""
    if current.n == 0 or reference.n == 0:
        return {name: None for name in NUMERIC}
    cells, cur, ref = _aligned(
        Distribution(current.values.astype(float), current.counts), Distribution(reference.values.astype(float), reference.counts)
    )
    got = {k: _plain(v[0]) for k, v in numeric(cur, ref, cells).items()}
    return {"ks_test": {"statistic": got["ks_statistic"], "pvalue": got["ks_pvalue"]}, **{k: got[k] for k in NUMERIC[1:]}}


def categorical_drift(current: Distribution, reference: Distribution) -> dict[str, Any]:
    """Chi-squared test, total variation, L-infinity and JS distance of current against reference."""
    if current.n == 0 or reference.n == 0:
        return {name: None for name in CATEGORICAL}
    _, cur, ref = _aligned(
        Distribution(current.values.astype(str), current.counts), Distribution(reference.values.astype(str), reference.counts)
    )
    got = {k: _plain(v[0]) for k, v in categorical(cur, ref).items()}
    return {
        "chi_squared_test": {"statistic": got["chi_statistic"], "pvalue": got["chi_pvalue"]},
        **{k: got[k] for k in CATEGORICAL[1:]},
    }


def ks_test(current: Distribution, reference: Distribution) -> dict[str, float | None]:
    """Two-sample Kolmogorov-Smirnov test: {statistic, pvalue} (see the module's note on the p-value)."""
    return numeric_drift(current, reference)["ks_test"]
