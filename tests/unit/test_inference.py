import datetime as dt

from pyspark.sql import functions as F

import pytest

from lib import inference
from lib.errors import TableNotFoundError
from lib.features import in_window


def test_score_and_publish_each_period_once(featurized, staging, champion, model_cfg):
    flight_features = featurized.read(staging.table("flight_features"))
    table = staging.table("predictions")
    start = staging.data.as_of
    periods = [(start, start + dt.timedelta(days=1)), (start + dt.timedelta(days=1), start + dt.timedelta(days=2))]
    # Each period is scored once (the model runs on Spark's Python workers) and kept for re-publishing.
    scored = {lo: inference.score(featurized, flight_features, champion, lo, hi, 0.5, alias="Champion").cache()
              for lo, hi in periods}
    expected = {}
    for lo, hi in periods + periods[:1]:  # the first period is published twice
        expected[lo] = flight_features.where((F.col("sched_dep_ts") >= F.lit(lo)) & (F.col("sched_dep_ts") < F.lit(hi))).count()
        assert inference.publish(featurized, scored[lo], table, lo, hi) == expected[lo]
    published = featurized.read(table)
    counts = {r["period_start"]: r["count"] for r in published.groupBy("period_start").count().collect()}
    assert counts == expected and all(n > 0 for n in counts.values())
    assert {r["period_end"] for r in published.select("period_end").distinct().collect()} == {hi for _, hi in periods}
    # A period overlapping both replaces their flights instead of adding them again.
    both = (periods[0][0], periods[1][1])
    rescored = scored[periods[0][0]].unionByName(scored[periods[1][0]]).withColumns(
        {"period_start": F.lit(both[0]), "period_end": F.lit(both[1])})
    assert inference.publish(featurized, rescored, table, *both) == sum(expected.values())
    assert featurized.read(table).count() == sum(expected.values())
    assert {r["period_start"] for r in featurized.read(table).select("period_start").distinct().collect()} == {both[0]}
    assert published.select("flight_id").distinct().count() == published.count()
    row = published.first()
    assert (row["model_name"], row["model_version"], row["model_alias"]) == (champion.name, champion.version, "Champion")
    assert 0.0 <= row["prediction"] <= 1.0 and row["predicted_delayed"] == int(row["prediction"] >= 0.5)
    assert row["scored_at"] is not None
    for frame in scored.values():
        frame.unpersist()


def test_score_needs_only_the_keys(featurized, staging, champion):
    keys = featurized.read(staging.table("labels")).select("flight_id", "origin", "sched_dep_ts")
    start = staging.data.as_of
    scored = inference.score(featurized, keys, champion, start, start + dt.timedelta(days=1), 0.5).toPandas()
    full = featurized.read(staging.table("flight_features"))
    assert len(scored) == in_window(keys, start, start + dt.timedelta(days=1)).count() > 0
    # The same predictions as the model on the training-style lookup of those flights.
    from lib import features, registry
    from lib.config import load_model_config

    window = (start, start + dt.timedelta(days=1))
    expected = features.load_labelled(featurized, staging, load_model_config(), window)
    by_id = scored.set_index("flight_id")["prediction"]
    assert by_id.loc[expected["flight_id"]].to_numpy() == pytest.approx(registry.predict(champion, expected))
    with pytest.raises(TableNotFoundError, match="lack key column\\(s\\) origin"):
        inference.score(featurized, full.drop("origin"), champion, start, start + dt.timedelta(days=1), 0.5)


def test_keys_without_feature_rows_are_scored_and_counted(featurized, staging, champion):
    # As Databricks does, a flight the feature tables do not hold is scored (from nulls); each
    # row says how many of its lookups found nothing.
    start = staging.data.as_of
    end = start + dt.timedelta(days=1)
    keys = featurized.read(staging.table("labels")).select("flight_id", "origin", "sched_dep_ts")
    known = in_window(keys, start, end).orderBy("flight_id").limit(20)
    unknown = known.withColumn("flight_id", F.concat(F.lit("no-such-"), "flight_id"))  # same origin and time
    scored = inference.score(featurized, known.unionByName(unknown), champion, start, end, 0.5).toPandas()
    missing = scored["flight_id"].str.startswith("no-such-")
    misses = scored.assign(flight=scored["flight_id"].str.removeprefix("no-such-"), missing=missing).pivot(
        index="flight", columns="missing", values=inference.MISSES)
    assert len(misses) == 20 and (misses[True] == misses[False] + 1).all()  # the flight lookup missed, weather as before
    assert scored["prediction"].notna().all()
