import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as skm

from lib.core.errors import ConfigError
from lib.monitoring import monitors, served
from lib.monitoring import refresh as monitoring

T = dt.datetime
MONITOR = monitors.Monitor(
    table_name="predictions",
    timestamp_col="sched_dep_ts",
    granularities=["1 day", "1 week"],
    model_id_col="model_version",
    prediction_col="prediction",
    label_col="delayed",
    labels_table="labels",
    label_key=["flight_id"],
    slicing_exprs=["origin"],
    baseline_table_name="baseline",
    exclude_columns=["flight_id"],
)


def frame(days: list[dt.date], per_day: int, seed: int, temp_mean: float = 10.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(days) * per_day
    at = [T(d.year, d.month, d.day, 6) + dt.timedelta(minutes=int(m)) for d in days for m in rng.integers(0, 900, per_day)]
    carriers = rng.choice(["UA", "B6", "EV", None], n, p=[0.4, 0.3, 0.2, 0.1])
    return pd.DataFrame(
        {
            "flight_id": [f"f{seed}-{i}" for i in range(n)],
            "sched_dep_ts": at,
            "origin": rng.choice(["EWR", "JFK", "LGA"], n),
            "carrier": carriers,
            "temp": np.round(rng.normal(temp_mean, 5, n), 1),
            "prediction": rng.uniform(0, 1, n),
            "model_version": "1",
            "delayed": (rng.uniform(0, 1, n) < 0.3).astype("int32"),
        }
    )


@pytest.fixture
def monitored(lakehouse, staging):
    """Three days of predictions (Mon 4 - Wed 6 March 2013), their labels, a baseline of model v1."""
    days = [dt.date(2013, 3, d) for d in (4, 5, 6)]
    rows = frame(days, 60, seed=1)
    baseline = frame([dt.date(2013, 2, d) for d in range(1, 11)], 40, seed=2, temp_mean=4.0)
    spark = lakehouse.spark
    lakehouse.write(spark.createDataFrame(rows.drop(columns="delayed")), staging.table("predictions"))
    lakehouse.write(spark.createDataFrame(rows[["flight_id", "sched_dep_ts", "delayed"]]), staging.table("labels"))
    lakehouse.write(spark.createDataFrame(baseline.drop(columns="flight_id")), staging.table("baseline"))
    return rows, baseline


def read(lakehouse, name: str) -> pd.DataFrame:
    out = lakehouse.read(name).toPandas()
    out["start"] = [w["start"] if w is not None else None for w in out["window"]]
    return out


@pytest.mark.slow  # several whole refreshes: ~30 s, kept out of `make unit`
def test_profile_quality_and_drift_then_only_what_changed_is_recomputed(lakehouse, staging, monitored, monkeypatch):
    rows, baseline = monitored
    result = monitoring.refresh(lakehouse, staging, MONITOR, dt.date(2013, 3, 6), 0.5, say=lambda line: None)
    profile = read(lakehouse, result["profile_table"])
    day = lambda d: pd.Timestamp(2013, 3, d)  # noqa: E731
    on = {d: rows[rows["sched_dep_ts"].dt.day == d] for d in (4, 5, 6)}

    def one(**where):
        hit = profile
        for k, v in where.items():
            hit = hit[hit[k].isna()] if v is None else hit[hit[k] == v]
        assert len(hit) == 1, where
        return hit.iloc[0]

    # The table rows: counts per window; quality only where labels had arrived (before 6 March).
    for d in (4, 5, 6):
        table = one(granularity="1 day", start=day(d), slice_key=None, column_name=":table", log_type="INPUT")
        assert table["count"] == 60
        if d < 6:
            y, p = on[d]["delayed"], on[d]["prediction"]
            assert table["labelled_count"] == 60
            assert table["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
            assert table["accuracy"] == pytest.approx(skm.accuracy_score(y, p >= 0.5))
            assert table["confusion_matrix"]["tp"] == int(((p >= 0.5) & (y == 1)).sum())
        else:
            assert table["labelled_count"] == 0 and pd.isna(table["roc_auc"])
    week = one(granularity="1 week", start=day(4), slice_key=None, column_name=":table", log_type="INPUT")
    assert (week["count"], week["labelled_count"], week["window"]["end"]) == (180, 120, T(2013, 3, 11))

    # A numeric column, whole and in a slice, against pandas on the rows themselves.
    for slice_value in (None, "JFK"):
        part = on[5] if slice_value is None else on[5][on[5]["origin"] == slice_value]
        temp = one(
            granularity="1 day",
            start=day(5),
            slice_key=None if slice_value is None else "origin",
            slice_value=slice_value,
            column_name="temp",
            log_type="INPUT",
        )
        assert (temp["count"], temp["data_type"], temp["num_nulls"]) == (len(part), "double", 0)
        assert temp["avg"] == pytest.approx(part["temp"].mean())
        assert temp["stddev"] == pytest.approx(part["temp"].std())
        assert (temp["min"], temp["max"]) == (part["temp"].min(), part["temp"].max())
        assert list(temp["quantiles"]) == list(np.quantile(part["temp"], monitoring.metrics.QUANTILES, method="inverted_cdf"))
        assert temp["distinct_count"] == part["temp"].nunique()
    # A categorical column: nulls and the most frequent values.
    carrier = one(granularity="1 day", start=day(4), slice_key=None, column_name="carrier", log_type="INPUT")
    assert carrier["num_nulls"] == on[4]["carrier"].isna().sum()
    assert carrier["percent_null"] == pytest.approx(100 * on[4]["carrier"].isna().mean())
    counted = on[4]["carrier"].value_counts()
    assert {i["item"]: i["count"] for i in carrier["frequent_items"]} == counted.to_dict()
    # The baseline is profiled too, once per model.
    base_temp = one(log_type="BASELINE", slice_key=None, column_name="temp")
    assert base_temp["avg"] == pytest.approx(baseline["temp"].mean()) and base_temp["model_id"] == "1"

    drift = read(lakehouse, result["drift_table"])

    def drift_row(kind, d, column, granularity="1 day"):
        hit = drift[
            (drift["drift_type"] == kind)
            & (drift["granularity"] == granularity)
            & (drift["start"] == day(d))
            & drift["slice_key"].isna()
            & (drift["column_name"] == column)
        ]
        return hit.iloc[0] if len(hit) == 1 else None

    # Consecutive: each day against the day before; the first day and the only week have none.
    assert drift_row("CONSECUTIVE", 4, "temp") is None and drift_row("CONSECUTIVE", 4, "temp", "1 week") is None
    consecutive = drift_row("CONSECUTIVE", 5, "temp")
    ks = stats.ks_2samp(on[5]["temp"], on[4]["temp"])
    assert consecutive["window_cmp"]["start"] == T(2013, 3, 4)
    assert consecutive["ks_test"]["statistic"] == pytest.approx(ks.statistic, abs=1e-9)
    n, m = len(on[5]), len(on[4])  # the asymptotic p-value (lib/monitoring/drift.py)
    assert consecutive["ks_test"]["pvalue"] == pytest.approx(stats.kstwobign.sf(np.sqrt(n * m / (n + m)) * ks.statistic))
    assert consecutive["avg_delta"] == pytest.approx(on[5]["temp"].mean() - on[4]["temp"].mean())
    assert consecutive["wasserstein_distance"] == pytest.approx(stats.wasserstein_distance(on[5]["temp"], on[4]["temp"]))
    # Baseline: every window against its model's training set (4 degrees colder: it drifted).
    against = drift_row("BASELINE", 6, "temp")
    ks = stats.ks_2samp(on[6]["temp"], baseline["temp"])
    assert against["ks_test"]["statistic"] == pytest.approx(ks.statistic, abs=1e-9) and against["ks_test"]["pvalue"] < 1e-3
    assert against["window_cmp"] is None and against["population_stability_index"] > 0.25
    cats = drift_row("BASELINE", 6, "carrier")
    table = pd.crosstab(pd.concat([on[6]["carrier"], baseline["carrier"]]), ["cur"] * len(on[6]) + ["ref"] * len(baseline))
    chi2 = stats.chi2_contingency(table.to_numpy().T)
    assert cats["chi_squared_test"]["statistic"] == pytest.approx(chi2.statistic)
    assert cats["chi_squared_test"]["pvalue"] == pytest.approx(chi2.pvalue)
    assert pd.isna(cats["ks_test"]) and pd.isna(against["chi_squared_test"])

    # A refresh again finds every window current and writes nothing.
    quiet = {"say": lambda line: None}
    first = result
    assert first["windows"] == 4  # three days and their week
    versions = [lakehouse.version(first["profile_table"]), lakehouse.version(first["drift_table"])]
    columns = ["origin", "carrier", "temp", "prediction", "delayed"]
    day4 = lakehouse.read(first["profile_table"]).where("granularity = '1 day' AND window.start = '2013-03-04'")
    before = day4.orderBy("slice_key", "slice_value", "column_name", "log_type").toPandas()

    lines = []
    assert monitoring.refresh(lakehouse, staging, MONITOR, dt.date(2013, 3, 6), 0.5, say=lines.append)["windows"] == 0
    assert lines == [f"{first['profile_table']}: every window is current (4 window x model rows)"]
    assert [lakehouse.version(first["profile_table"]), lakehouse.version(first["drift_table"])] == versions

    # A day later the labels of 6 March have arrived: that day (and the 5th it is compared
    # with) and the week are recomputed; the 4th is left as it was. The tables, of two files
    # each now (the first refresh's and this one's), are compacted past one.
    monkeypatch.setattr(monitoring, "COMPACT_FILES", 1)
    later = monitoring.refresh(lakehouse, staging, MONITOR, dt.date(2013, 3, 7), 0.5, **quiet)
    assert later["windows"] == 3
    for table in (first["profile_table"], first["drift_table"]):
        detail = lakehouse.spark.sql(f"DESCRIBE DETAIL delta.`{lakehouse.path(table)}`").first()
        assert detail["numFiles"] == 1, table
    profile = lakehouse.read(first["profile_table"])
    wednesday = profile.where(
        "granularity = '1 day' AND window.start = '2013-03-06' AND column_name = ':table' AND slice_key IS NULL"
    ).first()
    assert wednesday["labelled_count"] == 60 and wednesday["refreshed_as_of"] == dt.date(2013, 3, 7)
    after = day4.orderBy("slice_key", "slice_value", "column_name", "log_type").toPandas()
    assert set(after["refreshed_as_of"]) == {dt.date(2013, 3, 6)}
    pd.testing.assert_frame_equal(after, before)
    # The baseline rows were replaced, not added to: one set per slice and column (+ :table).
    assert profile.where("log_type = 'BASELINE'").count() == (1 + 3) * (len(columns) + 1)
    # Sketched in Spark's Python workers (mapInArrow, as more than LOCAL_ROWS rows are) instead
    # of in the driver: the same rows. The tables were created with deletion vectors.
    tables = [first["profile_table"], first["drift_table"]]
    assert [lakehouse.properties(t).get("delta.enableDeletionVectors") for t in tables] == ["true", "true"]
    monkeypatch.setattr(monitoring, "LOCAL_ROWS", 0)
    in_driver = [_sorted(lakehouse.read(t).toPandas()) for t in tables]
    assert monitoring.refresh(lakehouse, staging, MONITOR, dt.date(2013, 3, 7), 0.5, full=True, **quiet)["windows"] == 4
    for table, before in zip(tables, in_driver):
        pd.testing.assert_frame_equal(_sorted(lakehouse.read(table).toPandas()), before)


def _sorted(metrics: pd.DataFrame) -> pd.DataFrame:
    """Metric rows in one order, without the as-of date they were refreshed at, as text (nested
    values compare), numbers to 9 decimals (sums in another order differ in their last bits)."""
    out = metrics.drop(columns=["refreshed_as_of"], errors="ignore")
    out = out.round({c: 9 for c in out.columns if pd.api.types.is_float_dtype(out[c])}).astype(str)
    return out.sort_values(list(out.columns)).reset_index(drop=True)


def test_a_bad_monitor_is_one_line_naming_its_path(tmp_path):
    (tmp_path / "monitors.yml").write_text(
        "monitors:\n  predictions:\n    table_name: predictions\n    timestamp_col: ts\n    granularities: ['2 days']\n"
        "    model_id_col: m\n    prediction_col: p\n"
    )
    with pytest.raises(
        ConfigError,
        match=r"monitors.yml: monitors\.predictions\.granularities\.0: must be one of 5 minutes, "
        r"30 minutes, .*, got '2 days' \(did you mean 1 day\?\)$",
    ):
        monitors.load_monitors(tmp_path)
    (tmp_path / "monitors.yml").write_text(
        "monitors:\n  predictions:\n    table_name: predictions\n    timestamp_col: ts\n    granularities: ['1 day']\n"
        "    model_id_col: m\n    prediction_col: p\n    slicing_expr: [origin]\n"
    )
    with pytest.raises(ConfigError, match=r"monitors\.predictions\.slicing_expr: unknown key \(did you mean slicing_exprs\?\)$"):
        monitors.load_monitors(tmp_path)
    (tmp_path / "monitors.yml").write_text(
        "monitors:\n  predictions:\n    table_name: predictions\n    timestamp_col: ts\n    granularities: ['1 day']\n"
        "    model_id_col: m\n    prediction_col: p\n    labels_table: labels\n"
    )
    with pytest.raises(ConfigError, match=r"monitors\.predictions\.labels_table: needs label_col and label_key$"):
        monitors.load_monitors(tmp_path)
    assert set(monitors.load_monitors()) == {"predictions"}  # the shipped file is valid


def test_served_requests_become_one_prediction_row_each_with_their_features_and_labels(featurized, staging, model_cfg):
    from lib.serving import capture

    lakehouse, spark = featurized, featurized.spark
    flights = (
        lakehouse.read(staging.table("flight_features"))
        .where("sched_dep_ts >= '2013-03-01 08:00:00'")
        .orderBy("sched_dep_ts", "flight_id")
        .limit(2)
        .toPandas()
    )
    f1, f2 = flights.to_dict("records")

    def req(rows, status=200, preds=None, entity="m-2", at=T(2026, 11, 29, 10)):
        body = json.dumps({"dataframe_records": rows})
        answer = json.dumps({"predictions": preds} if status == 200 else {"error_code": "X", "message": "bad"})
        return capture.row("id", None, at, status, 3, body, answer, entity, "bearer")

    def key(f):  # a request by key: the spine only
        return {"flight_id": f["flight_id"], "origin": f["origin"], "sched_dep_ts": f["sched_dep_ts"].isoformat()}

    payload = spark.createDataFrame(
        [
            req([key(f1), key(f2)], preds=[0.9, 0.2]),
            req([{"carrier": "UA"}], status=400),
            req([{"carrier": "UA", "origin": "EWR", "temp": 50.0}], preds=[0.7], entity="m-3", at=T(2026, 11, 30, 1)),
        ],
        capture.SCHEMA,
    )
    types = {"carrier": "string", "origin": "string", "temp": "double"}
    rows = served.served_predictions(payload, ["flight_id", "origin", "sched_dep_ts"], types, "sched_dep_ts").orderBy(
        "prediction"
    )
    assert [(r["flight_id"], r["prediction"], r["model_version"], r["carrier"], r["temp"]) for r in rows.collect()] == [
        (f2["flight_id"], 0.2, "m-2", None, None),
        (None, 0.7, "m-3", "UA", 50.0),
        (f1["flight_id"], 0.9, "m-2", None, None),
    ]

    lakehouse.write(payload, staging.table("delay_model_payload"))
    lakehouse.write(
        spark.createDataFrame(
            [(f1["flight_id"], f1["sched_dep_ts"], 1), (f2["flight_id"], f2["sched_dep_ts"], 0)],
            "flight_id string, sched_dep_ts timestamp_ntz, delayed int",
        ),
        staging.table("labels"),
    )
    monitor = monitors.load_monitors()["predictions"].model_copy(update={"granularities": ["1 day"]})
    table = served.refresh_served(
        lakehouse, staging, staging.table("delay_model_payload"), monitor, dt.date(2013, 4, 1), 0.5, model_cfg
    )
    profile = lakehouse.read(table)
    rows = profile.where("column_name = ':table'").orderBy("window.start").collect()
    assert [(r["window"]["start"], r["model_id"], r["count"], r["labelled_count"]) for r in rows] == [
        (T(2026, 11, 29), "m-2", 2, 2),
        (T(2026, 11, 30), "m-3", 1, 0),
    ]
    assert rows[0]["accuracy"] == 1.0
    prediction = profile.where("column_name = 'prediction' AND model_id = 'm-2'").first()
    assert (prediction["avg"], prediction["min"], prediction["max"]) == (pytest.approx(0.55), 0.2, 0.9)
    # The flights sent by key got the model's inputs from the feature tables, point in time:
    # the carrier of the flight, and the newest weather at its origin at most 3 hours before.
    weather = lakehouse.read(staging.table("weather_features")).toPandas()

    def temp_at(f):
        known = weather[
            (weather["origin"] == f["origin"])
            & (weather["observed_at"] <= f["sched_dep_ts"])
            & (weather["observed_at"] >= f["sched_dep_ts"] - pd.Timedelta(hours=3))
        ]
        return known.sort_values("observed_at")["temp"].iloc[-1]

    temp = profile.where("column_name = 'temp' AND model_id = 'm-2'").first()
    assert (temp["count"], temp["num_nulls"]) == (2, 0)
    assert temp["avg"] == pytest.approx((temp_at(f1) + temp_at(f2)) / 2)
    carrier = profile.where("column_name = 'carrier' AND model_id = 'm-2'").first()
    assert sorted((i["item"], i["count"]) for i in carrier["frequent_items"]) == sorted(
        pd.Series([f1["carrier"], f2["carrier"]]).value_counts().items()
    )
    # The request that sent its features keeps them.
    sent = profile.where("column_name = 'temp' AND model_id = 'm-3'").first()
    assert (sent["count"], sent["avg"]) == (1, 50.0)


@pytest.mark.slow  # a whole refresh: ~10 s
def test_custom_metrics_aggregate_derive_and_drift(lakehouse, staging, monitored):
    rows, baseline = monitored
    shipped = monitors.load_monitors()["predictions"].custom_metrics  # mean_predicted, delayed_share, gap, delta
    squares = monitoring.custom_metrics.CustomMetric(
        name="mean_square", type="AGGREGATE", input_columns=["temp"], definition="avg({{input_column}} * {{input_column}})"
    )
    monitor = MONITOR.model_copy(update={"custom_metrics": [*shipped, squares]})
    result = monitoring.refresh(lakehouse, staging, monitor, dt.date(2013, 3, 6), 0.5, say=lambda line: None)
    profile, drift = read(lakehouse, result["profile_table"]), read(lakehouse, result["drift_table"])
    on = {d: rows[rows["sched_dep_ts"].dt.day == d] for d in (4, 5, 6)}

    def one(frame, **where):
        hit = frame
        for k, v in where.items():
            hit = hit[hit[k].isna()] if v is None else hit[hit[k] == v]
        assert len(hit) == 1, where
        return hit.iloc[0]

    gaps = {}
    for d in (4, 5, 6):
        table = one(
            profile, granularity="1 day", start=pd.Timestamp(2013, 3, d), slice_key=None, column_name=":table", log_type="INPUT"
        )
        assert table["mean_predicted"] == pytest.approx(on[d]["prediction"].mean())
        if d < 6:  # labels arrived: the observed share and the gap
            assert table["delayed_share"] == pytest.approx(on[d]["delayed"].mean())
            gaps[d] = on[d]["prediction"].mean() - on[d]["delayed"].mean()
            assert table["calibration_gap"] == pytest.approx(gaps[d])
        else:  # no label yet: undefined, not zero
            assert pd.isna(table["delayed_share"]) and pd.isna(table["calibration_gap"])
        assert pd.isna(table["mean_square"])  # a metric of the temp column only
    jfk = on[5][on[5]["origin"] == "JFK"]
    temp = one(
        profile,
        granularity="1 day",
        start=pd.Timestamp(2013, 3, 5),
        slice_key="origin",
        slice_value="JFK",
        column_name="temp",
        log_type="INPUT",
    )
    assert temp["mean_square"] == pytest.approx((jfk["temp"] ** 2).mean()) and pd.isna(temp["mean_predicted"])
    base = one(profile, log_type="BASELINE", slice_key=None, column_name=":table")
    base_gap = baseline["prediction"].mean() - baseline["delayed"].mean()
    assert base["calibration_gap"] == pytest.approx(base_gap)

    def drift_row(kind):
        return (
            one(drift, drift_type=kind, granularity="1 day", start=pd.Timestamp(2013, 3, 5), slice_key=None, column_name=":table")
            if kind
            else None
        )

    assert drift_row("CONSECUTIVE")["calibration_gap_delta"] == pytest.approx(gaps[5] - gaps[4])
    assert drift_row("BASELINE")["calibration_gap_delta"] == pytest.approx(gaps[5] - base_gap)
    temp_drift = drift[(drift["column_name"] == "temp")]
    assert len(temp_drift) and temp_drift["calibration_gap_delta"].isna().all()  # a :table metric only


BAD_MONITORS = [
    ({"prediction_col": "score"}, "names column 'score', which predictions does not have"),
    ({"slicing_exprs": ["upper(airport)"]}, r"slicing expression 'upper\(airport\)' does not compile"),
    (
        {"custom_metrics": [{"name": "m", "type": "AGGREGATE", "definition": "avg(nonexistent)"}]},
        r"custom_metrics\.0 \(m\) does not compile: .*nonexistent",
    ),
    (
        {
            "custom_metrics": [
                {"name": "m", "type": "AGGREGATE", "definition": "avg({{input_column}})", "input_columns": ["humidity"]}
            ]
        },
        "input column 'humidity' is not a column of predictions",
    ),
    (
        {"custom_metrics": [{"name": "m", "type": "DERIVED", "definition": "no_such_metric * 2"}]},
        r"custom_metrics\.0 \(m\) does not compile",
    ),
    (
        {"custom_metrics": [{"name": "m", "type": "DRIFT", "definition": "{{current_df}}.avg - {{base_df}}.nope"}]},
        r"custom_metrics\.0 \(m\) does not compile",
    ),
]


def test_a_monitor_that_does_not_fit_its_table_fails_in_one_line_before_writing(lakehouse, staging, monitored):
    for change, message in BAD_MONITORS:  # one table set for all the cases: each fails before writing
        update = dict(change)
        if "custom_metrics" in update:
            update["custom_metrics"] = [monitoring.custom_metrics.CustomMetric(**m) for m in update["custom_metrics"]]
        monitor = MONITOR.model_copy(update=update)
        with pytest.raises(ConfigError, match=message) as err:
            monitoring.refresh(lakehouse, staging, monitor, dt.date(2013, 3, 6), 0.5, say=lambda line: None)
        assert "\n" not in str(err.value)
        assert not lakehouse.exists(monitor.output(staging, "profile"))  # nothing was written


def test_a_regression_monitor_profiles_its_quality_under_lakehouse_monitorings_names(lakehouse, staging):
    """Units sold predicted per order: a refresh writes each day's and week's mse, rmse, mae, mape
    and r2 of the labelled rows (scikit-learn's on the same rows) and no classifier's metric."""
    rng = np.random.default_rng(5)
    n = 240
    rows = pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(n)],
            "ordered_at": [T(2013, 3, 4 + i % 3, 9) + dt.timedelta(minutes=i) for i in range(n)],
            "store": rng.choice(["north", "south"], n),
            "units": rng.gamma(2.0, 4.0, n).round(1),
            "model_version": "1",
        }
    )
    rows["prediction"] = rows["units"] + rng.normal(0, 2, n)
    spark = lakehouse.spark
    lakehouse.write(spark.createDataFrame(rows.drop(columns="units")), staging.table("orders_predictions"))
    lakehouse.write(spark.createDataFrame(rows[["order_id", "ordered_at", "units"]]), staging.table("order_labels"))
    monitor = monitors.Monitor(
        table_name="orders_predictions",
        timestamp_col="ordered_at",
        granularities=["1 day", "1 week"],
        model_id_col="model_version",
        prediction_col="prediction",
        problem_type="PROBLEM_TYPE_REGRESSION",
        label_col="units",
        labels_table="order_labels",
        label_key=["order_id"],
        slicing_exprs=["store"],
        exclude_columns=["order_id"],
    )
    monitoring.refresh(lakehouse, staging, monitor, dt.date(2013, 3, 7), 0.5, say=lambda line: None)
    profile = read(lakehouse, monitor.output(staging, "profile"))
    table = profile[(profile["column_name"] == ":table") & profile["slice_key"].isna() & (profile["log_type"] == "INPUT")]
    assert sorted(table["granularity"]) == ["1 day"] * 3 + ["1 week"]
    for _, row in table.iterrows():
        start = pd.Timestamp(row["start"])
        length = pd.Timedelta(days=7 if row["granularity"] == "1 week" else 1)
        window = rows[(rows["ordered_at"] >= start) & (rows["ordered_at"] < start + length)]
        y, p = window["units"].to_numpy(), window["prediction"].to_numpy()
        assert row["count"] == len(window) > 0
        assert row["mean_squared_error"] == pytest.approx(skm.mean_squared_error(y, p), rel=1e-9)
        assert row["root_mean_squared_error"] == pytest.approx(skm.root_mean_squared_error(y, p), rel=1e-9)
        assert row["mean_absolute_error"] == pytest.approx(skm.mean_absolute_error(y, p), rel=1e-9)
        assert row["mean_absolute_percentage_error"] == pytest.approx(skm.mean_absolute_percentage_error(y, p), rel=1e-9)
        assert row["r2_score"] == pytest.approx(skm.r2_score(y, p), rel=1e-6)
    assert table["roc_auc"].isna().all() and table["confusion_matrix"].isna().all()
