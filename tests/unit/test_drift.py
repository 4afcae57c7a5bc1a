"""Each drift statistic agrees with scipy (or the textbook PSI) on the same rows."""

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from lib.core.config.sources import load_sources
from lib.features import readers
from lib.monitoring import drift
from lib.monitoring.drift import Distribution


@pytest.fixture(scope="module")
def weather():
    return readers.packaged(load_sources()["weather"])  # the whole year, as pandas reads it


def textbook_psi(current, reference, bins=10):
    edges = np.unique(np.quantile(reference, np.arange(1, bins) / bins, method="inverted_cdf"))
    share = lambda x: np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1) / len(x)  # noqa: E731
    cur, ref = np.maximum(share(current), 1e-4), np.maximum(share(reference), 1e-4)
    return float(np.sum((cur - ref) * np.log(cur / ref))), share(current), share(reference)


@pytest.mark.parametrize("column,months", [("temp", (1, 7)), ("temp", (9, 10)), ("humid", (3, 4)), ("wind_speed", (5, 11))])
def test_numeric_drift_agrees_with_scipy_on_real_weather(weather, column, months):
    reference = weather.loc[weather.month == months[0], column].dropna().to_numpy()
    current = weather.loc[weather.month == months[1], column].dropna().to_numpy()
    got = drift.numeric_drift(Distribution.of(current), Distribution.of(reference))
    ks = stats.ks_2samp(current, reference)
    psi, p_cur, p_ref = textbook_psi(current, reference)
    assert got["ks_test"]["statistic"] == pytest.approx(ks.statistic, abs=1e-3)
    assert got["ks_test"]["pvalue"] == pytest.approx(ks.pvalue, abs=1e-3)
    assert got["wasserstein_distance"] == pytest.approx(stats.wasserstein_distance(current, reference), abs=1e-3)
    assert got["population_stability_index"] == pytest.approx(psi, abs=1e-3)
    assert got["js_distance"] == pytest.approx(distance.jensenshannon(p_cur, p_ref, base=2), abs=1e-3)


def test_january_against_july_temperature_drifts_and_a_month_against_itself_does_not(weather):
    january = Distribution.of(weather.loc[weather.month == 1, "temp"])
    july = Distribution.of(weather.loc[weather.month == 7, "temp"])
    moved, same = drift.numeric_drift(july, january), drift.numeric_drift(january, january)
    assert moved["ks_test"]["statistic"] > 0.9 and moved["ks_test"]["pvalue"] < 1e-6
    assert moved["population_stability_index"] > 1.0 and moved["wasserstein_distance"] > 30
    assert same["ks_test"] == {"statistic": 0.0, "pvalue": 1.0}
    assert same["wasserstein_distance"] == same["population_stability_index"] == same["js_distance"] == 0.0


def test_the_ks_pvalue_is_the_asymptotic_kolmogorov_distribution():
    rng = np.random.default_rng(7)
    for reference, current in [
        (rng.integers(0, 500, 150_000), rng.integers(5, 505, 1_000)),
        (rng.normal(0, 1, 3_000).round(2), rng.normal(0.05, 1, 2_000).round(2)),
    ]:
        got = drift.ks_test(Distribution.of(current), Distribution.of(reference))
        ks = stats.ks_2samp(current, reference)
        n, m = len(current), len(reference)
        assert got["statistic"] == pytest.approx(ks.statistic, abs=1e-9)
        assert got["pvalue"] == pytest.approx(stats.kstwobign.sf(np.sqrt(n * m / (n + m)) * ks.statistic), abs=1e-12)
        # scipy's finite-sample p-value differs by less than 0.01 at a thousand rows a side
        # (README, "Monitors"); the asymptotic one is what makes 10^5 comparisons a second.
        assert got["pvalue"] == pytest.approx(ks.pvalue, abs=0.01)


def test_many_pairs_at_once_equal_one_pair_at_a_time():
    rng = np.random.default_rng(11)
    cells = np.arange(40, dtype=float)
    cur, ref = rng.integers(0, 30, (50, 40)), rng.integers(0, 30, (50, 40))
    cur[3], ref[7] = 0, 0  # an empty side: nulls
    got = drift.numeric(cur, ref, cells)
    for i in (0, 3, 7, 21):
        one = drift.numeric_drift(
            Distribution(cells[cur[i] > 0], cur[i][cur[i] > 0]), Distribution(cells[ref[i] > 0], ref[i][ref[i] > 0])
        )
        if i in (3, 7):
            assert np.isnan(got["ks_statistic"][i]) and one["ks_test"] is None
            continue
        a, b = np.repeat(cells, cur[i]), np.repeat(cells, ref[i])
        assert got["ks_statistic"][i] == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
        assert got["wasserstein_distance"][i] == pytest.approx(stats.wasserstein_distance(a, b), abs=1e-9)
        assert got["population_stability_index"][i] == pytest.approx(textbook_psi(a, b)[0], abs=1e-9)
        assert one["js_distance"] == pytest.approx(got["js_distance"][i], abs=1e-12)


def test_categorical_drift_agrees_with_scipy():
    rng = np.random.default_rng(3)
    carriers = np.array(["UA", "B6", "EV", "DL", "AA", "MQ", "US"])
    reference = rng.choice(carriers, 5000, p=[0.2, 0.2, 0.15, 0.15, 0.1, 0.1, 0.1])
    current = rng.choice(carriers[:6], 3000, p=[0.3, 0.1, 0.2, 0.1, 0.2, 0.1])  # US never flies now
    got = drift.categorical_drift(Distribution.of(current), Distribution.of(reference))
    counts = np.array([[np.sum(current == c) for c in sorted(carriers)], [np.sum(reference == c) for c in sorted(carriers)]])
    chi2 = stats.chi2_contingency(counts)
    p_cur, p_ref = counts[0] / counts[0].sum(), counts[1] / counts[1].sum()
    assert got["chi_squared_test"]["statistic"] == pytest.approx(chi2.statistic, abs=1e-3)
    assert got["chi_squared_test"]["pvalue"] == pytest.approx(chi2.pvalue, abs=1e-3)
    assert got["tv_distance"] == pytest.approx(0.5 * np.abs(p_cur - p_ref).sum(), abs=1e-9)
    assert got["l_infinity_distance"] == pytest.approx(np.abs(p_cur - p_ref).max(), abs=1e-9)
    assert got["js_distance"] == pytest.approx(distance.jensenshannon(p_cur, p_ref, base=2), abs=1e-9)


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_an_empty_or_all_null_side_gives_nulls_not_numbers(kind):
    full = Distribution.of([1.0, 2.0, 2.0] if kind == "numeric" else ["a", "b", "b"])
    empty = Distribution.of([None, float("nan")] if kind == "numeric" else [None])
    measure = drift.numeric_drift if kind == "numeric" else drift.categorical_drift
    names = drift.NUMERIC if kind == "numeric" else drift.CATEGORICAL
    assert measure(empty, full) == measure(full, empty) == {name: None for name in names}


def test_a_constant_column_is_defined_where_it_can_be():
    same = drift.numeric_drift(Distribution.of([3.0] * 50), Distribution.of([3.0] * 80))
    assert same["ks_test"]["statistic"] == 0.0 and same["wasserstein_distance"] == 0.0
    assert same["population_stability_index"] == 0.0
    shifted = drift.numeric_drift(Distribution.of([4.0] * 50), Distribution.of([3.0] * 80))
    assert shifted["ks_test"]["statistic"] == 1.0 and shifted["wasserstein_distance"] == 1.0
    # One category on both sides: the chi-squared test has no degrees of freedom.
    assert drift.categorical_drift(Distribution.of(["a"] * 5), Distribution.of(["a"] * 9))["chi_squared_test"] == {
        "statistic": None,
        "pvalue": None,
    }
