"""Streaming inference: score rows as they arrive, each exactly once, with the Champion of the moment.

Arriving rows land in the Delta table conf/model.yml `inference.streaming.source_table`
(lib/inference/feed.py replays the spine table's rows there in event-time order, at a chosen
speed). A Structured Streaming query reads it and,
per micro-batch (`foreachBatch`: the point-in-time lookup is a window function, which a stream
itself cannot run):

1. sets malformed rows aside in `<source_table>_quarantine`, each with its reason;
2. resolves `@Champion` (a new Champion scores from the next micro-batch; with none, the batch
   waits and says so);
3. looks the features up point in time and scores, as batch inference does (`inference.predict`);
4. appends the predictions to `streaming_predictions`;
5. with `publish.kafka` on, sends the same rows to the endpoint's Kafka topic (lib/platform/services/kafka_client.py).

The Delta appends are idempotent per micro-batch (Delta's txnAppId/txnVersion, keyed by the
checkpoint's query id), and the checkpoint replays a micro-batch that was not committed. A
micro-batch whose predictions Delta already holds is a replay: it scores nothing again and
sends Kafka, from the table, only the rows the topic lacks. So after a crash (the Spark server
killed mid-batch) and a restart, every arriving row is scored exactly once, in Delta and in
Kafka. Over Spark Connect the query and its foreachBatch function run in the Spark server (the
function in a Python worker the server starts); the client starts, watches and stops it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lib.core import names
from lib.core.config import EnvConfig
from lib.core.config.model import ModelConfig, Spine
from lib.core.errors import ConfigError, LakehouseError, TableNotFoundError, first_line
from lib.inference import batch as inference
from lib.inference.feed import ARRIVED, Incoming, incoming
from lib.platform import registry
from lib.platform.catalog import Lakehouse
from lib.platform.services import kafka_client as kafka
from lib.platform.services import kafka_server

PREDICTIONS = "streaming_predictions"
REASON = "reason"
EARLIEST, LATEST = "1970-01-01", "2200-01-01"  # a time outside: quarantined (pandas and the holiday calendar stop)
QUERY = "query_id"  # per prediction: the stream's query (its checkpoint) that wrote it, with batch_id
AVAILABLE_NOW = "availableNow"
_INTERVAL = re.compile(r"^\d+(\.\d+)? (second|seconds|minute|minutes)$")
WAIT_S = 10.0  # how often a stream without a Champion looks again


class StreamingError(LakehouseError):
    """The stream cannot start or stopped on an error; the message names what and where."""


def triage(rows: DataFrame, source: Incoming, known: dict[str, list[str]]) -> DataFrame:
    """The rows with their event time parsed and REASON: null for a row fit to score, else
    why it is not (a missing key, an unparseable time, a value the model does not know)."""
    at = source.timestamp
    parsed = F.col(at).try_cast("timestamp_ntz")
    reason = F.lit(None).cast("string")
    outside = (parsed < F.lit(EARLIEST).cast("timestamp_ntz")) | (parsed >= F.lit(LATEST).cast("timestamp_ntz"))
    checks = [
        *[(F.col(c).isNull() | (F.trim(F.col(c)) == ""), F.lit(f"missing {c}")) for c in source.fields],
        (parsed.isNull(), F.concat(F.lit(f"unparseable {at}: "), F.col(at))),
        (outside, F.concat(F.lit(f"{at} out of range ({EARLIEST} .. {LATEST}): "), F.col(at))),
        *[(~F.col(c).isin(values), F.concat(F.lit(f"unknown {c}: "), F.col(c))) for c, values in known.items()],
    ]
    for broken, why in reversed(checks):  # the first failing check names the row's reason
        reason = F.when(broken, why).otherwise(reason)
    return rows.withColumn("_parsed", parsed).withColumn(REASON, reason)


def check_source(lakehouse: Lakehouse, source: Incoming) -> None:
    """The source table exists with the columns a stream reads, as text (else one line naming the column)."""
    table = lakehouse.env.table(source.table)
    if not lakehouse.exists(table):
        raise TableNotFoundError(
            f"{table} does not exist yet: feed it first "
            f"(python -m lib.inference.feed --env {lakehouse.env.name} --from ... --to ...)"
        )
    check_columns(lakehouse.read(table), table, source.fields)


def check_columns(rows: DataFrame, table: str, fields: tuple[str, ...]) -> None:
    types = {f.name: f.dataType.simpleString() for f in rows.schema.fields}
    for column, wanted in [*[(c, "string") for c in fields], (ARRIVED, "timestamp")]:
        if column not in types:
            raise StreamingError(
                f"{table} has no column {column} ({wanted}): its schema changed; restore the column or start a new checkpoint"
            )
        if types[column] != wanted:
            raise StreamingError(f"{table} column {column} is {types[column]}, not {wanted}: its schema changed")


def checkpoint_path(lakehouse: Lakehouse) -> Path:
    return lakehouse.checkpoint_path(lakehouse.env.table(PREDICTIONS))


def query_id(checkpoint: Path) -> str:
    """The query's id, kept in its checkpoint: the same across restarts, new with a new checkpoint."""
    return json.loads((checkpoint / "metadata").read_text())["id"]


_configured: dict[str, str] = {}  # tracking URI -> experiment id, in the server's Python worker


@dataclass(frozen=True)
class MicroBatch:
    """What the server's Python worker runs for each micro-batch (pickled with the query)."""

    env: EnvConfig
    checkpoint: str
    source: Incoming
    entity: Spine
    decision_threshold: float | None  # None: regression (no predicted class)
    known: dict[str, list[str]]
    to_kafka: tuple[str, str] | None = None  # (bootstrap servers, topic): the predictions go there too

    def __call__(self, rows: DataFrame, batch_id: int) -> None:
        check_columns(rows, self.env.table(self.source.table), self.source.fields)
        rows = rows.persist()  # read from the source once, not by each of the steps below
        try:
            self._score(rows, batch_id)
        finally:
            rows.unpersist()

    def _score(self, rows: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        lakehouse = Lakehouse(rows.sparkSession, self.env)
        txn = (query_id(Path(self.checkpoint)), batch_id)
        source, row_id = self.source, self.source.id
        checked = triage(rows, source, self.known)
        bad = checked.where(F.col(REASON).isNotNull()).select(
            *source.fields, ARRIVED, REASON, F.lit(batch_id).alias("batch_id"), F.current_timestamp().alias("quarantined_at")
        )
        if not bad.isEmpty():
            lakehouse.write(bad, self.env.table(source.quarantine), mode="append", txn=txn)
        table = self.env.table(PREDICTIONS)
        committed = lakehouse.txn_time(table, txn)
        if committed is not None:  # a replay of a micro-batch whose predictions were written
            if self.to_kafka:  # the topic gets what the table holds, not a second scoring
                written = lakehouse.read(table).where((F.col(QUERY) == txn[0]) & (F.col("batch_id") == batch_id))
                kafka.publish(written, *self.to_kafka, row_id, (row_id, ARRIVED), txn, written_since=committed)
            return
        good = checked.where(F.col(REASON).isNull()).select(
            *[F.col("_parsed").alias(c) if c == source.timestamp else F.col(c) for c in source.fields], ARRIVED
        )
        champion = self._champion()
        scored = inference.predict(
            lakehouse, good, champion, self.decision_threshold, names.CHAMPION, carry=(ARRIVED,), entity=self.entity
        )
        scored = scored.select(
            "*", F.lit(txn[0]).alias(QUERY), F.lit(batch_id).alias("batch_id"), F.current_timestamp().alias("scored_at")
        )
        if self.to_kafka:
            scored = scored.persist()  # the same rows, scored once, to the table and the topic
        try:
            lakehouse.write(scored, table, mode="append", txn=txn)
            if self.to_kafka:
                kafka.publish(scored, *self.to_kafka, row_id, (row_id, ARRIVED), txn)
        finally:
            if self.to_kafka:
                scored.unpersist()
        print(
            f"micro-batch {batch_id}: scored by {champion.name} v{champion.version} in {time.monotonic() - started:.1f}s",
            flush=True,
        )  # to the Spark server's log

    def _champion(self) -> registry.ModelRef:
        if _configured.get(self.env.tracking_uri) is None:  # once per worker process
            _configured[self.env.tracking_uri] = registry.configure(self.env)
        while (ref := registry.version_of(self.env.model_name, names.CHAMPION)) is None:
            print(f"{self.env.model_name} has no Champion: this micro-batch waits (deploy one)", flush=True)
            time.sleep(WAIT_S)
        return ref


def check_trigger(trigger: str) -> dict:
    """`availableNow` or a processing-time interval ("1 second", "30 seconds") as writeStream.trigger kwargs."""
    if trigger == AVAILABLE_NOW:
        return {"availableNow": True}
    if isinstance(trigger, str) and _INTERVAL.match(trigger):
        return {"processingTime": trigger}
    raise ConfigError(f"trigger must be {AVAILABLE_NOW!r} or an interval like '1 second' or '30 seconds', not {trigger!r}")


def wait_for_champion(env: EnvConfig, say: Callable[[str], None] = print, poll_s: float = WAIT_S) -> registry.ModelRef:
    """The Champion's version, waiting (and saying so) while there is none."""
    said = False
    while (ref := registry.version_of(env.model_name, names.CHAMPION)) is None:
        if not said:
            say(
                f"{env.model_name} has no Champion yet: the stream waits for one (run the deployment job); "
                f"looking again every {poll_s:g}s"
            )
            said = True
        time.sleep(poll_s)
    return ref


def kafka_target(env: EnvConfig, say: Callable[[str], None] = print) -> tuple[str, str] | None:
    """(bootstrap servers, topic) if the environment publishes the stream to Kafka (`publish.kafka`),
    its broker checked (the lakehouse's own is started if need be); else None."""
    found = env.publish.kafka
    if not found.enabled:
        return None
    bootstrap = found.bootstrap_servers or kafka_server.servers(env.home, say)
    kafka.ensure_topic(bootstrap, kafka_topic(env))
    return bootstrap, kafka_topic(env)


def kafka_topic(env: EnvConfig) -> str:
    """The Kafka topic of the environment's endpoint, where its stream publishes."""

    return env.topic


def start(lakehouse: Lakehouse, model_cfg: ModelConfig, trigger: str) -> StreamingQuery:
    """Start the query (the source table -> streaming_predictions) and return it."""
    kwargs = check_trigger(trigger)
    env, source = lakehouse.env, incoming(model_cfg)
    check_source(lakehouse, source)
    checkpoint = checkpoint_path(lakehouse)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    found = model_cfg.inference.streaming
    batches = MicroBatch(
        env, str(checkpoint), source, model_cfg.spine, model_cfg.class_threshold, found.known_values, kafka_target(env)
    )
    reader = lakehouse.spark.readStream.format("delta")
    if found.max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", found.max_files_per_trigger)
    arriving = reader.load(str(lakehouse.path(env.table(source.table))))
    return (
        arriving.writeStream.foreachBatch(batches)
        .queryName(f"{env.catalog}_streaming_inference")
        .option("checkpointLocation", str(checkpoint))
        .trigger(**kwargs)
        .start()
    )


def run(
    lakehouse: Lakehouse, model_cfg: ModelConfig, trigger: str, say: Callable[[str], None] = print, poll_s: float = WAIT_S
) -> dict[str, int]:
    """Run the stream: with `availableNow` until what has arrived is scored, with an interval until
    Ctrl-C (which stops the query cleanly: a micro-batch cut short is replayed by the next run).

    Returns the micro-batches run and the rows they read.
    """
    check_trigger(trigger)
    source = incoming(model_cfg)
    check_source(lakehouse, source)
    champion = wait_for_champion(lakehouse.env, say, poll_s)
    seen: set[int] = set()
    rows = 0
    failure: Exception | None = None
    query: StreamingQuery | None = None

    def report() -> None:
        nonlocal rows
        assert query is not None, "reported on once the query has started"
        for progress in query.recentProgress:
            if progress.batchId not in seen and progress.numInputRows:
                seen.add(progress.batchId)
                rows += progress.numInputRows
                say(
                    f"micro-batch {progress.batchId}: {progress.numInputRows} rows in "
                    f"{progress.durationMs.get('triggerExecution', 0) / 1000:.1f}s"
                )

    try:  # from the start: a Ctrl-C just after it must stop the query too
        query = start(lakehouse, model_cfg, trigger)
        to_kafka = f" and Kafka topic {kafka_topic(lakehouse.env)}" if lakehouse.env.publish.kafka.enabled else ""
        say(
            f"streaming {lakehouse.env.table(source.table)} -> {lakehouse.env.table(PREDICTIONS)}{to_kafka} with "
            f"{champion.name}@Champion (v{champion.version} now), trigger {trigger}, "
            f"checkpoint {checkpoint_path(lakehouse)}"
        )
        while query.isActive:
            query.awaitTermination(1)  # over Connect, re-raises the query's failure
            report()
    except KeyboardInterrupt:
        say("Ctrl-C: stopping the stream (a micro-batch cut short is replayed by the next run)")
    except LakehouseError:
        raise  # from start(): one line already
    except Exception as exc:  # noqa: BLE001 - the query's failure, in whatever type Connect gives it
        failure = exc
    finally:
        if query is not None:
            query.stop()
    if failure is None:
        if query is None:  # Ctrl-C before the query began
            return {"batches": 0, "rows": 0}
        failure = query.exception()
    if failure is not None:
        raise StreamingError(f"the stream stopped on an error: {cause(failure)}") from failure
    report()  # the last micro-batch, if the query ended between two looks
    say(f"stream stopped: {len(seen)} micro-batch(es), {rows} rows read")
    return {"batches": len(seen), "rows": rows}


_RAISED = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+)$")


def cause(error: BaseException) -> str:
    """The line that says why a query failed. A foreachBatch failure arrives as the worker's whole
    Python traceback inside Spark's message; its last `Type: message` line is the reason."""
    lines = [line.strip() for line in str(error).splitlines()]
    raised = [m for line in lines if (m := _RAISED.match(line)) and "FOREACH_BATCH" not in line]
    if raised:
        return f"{raised[-1].group(1)}: {raised[-1].group(2)}"[:300]
    return first_line(error)[:300]


def totals(lakehouse: Lakehouse, source: Incoming) -> dict[str, int]:
    """The rows streaming_predictions and the source's quarantine table hold (0 for a table not made yet)."""
    env = lakehouse.env
    return {
        name: lakehouse.read(env.table(name)).count() if lakehouse.exists(env.table(name)) else 0
        for name in (PREDICTIONS, source.quarantine)
    }
