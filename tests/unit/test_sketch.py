"""Sketches: partitions add up to the whole, days make weeks, and the statistics computed from
them are exact where every value is a cell edge and within the cells' resolution elsewhere."""

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats

from lib.monitoring import drift, metrics, sketch


def rows(n: int, seed: int, continuous: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(2013, 3, 1)
    temp = rng.normal(10, 5, n)
    return pd.DataFrame(
        {
            "_ts": start + pd.to_timedelta(rng.integers(0, 20 * 86400, n), unit="s"),
            "model_id": rng.choice(["1", "2"], n, p=[0.8, 0.2]),
            "origin": rng.choice(["EWR", "JFK", "LGA", None], n, p=[0.3, 0.3, 0.3, 0.1]),
            "temp": np.where(rng.uniform(size=n) < 0.05, np.nan, temp if continuous else temp.round(0)),
        }
    )


def spec_for(frame: pd.DataFrame, granularities=("1 day", "1 week")) -> sketch.Spec:
    return sketch.Spec(
        numeric={"temp": sketch.edges(frame["temp"].to_numpy())},
        categorical=["origin"],
        granularities=list(granularities),
        slices=("origin",),
    )


def merged(frame: pd.DataFrame, spec: sketch.Spec, parts: int = 1) -> tuple[sketch.Merged, pd.DataFrame]:
    tables = [
        sketch.partial(pa.Table.from_pandas(chunk, preserve_index=False), spec)
        for chunk in (frame.iloc[i::parts] for i in range(parts))
    ]
    out = sketch.derive(sketch.merge(pa.concat_tables(tables), spec), spec)
    return out, metrics.group_keys(out.groups, spec.granularities, ["origin"])


def profile(frame: pd.DataFrame, spec: sketch.Spec, parts: int = 1) -> pd.DataFrame:
    out, keys = merged(frame, spec, parts)
    types = {"temp": "double", "origin": "string", "prediction": "double"}
    return metrics.profile_rows(out, spec, types, keys, dt.date(2013, 4, 1))


def test_partitions_add_up_and_weeks_are_their_days_summed():
    frame = rows(3000, seed=1)
    whole = profile(frame, spec_for(frame))
    split = profile(frame.sample(frac=1, random_state=0), spec_for(frame), parts=3)
    keys = ["granularity", "window_start", "model_id", "slice_key", "slice_value", "column_name"]
    compare = ["count", "num_nulls", "avg", "min", "max", "median", "distinct_count"]
    a = whole.sort_values(keys, na_position="first").reset_index(drop=True)
    b = split.sort_values(keys, na_position="first").reset_index(drop=True)
    pd.testing.assert_frame_equal(a[keys + compare], b[keys + compare], check_exact=False, rtol=1e-12)
    # Weeks made of days = weeks made of the rows themselves.
    weeks_only = profile(frame, spec_for(frame, ("1 week",)))
    derived = whole[whole["granularity"] == "1 week"]
    pd.testing.assert_frame_equal(
        derived.sort_values(keys, na_position="first")[keys + compare].reset_index(drop=True),
        weeks_only.sort_values(keys, na_position="first")[keys + compare].reset_index(drop=True),
    )


def test_on_values_that_are_cell_edges_the_profile_is_exact():
    frame = rows(2000, seed=2)
    got = profile(frame, spec_for(frame))
    week = pd.Timestamp(2013, 3, 4)
    mine = frame[
        (frame["_ts"] >= week)
        & (frame["_ts"] < week + pd.Timedelta(days=7))
        & (frame["model_id"] == "1")
        & (frame["origin"] == "JFK")
    ]
    row = got[
        (got["granularity"] == "1 week")
        & (got["window_start"] == week)
        & (got["model_id"] == "1")
        & (got["slice_value"] == "JFK")
        & (got["column_name"] == "temp")
    ].iloc[0]
    temp = mine["temp"].dropna()
    assert (row["count"], row["num_nulls"]) == (len(temp), mine["temp"].isna().sum())
    assert row["avg"] == pytest.approx(temp.mean()) and row["stddev"] == pytest.approx(temp.std())
    assert row["quantiles"] == list(np.quantile(temp, metrics.QUANTILES, method="inverted_cdf"))
    assert row["distinct_count"] == temp.nunique()
    origin = got[
        (got["granularity"] == "1 week")
        & (got["window_start"] == week)
        & (got["model_id"] == "1")
        & got["slice_key"].isna()
        & (got["column_name"] == "origin")
    ].iloc[0]
    everyone = frame[(frame["_ts"] >= week) & (frame["_ts"] < week + pd.Timedelta(days=7)) & (frame["model_id"] == "1")]
    assert origin["num_nulls"] == everyone["origin"].isna().sum()
    assert {i["item"]: i["count"] for i in origin["frequent_items"]} == everyone["origin"].value_counts().to_dict()


def test_between_edges_the_statistics_are_binned_within_the_cells_resolution():
    """Continuous values (each distinct, more than EXACT_MAX of them): the cells are quantiles
    of a sample, the distinct count is unknown (null), quantiles are within a cell, and the KS
    statistic is within the largest share of rows one cell holds on either side."""
    reference, current = rows(30_000, seed=3, continuous=True), rows(30_000, seed=4, continuous=True)
    current["temp"] += 1.5
    spec = spec_for(pd.concat([reference.sample(10_000, random_state=0), current.sample(10_000, random_state=0)]), ("1 week",))
    assert len(spec.numeric["temp"]) <= sketch.CELLS + 10
    ref_m, _ = merged(reference.assign(_ts=pd.Timestamp(2013, 3, 4)), spec)
    cur_m, _ = merged(current.assign(_ts=pd.Timestamp(2013, 3, 4)), spec)
    whole = lambda m: int(np.flatnonzero(m.groups["s"].to_numpy() == 0)[m.groups["model"][m.groups["s"] == 0] == "1"][0])  # noqa: E731
    a, b = cur_m.dense[0][[whole(cur_m)]], ref_m.dense[0][[whole(ref_m)]]
    got = drift.numeric(a, b, spec.numeric["temp"])
    x = current.loc[current["model_id"] == "1", "temp"].dropna()
    y = reference.loc[reference["model_id"] == "1", "temp"].dropna()
    bound = max(a.max() / a.sum(), b.max() / b.sum())
    assert abs(got["ks_statistic"][0] - stats.ks_2samp(x, y).statistic) <= bound
    assert abs(got["wasserstein_distance"][0] - stats.wasserstein_distance(x, y)) <= np.diff(spec.numeric["temp"]).max()
    assert got["ks_statistic"][0] > 0.05 and got["population_stability_index"][0] > 0.05  # it did drift
    types = {"temp": "double", "origin": "string"}
    keys = metrics.group_keys(cur_m.groups, ["1 week"], ["origin"])
    row = (
        metrics.profile_rows(cur_m, spec, types, keys, dt.date(2013, 4, 1))
        .query("column_name == 'temp' and model_id == '1' and slice_key.isna()", engine="python")
        .iloc[0]
    )
    assert pd.isna(row["distinct_count"]) and row["avg"] == pytest.approx(x.mean())  # moments stay exact
    width = np.diff(spec.numeric["temp"]).max()
    assert np.allclose(row["quantiles"], np.quantile(x, metrics.QUANTILES, method="inverted_cdf"), atol=width)


@pytest.mark.parametrize(
    "finer,coarser,nests",
    [
        ("1 day", "1 week", True),
        ("1 day", "1 month", True),
        ("1 hour", "1 day", True),
        ("1 week", "1 month", False),
        ("30 minutes", "1 hour", True),
        ("1 day", "1 day", False),
        ("1 month", "1 year", True),
        ("1 week", "2 weeks", True),
    ],
)
def test_which_granularities_are_made_of_finer_ones(finer, coarser, nests):
    assert sketch._nests(finer, coarser) is nests
    spec = sketch.Spec(numeric={}, categorical=[], granularities=[coarser, finer])
    assert spec.bases[0] == (1 if nests else None) and spec.bases[1] is None


def test_a_regressions_quality_is_exact_per_window_from_partitions_and_days_summed():
    """mse, rmse, mae, mape (rows labelled 0 left out) and r2 of each day and week, from
    sketches of three partitions, equal scikit-learn's on that window's labelled rows."""
    from sklearn import metrics as sk

    rng = np.random.default_rng(7)
    frame = rows(3000, seed=7, continuous=True)
    frame["units"] = np.where(rng.uniform(size=len(frame)) < 0.05, 0.0, rng.gamma(2.0, 5.0, len(frame)).round(1))
    frame.loc[rng.uniform(size=len(frame)) < 0.1, "units"] = np.nan  # not labelled yet
    frame["prediction"] = frame["units"].fillna(10.0) + rng.normal(0, 3, len(frame))
    spec = sketch.Spec(
        numeric={c: sketch.edges(frame[c].to_numpy()) for c in ("temp", "prediction")},
        categorical=["origin"],
        granularities=["1 day", "1 week"],
        slices=("origin",),
        label="units",
        prediction="prediction",
        problem_type="regression",
    )
    out = profile(frame, spec, parts=3)
    table = out[(out["column_name"] == metrics.TABLE) & out["slice_key"].isna() & (out["model_id"] == "1")]
    assert set(table["granularity"]) == {"1 day", "1 week"} and len(table) > 20
    for _, row in table.iterrows():
        start, end = pd.Timestamp(row["window_start"]), pd.Timestamp(row["window_end"])
        window = frame[(frame["_ts"] >= start) & (frame["_ts"] < end) & (frame["model_id"] == "1")].dropna(subset=["units"])
        y, p = window["units"].to_numpy(), window["prediction"].to_numpy()
        nonzero = y != 0
        assert row["labelled_count"] == len(window)
        assert row["mean_squared_error"] == pytest.approx(sk.mean_squared_error(y, p), rel=1e-9)
        assert row["root_mean_squared_error"] == pytest.approx(np.sqrt(sk.mean_squared_error(y, p)), rel=1e-9)
        assert row["mean_absolute_error"] == pytest.approx(sk.mean_absolute_error(y, p), rel=1e-9)
        assert row["mean_absolute_percentage_error"] == pytest.approx(
            sk.mean_absolute_percentage_error(y[nonzero], p[nonzero]), rel=1e-9
        )
        assert row["r2_score"] == pytest.approx(sk.r2_score(y, p), rel=1e-6)
    assert not {"roc_auc", "accuracy", "confusion_matrix"} & set(table.columns)  # no classifier's metric


def test_a_regression_window_without_labels_has_no_quality_and_an_unknown_problem_type_is_refused():
    frame = rows(200, seed=3)
    frame["units"], frame["prediction"] = np.nan, 1.0
    spec = sketch.Spec(
        numeric={"prediction": sketch.edges(frame["prediction"].to_numpy())},
        categorical=[],
        granularities=["1 day"],
        label="units",
        prediction="prediction",
        problem_type="regression",
    )
    out = profile(frame.drop(columns=["origin"]), spec)
    table = out[out["column_name"] == metrics.TABLE]
    assert (table["labelled_count"] == 0).all() and table["root_mean_squared_error"].isna().all()
    with pytest.raises(ValueError, match="problem_type 'multiclass': choose one of classification, regression"):
        sketch.Spec(numeric={}, categorical=[], problem_type="multiclass")
