"""Drift statistics between two distributions of one column, as Lakehouse Monitoring names them.

Pure functions on value counts (each side: its distinct values and how many rows hold each),
the form a Spark group-by hands over: exact for columns with few distinct values, quantile
bins for the others. Every statistic is scipy's where scipy has it; the population stability
index is the textbook formula on the reference's deciles. A side with no rows makes every
statistic None: an undefined number is never made up.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial import distance

# Which statistics each kind of column gets (Lakehouse Monitoring's choice).
NUMERIC = ("ks_test", "wasserstein_distance", "js_distance", "population_stability_index")
CATEGORICAL = ("chi_squared_test", "tv_distance", "l_infinity_distance", "js_distance")
PSI_BINS = 10
PSI_FLOOR = 1e-4  # an empty bin counts as this share, so ln(p/q) stays finite
# The KS p-value: exact (scipy's ks_2samp on the rows, which is exact up to 10,000 rows a side)
# while the product of the two sizes is at most KS_EXACT_MAX_PRODUCT; beyond, the asymptotic
# distribution on the counts, the formula of ks_2samp(method="asymp"). The exact one costs
# time in proportion to that product, and the two agree closely long before it is reached.
KS_EXACT_MAX_N = 10_000
KS_EXACT_MAX_PRODUCT = 1_000_000
# scipy's ks_2samp itself, without its NaN-policy and axis layer (functools.wraps keeps it as
# __wrapped__): our inputs hold no NaN, and that layer cost ~5x the test on small windows.
_KS_2SAMP = getattr(stats.ks_2samp, "__wrapped__", stats.ks_2samp)


@dataclass(frozen=True)
class Distribution:
    """A column's non-null values in a window: distinct values and their row counts."""

    values: np.ndarray  # distinct, ascending
    counts: np.ndarray

    def __post_init__(self) -> None:
        order = np.argsort(self.values, kind="stable")
        object.__setattr__(self, "values", np.asarray(self.values)[order])
        object.__setattr__(self, "counts", np.asarray(self.counts, dtype=np.int64)[order])

    @classmethod
    def of(cls, rows: Any) -> "Distribution":
        """From the rows themselves (nulls dropped)."""
        array = np.asarray(rows, dtype=object)
        kept = array[[v is not None and v == v for v in array]]  # v == v drops NaN
        if len(kept) == 0:
            return cls(np.array([]), np.array([], dtype=np.int64))
        values, counts = np.unique(kept.astype(type(kept[0]) if isinstance(kept[0], str) else float),
                                   return_counts=True)
        return cls(values, counts.astype(np.int64))

    @property
    def n(self) -> int:
        return int(self.counts.sum())


def numeric_drift(current: Distribution, reference: Distribution) -> dict[str, Any]:
    """KS test, Wasserstein distance, JS distance and PSI of current against reference."""
    if current.n == 0 or reference.n == 0:
        return {name: None for name in NUMERIC}
    cur_v, ref_v = current.values.astype(float), reference.values.astype(float)
    edges = _decile_edges(ref_v, reference.counts)
    p_ref, p_cur = _binned(ref_v, reference.counts, edges), _binned(cur_v, current.counts, edges)
    return {
        "ks_test": ks_test(current, reference),
        "wasserstein_distance": float(stats.wasserstein_distance(cur_v, ref_v, current.counts, reference.counts)),
        "js_distance": _js(p_cur, p_ref),
        "population_stability_index": psi(p_cur, p_ref),
    }


def categorical_drift(current: Distribution, reference: Distribution) -> dict[str, Any]:
    """Chi-squared test, total variation, L-infinity and JS distance of current against reference."""
    if current.n == 0 or reference.n == 0:
        return {name: None for name in CATEGORICAL}
    categories = np.union1d(current.values.astype(str), reference.values.astype(str))
    c_cur, c_ref = _aligned(current, categories), _aligned(reference, categories)
    p_cur, p_ref = c_cur / c_cur.sum(), c_ref / c_ref.sum()
    return {
        "chi_squared_test": chi_squared_test(c_cur, c_ref),
        "tv_distance": float(0.5 * np.abs(p_cur - p_ref).sum()),
        "l_infinity_distance": float(np.abs(p_cur - p_ref).max()),
        "js_distance": _js(p_cur, p_ref),
    }


def ks_test(current: Distribution, reference: Distribution) -> dict[str, float]:
    """Two-sample Kolmogorov-Smirnov test: {statistic, pvalue}, as scipy.stats.ks_2samp (exact
    p-value for small samples, asymptotic for large ones: see KS_EXACT_MAX_PRODUCT)."""
    cur_v, ref_v = current.values.astype(float), reference.values.astype(float)
    n, m = current.n, reference.n
    if max(n, m) <= KS_EXACT_MAX_N and n * m <= KS_EXACT_MAX_PRODUCT:
        with warnings.catch_warnings():  # scipy's own switch to the asymptotic p-value, as documented
            warnings.filterwarnings("ignore", "ks_2samp: Exact calculation unsuccessful", RuntimeWarning)
            result = _KS_2SAMP(np.repeat(cur_v, current.counts), np.repeat(ref_v, reference.counts))
        return {"statistic": float(result.statistic), "pvalue": float(result.pvalue)}
    grid = np.union1d(cur_v, ref_v)
    statistic = float(np.abs(_ecdf(cur_v, current.counts, grid) - _ecdf(ref_v, reference.counts, grid)).max())
    return {"statistic": statistic, "pvalue": float(stats.kstwo.sf(statistic, np.round(n * m / (n + m))))}


def _ecdf(values: np.ndarray, counts: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Share of rows at or below each grid point."""
    cumulative = np.concatenate([[0], np.cumsum(counts)])
    return cumulative[np.searchsorted(values, grid, side="right")] / cumulative[-1]


def chi_squared_test(current_counts: np.ndarray, reference_counts: np.ndarray) -> dict[str, float | None]:
    """Chi-squared test of homogeneity on the two rows of counts (scipy.stats.chi2_contingency);
    undefined (None) when fewer than two categories occur."""
    table = np.vstack([current_counts, reference_counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return {"statistic": None, "pvalue": None}
    result = stats.chi2_contingency(table)
    return {"statistic": float(result.statistic), "pvalue": float(result.pvalue)}


def psi(p_current: np.ndarray, p_reference: np.ndarray) -> float:
    """Population stability index: sum of (cur - ref) * ln(cur / ref) over bins, empty bins floored."""
    cur, ref = np.maximum(p_current, PSI_FLOOR), np.maximum(p_reference, PSI_FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _js(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance in bits (0 = same, 1 = disjoint), as scipy computes it."""
    return float(distance.jensenshannon(p, q, base=2))


def _decile_edges(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The reference's inner decile edges (inverted-CDF quantiles), duplicates dropped."""
    cumulative = np.cumsum(counts)
    quantiles = np.arange(1, PSI_BINS) / PSI_BINS
    positions = np.searchsorted(cumulative, quantiles * cumulative[-1], side="left")
    return np.unique(values[np.minimum(positions, len(values) - 1)])


def _binned(values: np.ndarray, counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of rows per bin: (-inf, e1], (e1, e2], ..., (ek, inf)."""
    shares = np.bincount(np.searchsorted(edges, values, side="left"), weights=counts, minlength=len(edges) + 1)
    return shares / shares.sum()


def _aligned(dist: Distribution, categories: np.ndarray) -> np.ndarray:
    counts = np.zeros(len(categories))
    counts[np.searchsorted(categories, dist.values.astype(str))] = dist.counts
    return counts
