import datetime as dt

from pyspark.sql import functions as F

from lib import inference


def test_score_and_publish_each_period_once(featurized, staging, champion, model_cfg):
    flight_features = featurized.read(staging.table("flight_features"))
    table = staging.table("predictions")
    start = staging.data.as_of
    periods = [(start, start + dt.timedelta(days=1)), (start + dt.timedelta(days=1), start + dt.timedelta(days=2))]
    expected = {}
    for lo, hi in periods + periods[:1]:  # the first period is scored twice
        preds = inference.score(flight_features, champion, lo, hi, 0.5)
        inference.publish(featurized, preds, table, lo)
        expected[lo] = flight_features.where((F.col("sched_dep_ts") >= F.lit(lo)) & (F.col("sched_dep_ts") < F.lit(hi))).count()
    published = featurized.read(table)
    counts = {r["period_start"]: r["count"] for r in published.groupBy("period_start").count().collect()}
    assert counts == expected and all(n > 0 for n in counts.values())
    assert published.select("flight_id").distinct().count() == published.count()
    row = published.first()
    assert (row["model_name"], row["model_version"]) == (champion.name, champion.version)
    assert 0.0 <= row["prediction"] <= 1.0 and row["predicted_delayed"] == int(row["prediction"] >= 0.5)
    assert row["scored_at"] is not None
