import datetime as dt
import json
import time
import uuid

import numpy as np
import pandas as pd
import pytest

from lib.core import names
from lib.core.config import CONF_DIR, load_model_config
from lib.core.errors import ConfigError, TableNotFoundError
from lib.inference import batch as inference
from lib.inference import feed, streaming
from lib.platform import registry

KNOWN = {"origin": ["EWR", "JFK", "LGA"]}


def test_triage_names_the_first_reason_a_row_cannot_be_scored(spark, model_cfg):
    source = feed.incoming(model_cfg)
    rows = spark.createDataFrame(
        pd.DataFrame(
            [
                ("2013-10-01_AA1_JFK", "JFK", "2013-10-01 06:00:00", None),
                (None, "JFK", "2013-10-01 06:00:00", "missing flight_id"),
                ("2013-10-01_AA2_JFK", " ", "2013-10-01 06:00:00", "missing origin"),
                ("2013-10-01_AA3_JFK", "JFK", None, "missing sched_dep_ts"),
                ("2013-10-01_AA4_JFK", "JFK", "yesterday at six", "unparseable sched_dep_ts: yesterday at six"),
                ("2013-10-01_AA5_BOS", "BOS", "2013-10-01 06:00:00", "unknown origin: BOS"),
                ("2013-10-01_AA6_BOS", "BOS", "13 o'clock", "unparseable sched_dep_ts: 13 o'clock"),
                (
                    "2013-10-01_AA7_JFK",
                    "JFK",
                    "2261-01-01 00:00:00",
                    "sched_dep_ts out of range (1970-01-01 .. 2200-01-01): 2261-01-01 00:00:00",
                ),
            ],
            columns=[*source.fields, "expected"],
        )
    )
    got = streaming.triage(rows, source, KNOWN).toPandas()
    assert got[streaming.REASON].tolist() == got["expected"].tolist()
    assert got.loc[0, "_parsed"] == pd.Timestamp("2013-10-01 06:00:00")


@pytest.mark.parametrize(
    "trigger, expected",
    [
        ("availableNow", {"availableNow": True}),
        ("1 second", {"processingTime": "1 second"}),
        ("30 seconds", {"processingTime": "30 seconds"}),
        ("2 minutes", {"processingTime": "2 minutes"}),
    ],
)
def test_triggers(trigger, expected):
    assert streaming.check_trigger(trigger) == expected


@pytest.mark.parametrize("trigger", ["", "once", "1s", "-1 second", None])
def test_bad_triggers_are_one_line(trigger):
    with pytest.raises(ConfigError, match="trigger must be 'availableNow' or an interval"):
        streaming.check_trigger(trigger)


def test_settings_refuse_misspelt_keys(tmp_path):
    text = (CONF_DIR / "model.yml").read_text()
    assert "    known_values:" in text
    (tmp_path / "model.yml").write_text(text.replace("    known_values:", "    known_value:"))
    with pytest.raises(
        ConfigError, match=r"model.yml: inference.streaming.known_value: unknown key \(did you mean known_values\?\)$"
    ):
        load_model_config(tmp_path)


def test_stream_scores_every_arrival_once_as_batch_does(featurized, staging, champion, model_cfg, kafka_records):
    day = dt.datetime.combine(staging.data.as_of, dt.time())
    source, key = feed.incoming(model_cfg), model_cfg.spine.id
    with pytest.raises(TableNotFoundError, match="incoming_flights does not exist yet: feed it first"):
        streaming.run(featurized, model_cfg, "availableNow", say=lambda line: None)
    lines = []
    fed = feed.replay(featurized, model_cfg, day, day + dt.timedelta(days=1), dt.timedelta(hours=12), 0, say=lines.append)
    assert len(lines) == 2 and fed > 500
    broken = pd.DataFrame(
        [(None, "JFK", "2013-10-01 07:00:00"), ("x_BOS", "BOS", "2013-10-01 07:00:00"), ("x_JFK", "JFK", "soon")],
        columns=list(source.fields),
    )
    feed.append(featurized, source, featurized.spark.createDataFrame(broken))

    said = []
    summary = streaming.run(featurized, model_cfg, "availableNow", say=said.append)
    assert summary["rows"] == fed + 3, said
    out = featurized.read(staging.table(streaming.PREDICTIONS)).toPandas()
    assert len(out) == out[key].nunique() == fed
    assert set(out["model_version"]) == {champion.version} and set(out["model_alias"]) == {"Champion"}
    quarantined = featurized.read(staging.table(source.quarantine)).toPandas().sort_values(streaming.REASON)
    assert quarantined[streaming.REASON].tolist() == [
        "missing flight_id",
        "unknown origin: BOS",
        "unparseable sched_dep_ts: soon",
    ]
    # The same predictions as batch inference, value by value.
    batch = inference.score(
        featurized,
        featurized.read(staging.table("flight_features")),
        champion,
        day.date(),
        day.date() + dt.timedelta(days=1),
        0.5,
        entity=model_cfg.spine,
    ).toPandas()
    both = out.merge(batch, on=key, suffixes=("", "_batch"))
    assert len(both) == fed
    assert np.allclose(both["prediction"], both["prediction_batch"], rtol=0, atol=1e-12)
    assert (both[inference.MISSES] == both[f"{inference.MISSES}_batch"]).all()
    # Staging publishes the stream to Kafka too: one record per prediction, keyed by flight, the same values.
    topic, query = streaming.kafka_topic(staging), streaming.query_id(streaming.checkpoint_path(featurized))
    sent = pd.DataFrame([value for _, value in kafka_records(topic, query)])
    assert [key for key, _ in kafka_records(topic, query)] == sent[key].tolist()
    assert len(sent) == sent[key].nunique() == fed
    both = out.merge(sent, on=key, suffixes=("", "_kafka"))
    assert len(both) == fed and (both["prediction"] == both["prediction_kafka"]).all()
    assert (both["model_version"] == both["model_version_kafka"]).all()

    # Nothing new: nothing written. New arrivals after a new Champion: scored by it.
    streaming.run(featurized, model_cfg, "availableNow", say=lambda line: None)
    assert featurized.read(staging.table(streaming.PREDICTIONS)).count() == fed
    source = registry.client().get_model_version_download_uri(champion.name, champion.version)
    v2 = registry.ModelRef(champion.name, str(registry.client().create_model_version(champion.name, source=source).version))
    registry.move_alias(v2, names.CHAMPION, "test")
    more = feed.replay(
        featurized,
        model_cfg,
        day + dt.timedelta(days=1),
        day + dt.timedelta(days=2),
        dt.timedelta(days=1),
        0,
        say=lambda line: None,
    )
    streaming.run(featurized, model_cfg, "availableNow", say=lambda line: None)
    out = featurized.read(staging.table(streaming.PREDICTIONS)).toPandas()
    assert len(out) == out[key].nunique() == fed + more
    assert out.groupby("model_version").size().to_dict() == {champion.version: fed, v2.version: more}
    sent = pd.DataFrame([value for _, value in kafka_records(topic, query)])
    assert sent.groupby("model_version").size().to_dict() == {champion.version: fed, v2.version: more}


def test_a_micro_batch_replayed_after_its_write_writes_nothing_twice(
    featurized, staging, champion, model_cfg, tmp_path, kafka_records
):
    """What a restart does after a crash between a micro-batch's writes and its checkpoint commit:
    the tables are not written again, and Kafka gets the records it lacks, once."""
    day = dt.datetime.combine(staging.data.as_of, dt.time())
    source = feed.incoming(model_cfg)
    fed = feed.replay(featurized, model_cfg, day, day + dt.timedelta(hours=9), dt.timedelta(hours=9), 0, say=lambda line: None)
    arrivals = pd.DataFrame([("x_JFK", "JFK", "noon")], columns=list(source.fields))
    feed.append(featurized, source, featurized.spark.createDataFrame(arrivals))
    checkpoint, query = tmp_path / "checkpoint", f"query-{uuid.uuid4()}"
    checkpoint.mkdir()
    (checkpoint / "metadata").write_text(json.dumps({"id": query}))  # what Spark writes when a query starts
    known, topic = model_cfg.inference.streaming.known_values, streaming.kafka_topic(staging)
    rows = featurized.read(staging.table(source.table))
    spine = model_cfg.spine
    streaming.MicroBatch(staging, str(checkpoint), source, spine, 0.5, known)(rows, 0)  # crashed before its Kafka write
    batch = streaming.MicroBatch(staging, str(checkpoint), source, spine, 0.5, known, streaming.kafka_target(staging))
    batch(rows, 0)  # replayed: Delta has (query, 0) in both tables' logs and skips both writes; Kafka gets them
    assert len(kafka_records(topic, query)) == fed
    batch(rows, 0)  # replayed again: Kafka holds them all already
    sent = [key for key, _ in kafka_records(topic, query)]
    assert len(sent) == len(set(sent)) == fed
    assert featurized.read(staging.table(streaming.PREDICTIONS)).count() == fed
    assert featurized.read(staging.table(source.quarantine)).count() == 1
    assert featurized.version(staging.table(streaming.PREDICTIONS)) == 0


def test_without_a_champion_the_stream_waits_and_says_so(staging, trained):
    import threading

    said, found = [], []
    waiter = threading.Thread(target=lambda: found.append(streaming.wait_for_champion(staging, said.append, 0.2)))
    waiter.start()
    time.sleep(1.0)
    assert waiter.is_alive() and said == [
        "staging.flights.delay_model has no Champion yet: the stream waits for one (run the deployment job); "
        "looking again every 0.2s"
    ]
    registry.move_alias(trained, names.CHAMPION, "test")
    waiter.join(10)
    assert found == [trained] and len(said) == 1


def test_a_changed_source_schema_is_one_line_naming_the_column(featurized, staging, model_cfg):
    source = feed.incoming(model_cfg)
    table = staging.table(source.table)
    rows = featurized.spark.createDataFrame(pd.DataFrame([("x_JFK", 3, "2013-10-01 07:00:00")], columns=list(source.fields)))
    featurized.write(rows.selectExpr("*", "current_timestamp() AS arrived_at"), table)
    with pytest.raises(streaming.StreamingError, match="incoming_flights column origin is bigint, not string"):
        streaming.check_source(featurized, source)
    featurized.write(rows.drop("origin").selectExpr("*", "current_timestamp() AS arrived_at"), table)
    with pytest.raises(streaming.StreamingError, match="incoming_flights has no column origin"):
        streaming.check_source(featurized, source)


@pytest.mark.parametrize(
    "message, expected",
    [
        (
            "[STREAMING_QUERY_EXCEPTION] Query q terminated with exception: [FOREACH_BATCH_USER_FUNCTION_ERROR] An error "
            "occurred in the user provided function in foreach batch sink. Reason: Traceback (most recent call last):\n"
            '  File "/lib/inference/streaming.py", line 150, in __call__\n    check_columns(rows, self.env.table(INCOMING))\n'
            "lib.inference.streaming.StreamingError: prod.flights.incoming_flights has no column origin (string): its schema changed\n"
            " SQLSTATE: 39000\n\tat org.apache.spark.sql.execution.streaming.StreamExecution.run",
            "StreamingError: prod.flights.incoming_flights has no column origin (string): its schema changed",
        ),
        (
            "[DELTA_SCHEMA_CHANGED] Detected schema change:\nstreaming source schema: ...",
            "[DELTA_SCHEMA_CHANGED] Detected schema change:",
        ),
    ],
)
def test_a_failed_query_is_quoted_by_its_cause(message, expected):
    assert streaming.cause(Exception(message)) == expected


def test_a_broken_registry_is_raised_not_taken_for_no_champion(staging, trained, monkeypatch):
    from mlflow.exceptions import MlflowException

    assert registry.version_of(trained.name, names.CHAMPION) is None  # no alias yet: None
    assert registry.version_of("staging.flights.no_such_model", names.CHAMPION) is None

    def broken(*args, **kwargs):
        raise MlflowException("database is locked", error_code="INTERNAL_ERROR")

    monkeypatch.setattr(registry.client().__class__, "get_model_version_by_alias", broken)
    with pytest.raises(MlflowException, match="database is locked"):
        streaming.wait_for_champion(staging, lambda line: None, 0.1)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--from", "2013-13-01", "--to", "2013-10-02"], "error: --from '2013-13-01' is not a date: use YYYY-MM-DD"),
        (
            ["--from", "2013-10-01", "--to", "2013-10-02", "--every", "0h"],
            "error: --every must look like 30m, 1h or 1d, not '0h'",
        ),
    ],
)
def test_the_feed_command_refuses_bad_arguments_in_one_line(home, capsys, args, message):
    assert feed.main(["--env", "staging", *args]) == 1
    assert capsys.readouterr().err.strip() == message
