"""Kafka topics: where the stream publishes its predictions, exactly once.

Each serving endpoint has a topic, `<catalog>.<schema>.<endpoint>.predictions`; the stream
writes a record per scored row, keyed by the spine's id, its value the prediction row as JSON,
with a header naming its micro-batch. Spark's Kafka sink delivers at least once, so a replayed
micro-batch first reads what its earlier attempts left in the topic and writes only the rest.
The broker: lib/platform/services/kafka_server.py (the lakehouse's own) or any at `publish.kafka.bootstrap_servers`.
"""

from __future__ import annotations

import json
import uuid

from lib.core.errors import PublishError, first_line

TXN_HEADER = "lakehouse.txn"  # <query id>:<micro-batch id> on every record the stream writes


ROW_HEADER = "lakehouse.row"  # the record's row, by its identity columns (<id>|arrived_at)


# A replayed micro-batch's records were sent after its Delta commit; they are looked for from
# that commit's time less this, for a producer's (or broker's) clock behind the driver's.
REPLAY_SKEW_MS = 10 * 60 * 1000


def ready(bootstrap: str, timeout: float = 2.0) -> bool:
    """Whether a broker answers a metadata request (a listening port alone may not yet)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


def ensure_topic(bootstrap: str, name: str, timeout: float = 10.0) -> None:
    """Create the topic unless it exists; one PublishError line, naming the destination, if no
    broker answers at bootstrap."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        if name in admin.list_topics(timeout=timeout).topics:
            return
        admin.create_topics([NewTopic(name, num_partitions=1)], operation_timeout=30)[name].result(timeout=30)
    except KafkaException as exc:
        if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return  # created meanwhile by another stream
        why = exc.args[0].str() if exc.args else str(exc)
        raise PublishError(
            f"kafka destination: no broker answers at {bootstrap} ({why}): start it "
            "(python -m lib.platform.services.kafka_server start), or fix publish.kafka.bootstrap_servers, or switch it off"
        ) from None


def delete_topic(bootstrap: str, name: str) -> bool:
    """Delete a topic (a temporary environment's wipe); returns whether it existed."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        if name not in admin.list_topics(timeout=10).topics:
            return False
        admin.delete_topics([name], operation_timeout=30)[name].result(timeout=30)
    except KafkaException as exc:
        raise PublishError(f"kafka destination {bootstrap}: could not delete topic {name}: {exc}") from None
    return True


def publish(
    rows, bootstrap: str, name: str, key: str, identity: tuple[str, ...], txn: tuple[str, int], written_since: int | None = None
) -> None:
    """Write rows to topic `name`, one JSON record each keyed by `key`, with the TXN_HEADER of
    their micro-batch and a ROW_HEADER of their `identity` columns. On a replay, `written_since`
    (ms since the epoch) is when that micro-batch's earlier attempts may have started writing:
    only the rows they did not write are written, found among the records from then on (less
    REPLAY_SKEW_MS for clocks that differ), not by reading the whole topic. A failure is one
    PublishError line naming the destination."""
    from pyspark.sql import functions as F

    marker = f"{txn[0]}:{txn[1]}"
    options = {
        "kafka.bootstrap.servers": bootstrap,
        "kafka.max.block.ms": "15000",
        "kafka.request.timeout.ms": "10000",
        "kafka.delivery.timeout.ms": "30000",
    }
    row = F.concat_ws("|", *[F.col(c).cast("string") for c in identity])
    try:
        if written_since is not None:
            written = (
                rows.sparkSession.read.format("kafka")
                .options(**options)
                .option("subscribe", name)
                .option("startingTimestamp", str(written_since - REPLAY_SKEW_MS))
                .option("startingOffsetsByTimestampStrategy", "latest")  # none since then: nothing to read
                .option("includeHeaders", "true")
                .load()
                .where(F.exists("headers", lambda h: (h["key"] == TXN_HEADER) & (h["value"].cast("string") == marker)))
                .select(F.filter("headers", lambda h: h["key"] == ROW_HEADER)[0]["value"].cast("string").alias("_written"))
            )
            rows = rows.join(written, row == written["_written"], "left_anti")
        headers = [(TXN_HEADER, F.lit(marker)), (ROW_HEADER, row)]
        (
            rows.select(
                F.col(key).cast("string").alias("key"),
                F.to_json(F.struct("*")).alias("value"),
                F.array(*[F.struct(F.lit(h).alias("key"), v.cast("binary").alias("value")) for h, v in headers]).alias("headers"),
            )
            .write.format("kafka")
            .options(**options)
            .option("topic", name)
            .save()
        )
    except Exception as exc:  # noqa: BLE001 - Spark's Kafka errors come in many types; say which destination
        raise PublishError(f"kafka destination {bootstrap} topic {name}: {first_line(exc)[:300]}") from exc


def read(bootstrap: str, name: str, query: str | None = None, timeout: float = 10.0) -> list[tuple[str, dict]]:
    """(key, value) of every record of a topic (partition 0, from the start), or of those a
    stream's query wrote (by their TXN_HEADER): what a downstream reader sees."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"lakehouse-read-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(name, 0), timeout=timeout)
        consumer.assign([TopicPartition(name, 0, low)])
        found, offset = [], low
        while offset < high:
            message = consumer.poll(timeout)
            if message is None or message.error() is not None:
                raise PublishError(
                    f"kafka destination {bootstrap}: reading topic {name} failed at offset {offset}: "
                    f"{message.error() if message is not None else 'no record within the timeout'}"
                )
            position = message.offset()
            assert position is not None, "a consumed record has its offset"
            offset = position + 1
            txn = _text(dict(message.headers() or []).get(TXN_HEADER))
            if query is None or txn.startswith(f"{query}:"):
                key, value = message.key(), message.value()
                assert key is not None and value is not None, "write() gives every record a key and a value"
                found.append((key.decode(), json.loads(value)))
        return found
    finally:
        consumer.close()


def _text(header: str | bytes | None) -> str:
    """A record header's value as text ("" when it has none)."""
    return header.decode() if isinstance(header, bytes) else header or ""
