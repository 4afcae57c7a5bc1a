import datetime as dt
import time

from lib.core.config import load_env
from lib.platform.catalog import Lakehouse
from lib.serving.capture import CaptureWriter, row

TABLE = "staging.flights.ep_payload"


def test_a_failed_write_keeps_its_rows_and_the_next_write_uses_a_new_lakehouse(spark, lakehouse):
    refused = Lakehouse(spark, load_env("dev"))  # dev may not write staging's tables: the write fails
    current = [refused]
    writer = CaptureWriter(TABLE, lambda: current[0], flush_seconds=0.2, after_failure=lambda: current.__setitem__(0, lakehouse))
    at = dt.datetime(2013, 3, 1, 12, 0)
    writer.offer(row("r1", None, at, 200, 3, '{"dataframe_records": []}', '{"predictions": []}', "m-1", "test"))
    deadline = time.monotonic() + 60
    while writer.counters["capture_rows_written"] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    writer.close()
    assert writer.counters == {"capture_rows_written": 1, "capture_rows_dropped": 0, "capture_write_failures": 1}
    assert [(r["databricks_request_id"], r["status_code"]) for r in lakehouse.read(TABLE).collect()] == [("r1", 200)]
