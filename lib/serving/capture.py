"""Inference tables: every request and response of an endpoint, appended to a Delta table.

Off the request path: the request handler only puts a row on a bounded queue (dropping it,
counted, if the queue is full: logging is best effort, as on Databricks). A writer thread
appends what queued every `flush_seconds` as one Delta transaction. Closing the writer
drains the queue, so a clean shutdown loses nothing. Spark is attached at the first write.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable

from lib.platform.catalog import Lakehouse

log = logging.getLogger("lib.serving")

SCHEMA = (
    "databricks_request_id string, client_request_id string, request_date date, "
    "request_time timestamp, status_code int, sampling_fraction double, execution_duration_ms bigint, "
    "request string, response string, served_entity_id string, logging_error_codes array<string>, "
    "requester string, feature_lookup_misses int"
)


COLUMNS = [part.split()[0] for part in SCHEMA.split(", ")]


def row(
    request_id: str,
    client_request_id: str | None,
    at: dt.datetime,
    status: int,
    duration_ms: int,
    request: str | None,
    response: str | None,
    served_entity: str | None,
    requester: str,
    lookup_misses: int = 0,
) -> tuple:
    """One payload-table row, in SCHEMA's column order: Databricks' columns, then (ours) how many
    of the request's rows were scored although a feature lookup found nothing for their keys."""
    return (
        request_id,
        client_request_id,
        at.date(),
        at,
        status,
        1.0,
        duration_ms,
        request,
        response,
        served_entity,
        [],
        requester,
        lookup_misses,
    )


class CaptureWriter:
    """Appends captured rows to one Delta table from a background thread."""

    def __init__(
        self,
        table: str,
        lakehouse: Callable[[], Lakehouse],
        flush_seconds: float = 5.0,
        max_queue: int = 100_000,
        after_failure: Callable[[], None] | None = None,
    ):
        """`lakehouse()` gives the Lakehouse to write with; `after_failure()` runs after a failed
        write (e.g. to attach anew, since the Spark server may have been restarted)."""
        self.table = table
        self._lakehouse = lakehouse
        self._after_failure = after_failure
        self._flush_seconds = flush_seconds
        self._queue: queue.Queue = queue.Queue(max_queue)
        self._stop = threading.Event()
        self.counters = {"capture_rows_written": 0, "capture_rows_dropped": 0, "capture_write_failures": 0}
        self._thread = threading.Thread(target=self._run, name=f"capture-{table}", daemon=True)
        self._thread.start()

    def offer(self, captured: tuple) -> None:
        try:
            self._queue.put_nowait(captured)
        except queue.Full:
            self.counters["capture_rows_dropped"] += 1

    def _take(self, limit: int) -> list[tuple]:
        rows: list[tuple] = []
        while len(rows) < limit:
            try:
                rows.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return rows

    def _run(self) -> None:
        held: list[tuple] = []
        while True:
            stopping = self._stop.wait(self._flush_seconds)
            held += self._take(self._queue.maxsize)
            if held:
                try:
                    self._write(held)
                    self.counters["capture_rows_written"] += len(held)
                    held = []
                except Exception as exc:  # keep the rows and retry at the next flush
                    self.counters["capture_write_failures"] += 1
                    if self._after_failure is not None:
                        self._after_failure()
                    log.error(
                        "capture to %s failed, %d rows kept for the next try: %s",
                        self.table,
                        len(held),
                        str(exc).splitlines()[0] if str(exc) else exc,
                    )
                    if stopping:
                        self.counters["capture_rows_dropped"] += len(held)
                        return
            if stopping and self._queue.empty():
                return

    def _write(self, rows: list[tuple]) -> None:
        import pandas as pd

        lakehouse = self._lakehouse()
        # Through pandas and Arrow: little Python work (and GIL) per row, so serving goes on.
        frame = pd.DataFrame(rows, columns=COLUMNS)
        lakehouse.write(lakehouse.spark.createDataFrame(frame, SCHEMA), self.table, mode="append")

    def close(self, timeout: float = 120.0) -> None:
        """Write everything queued, then stop."""
        self._stop.set()
        started = time.monotonic()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("capture to %s did not finish within %.0f s", self.table, time.monotonic() - started)
