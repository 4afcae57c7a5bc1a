import datetime as dt

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from lib.core.config import parse_model
from lib.core.config.blocks import Destinations
from lib.core.errors import ConfigError, PublishError, TableNotFoundError
from lib.features.tables import in_window
from lib.inference import batch as inference
from lib.platform.services import postgres, processes
from lib.serving import online_store


def test_score_and_publish_each_period_once(featurized, staging, champion, model_cfg):
    flight_features = featurized.read(staging.table("flight_features"))
    table = staging.table("predictions")
    start = staging.data.as_of
    periods = [(start, start + dt.timedelta(days=1)), (start + dt.timedelta(days=1), start + dt.timedelta(days=2))]
    # Each period is scored once (the model runs on Spark's Python workers) and kept for re-publishing.
    scored = {
        lo: inference.score(featurized, flight_features, champion, lo, hi, 0.5, alias="Champion", entity=model_cfg.spine).cache()
        for lo, hi in periods
    }
    expected = {}
    for lo, hi in periods + periods[:1]:  # the first period is published twice
        expected[lo] = flight_features.where((F.col("sched_dep_ts") >= F.lit(lo)) & (F.col("sched_dep_ts") < F.lit(hi))).count()
        assert inference.publish(featurized, scored[lo], table, lo, hi, timestamp="sched_dep_ts") == expected[lo]
    published = featurized.read(table)
    counts = {r["period_start"]: r["count"] for r in published.groupBy("period_start").count().collect()}
    assert counts == expected and all(n > 0 for n in counts.values())
    assert {r["period_end"] for r in published.select("period_end").distinct().collect()} == {hi for _, hi in periods}
    # A period overlapping both replaces their flights instead of adding them again.
    both = (periods[0][0], periods[1][1])
    rescored = (
        scored[periods[0][0]]
        .unionByName(scored[periods[1][0]])
        .withColumns({"period_start": F.lit(both[0]), "period_end": F.lit(both[1])})
    )
    assert inference.publish(featurized, rescored, table, *both, timestamp="sched_dep_ts") == sum(expected.values())
    assert featurized.read(table).count() == sum(expected.values())
    assert {r["period_start"] for r in featurized.read(table).select("period_start").distinct().collect()} == {both[0]}
    assert published.select("flight_id").distinct().count() == published.count()
    row = published.first()
    assert (row["model_name"], row["model_version"], row["model_alias"]) == (champion.name, champion.version, "Champion")
    assert 0.0 <= row["prediction"] <= 1.0 and row[inference.PREDICTED_CLASS] == int(row["prediction"] >= 0.5)
    assert row["scored_at"] is not None
    for frame in scored.values():
        frame.unpersist()


def test_score_needs_only_the_keys(featurized, staging, champion, model_cfg):
    keys = featurized.read(staging.table("labels")).select("flight_id", "origin", "sched_dep_ts")
    start, spine = staging.data.as_of, model_cfg.spine
    scored = inference.score(featurized, keys, champion, start, start + dt.timedelta(days=1), 0.5, entity=spine).toPandas()
    full = featurized.read(staging.table("flight_features"))
    assert len(scored) == in_window(keys, "sched_dep_ts", start, start + dt.timedelta(days=1)).count() > 0
    # The same predictions as the model on the training-style lookup of those flights.
    from lib.core.config import load_model_config
    from lib.features import tables as features
    from lib.platform import registry

    window = (start, start + dt.timedelta(days=1))
    expected = features.load_labelled(featurized, staging, load_model_config(), window)
    by_id = scored.set_index("flight_id")["prediction"]
    assert by_id.loc[expected["flight_id"]].to_numpy() == pytest.approx(registry.predict(champion, expected))
    with pytest.raises(TableNotFoundError, match="lack key column\\(s\\) origin"):
        inference.score(featurized, full.drop("origin"), champion, start, start + dt.timedelta(days=1), 0.5, entity=spine)


def test_keys_without_feature_rows_are_scored_and_counted(featurized, staging, champion, model_cfg):
    # As Databricks does, a flight the feature tables do not hold is scored (from nulls); each
    # row says how many of its lookups found nothing.
    start = staging.data.as_of
    end = start + dt.timedelta(days=1)
    keys = featurized.read(staging.table("labels")).select("flight_id", "origin", "sched_dep_ts")
    known = in_window(keys, "sched_dep_ts", start, end).orderBy("flight_id").limit(20)
    unknown = known.withColumn("flight_id", F.concat(F.lit("no-such-"), "flight_id"))  # same origin and time
    scored = inference.score(featurized, known.unionByName(unknown), champion, start, end, 0.5, entity=model_cfg.spine)
    scored = scored.toPandas()
    missing = scored["flight_id"].str.startswith("no-such-")
    misses = scored.assign(flight=scored["flight_id"].str.removeprefix("no-such-"), missing=missing).pivot(
        index="flight", columns="missing", values=inference.MISSES
    )
    by_id = sum(lookup.lookup_key == [model_cfg.spine.id] for lookup in model_cfg.feature_lookups)
    assert by_id == 2  # flight_features and history_features
    # The lookups by the id missed, weather's (by origin and time) as before.
    assert len(misses) == 20 and (misses[True] == misses[False] + by_id).all()
    assert scored["prediction"].notna().all()
    # A regression's scoring (no decision threshold) writes the prediction and no class column.
    regression = inference.score(featurized, known, champion, start, end, None, entity=model_cfg.spine)
    assert "prediction" in regression.columns and inference.PREDICTED_CLASS not in regression.columns


def test_only_a_classification_writes_a_predicted_class(spark, model_cfg):
    scores = spark.createDataFrame(pd.DataFrame({"prediction": [0.2, 0.5, 0.9]}))
    classified = scores.select("prediction", *inference.predicted_class(model_cfg.class_threshold)).toPandas()
    assert classified[inference.PREDICTED_CLASS].tolist() == [0, 1, 1]  # the flights: threshold 0.5
    regression = model_cfg.model_copy(update={"problem_type": "regression"})
    assert regression.class_threshold is None
    assert scores.select("prediction", *inference.predicted_class(regression.class_threshold)).columns == ["prediction"]


@pytest.mark.parametrize(
    "publish, words",
    [
        ({"files": {"formats": ["xlsx"]}}, "publish.files.formats.0: must be one of parquet, csv, got 'xlsx'"),
        ({"files": {"formats": []}}, "publish.files.formats: must have at least 1 item after validation, not 0"),
        ({"kafak": {"enabled": True}}, "publish.kafak: unknown key (did you mean kafka?)"),
        (
            {"jdbc": {"url": "postgres://somewhere"}},
            "publish.jdbc.url: must match pattern '^jdbc:postgresql://[^/]+/$', got 'postgres://somewhere'",
        ),
        (
            {"delta": {"enabled": False}, "files": {"enabled": False}, "online": {"enabled": False}},
            "publish: every destination is switched off, so nothing would be published",
        ),
    ],
)
def test_bad_destinations_are_one_line(staging, publish, words):
    with pytest.raises(ConfigError) as error:
        parse_model(Destinations, publish, "conf/environments.yml", "environments", "staging", "publish")
    assert str(error.value) == f"conf/environments.yml: environments.staging.{words}"


def _score_the_spine(featurized, staging, champion, model_cfg, start, end):
    """The Champion's predictions for the spine table's rows of [start, end), as batch inference makes them."""
    rows = featurized.read(staging.table(model_cfg.spine.table))
    return inference.score(featurized, rows, champion, start, end, 0.5, alias="Champion", entity=model_cfg.spine)


def test_every_destination_holds_the_period_once_and_files_are_swapped_whole(
    featurized, staging, champion, tmp_path, postgres_server, model_cfg
):
    start = staging.data.as_of
    end = start + dt.timedelta(days=1)
    table, store = staging.table("predictions"), tmp_path / "online.db"
    predictions = _score_the_spine(featurized, staging, champion, model_cfg, start, end)
    targets = staging.publish
    assert targets.enabled() == ["delta", "files", "online", "jdbc"] and targets.files.formats == ["parquet", "csv"]
    first = inference.publish_everywhere(featurized, predictions, table, targets, start, end, store, entity=model_cfg.spine)
    delta = in_window(featurized.read(table), "sched_dep_ts", start, end).toPandas().set_index("flight_id").sort_index()
    assert first["delta"] == first["online"] == first["jdbc"] == len(delta) > 0
    with postgres.connect(postgres_server, "staging") as conn:
        held = (
            pd.DataFrame(
                conn.execute(
                    "SELECT flight_id, prediction, model_version FROM flights.predictions "
                    "WHERE sched_dep_ts >= %s AND sched_dep_ts < %s",
                    (start, end),
                ).fetchall(),
                columns=["flight_id", "prediction", "model_version"],
            )
            .set_index("flight_id")
            .sort_index()
        )
    assert list(held.index) == list(delta.index) and set(held["model_version"]) == {champion.version}
    assert np.allclose(held["prediction"], delta["prediction"], rtol=0, atol=1e-12)
    folder = first["files"]
    assert folder == featurized.export_path(table) / f"{start}_{end}" and folder.is_symlink()
    for kind, frame in [
        ("parquet", pd.read_parquet(folder / "parquet")),
        ("csv", pd.concat(pd.read_csv(f) for f in (folder / "csv").glob("*.csv"))),
    ]:
        frame = frame.set_index("flight_id").sort_index()
        assert list(frame.index) == list(delta.index), kind
        assert np.allclose(frame["prediction"], delta["prediction"], rtol=0, atol=1e-12), kind
    flight = delta.index[3]
    held = online_store.prediction(store, flight)
    assert held["prediction"] == pytest.approx(delta.loc[flight, "prediction"], abs=1e-12)
    assert (held["model_version"], held["model_alias"]) == (champion.version, "Champion")
    assert online_store.prediction(store, "no-such-flight") is None

    # Again: each destination replaces the period; the files come as a new set, the old one goes.
    again = inference.publish_everywhere(featurized, predictions, table, targets, start, end, store, entity=model_cfg.spine)
    assert again["delta"] == again["online"] == again["jdbc"] == len(delta) and again["files"] == folder
    assert [p.name for p in (folder.parent / ".versions").iterdir()] == [folder.resolve().name]
    assert featurized.read(table).count() == len(delta)

    # A write that fails half-way leaves the last complete set in place, and nothing else.
    before = folder.resolve()
    broken = featurized.read(table).withColumn("prediction", F.expr("raise_error('disk full')"))
    with pytest.raises(Exception, match="disk full"):
        inference.export_files(broken, folder.parent, ["parquet", "csv"], start, end)
    assert folder.resolve() == before and len(pd.read_parquet(folder / "parquet")) == len(delta)
    assert [p.name for p in (folder.parent / ".versions").iterdir()] == [before.name]
    assert not list(folder.parent.glob(".*.link"))


def test_with_delta_switched_off_files_and_online_still_get_the_period(featurized, staging, champion, tmp_path, model_cfg):
    start = staging.data.as_of
    end = start + dt.timedelta(days=1)
    table, store = staging.table("predictions"), tmp_path / "online.db"
    predictions = _score_the_spine(featurized, staging, champion, model_cfg, start, end)
    targets = Destinations(delta={"enabled": False}, files={"formats": ["parquet"]})
    assert targets.enabled() == ["files", "online"]
    published = inference.publish_everywhere(featurized, predictions, table, targets, start, end, store, entity=model_cfg.spine)
    assert set(published) == {"files", "online"}
    files = pd.read_parquet(published["files"] / "parquet").set_index("flight_id").sort_index()
    assert published["online"] == len(files) == predictions.count()
    assert not (published["files"] / "csv").exists()
    flight = files.index[7]
    assert online_store.prediction(store, flight)["prediction"] == pytest.approx(files.loc[flight, "prediction"], abs=1e-12)
    with pytest.raises(TableNotFoundError):
        featurized.read(table)


def test_an_unreachable_jdbc_destination_is_one_line_and_the_others_keep_the_period(
    featurized, staging, champion, tmp_path, model_cfg
):
    nobody = processes.free_port()  # a port nobody listens on
    start = staging.data.as_of
    end = start + dt.timedelta(days=1)
    table = staging.table("predictions")
    predictions = _score_the_spine(featurized, staging, champion, model_cfg, start, end)
    targets = Destinations(
        files={"enabled": False},
        online={"enabled": False},
        jdbc={"enabled": True, "url": f"jdbc:postgresql://127.0.0.1:{nobody}/"},
    )
    with pytest.raises(PublishError) as error:
        inference.publish_everywhere(
            featurized, predictions, table, targets, start, end, tmp_path / "online.db", entity=model_cfg.spine
        )
    assert str(error.value).startswith(
        f"destination jdbc (jdbc:postgresql://127.0.0.1:{nobody}/staging, table "
        "flights.predictions) failed; it still holds what it held: PostgreSQL at "
    )
    assert "unreachable" in str(error.value) and "\n" not in str(error.value)
    assert in_window(featurized.read(table), "sched_dep_ts", start, end).count() == predictions.count()  # Delta went first, whole
