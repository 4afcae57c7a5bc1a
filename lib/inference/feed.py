"""The replay source of streaming inference: the rows of the spine's table (conf/model.yml
`spine.table`, e.g. a year's scheduled events) arriving in the stream's source table
(`inference.streaming.source_table`), in event-time order, at a chosen speed.

An arriving row carries its keys as text (as a feed delivers them: model.yml `keys`), stamped
with the time it landed (`arrived_at`, the event time of the stream's latency).

    python -m lib.inference.feed --env prod --from 2013-10-01 --to 2013-10-08 --every 1h --speed 3600
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lib.core import config, names
from lib.core.config.model import ModelConfig
from lib.core.errors import ConfigError, LakehouseError
from lib.features.tables import in_window
from lib.platform import registry
from lib.platform.catalog import Lakehouse
from lib.platform.spark.builder import to_pandas
from lib.platform.spark.session import get_spark

ARRIVED = "arrived_at"  # when the row landed in the source table (the event time of latency)
_TEXT_TIME = "yyyy-MM-dd HH:mm:ss"


@dataclass(frozen=True)
class Incoming:
    """The stream's source table and what an arriving row carries, as values (they travel pickled
    with the stream's query to the Spark server)."""

    table: str  # in the environment's schema
    id: str  # the spine's id: Kafka's key
    timestamp: str  # the spine's event time, as text in the table
    fields: tuple[str, ...]  # what an arriving row carries, as text: model.yml `keys`

    @property
    def quarantine(self) -> str:
        """Where malformed arrivals are set aside."""
        return names.quarantine_table(self.table)


def incoming(model_cfg: ModelConfig) -> Incoming:
    """The stream's source as model.yml declares it."""
    spine = model_cfg.spine
    return Incoming(model_cfg.inference.streaming.source_table, spine.id, spine.timestamp, tuple(model_cfg.keys))


def scheduled(rows: DataFrame, source: Incoming, start: dt.datetime, end: dt.datetime) -> DataFrame:
    """The spine rows whose event time falls in [start, end) as a feed delivers them: their keys, as text."""
    return in_window(rows, source.timestamp, start, end).select(
        *[
            F.date_format(c, _TEXT_TIME).alias(c) if c == source.timestamp else F.col(c).cast("string").alias(c)
            for c in source.fields
        ]
    )


def replay(
    lakehouse: Lakehouse,
    model_cfg: ModelConfig,
    start: dt.datetime,
    end: dt.datetime,
    every: dt.timedelta,
    speed: float,
    say: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Append the spine rows whose event time falls in [start, end) to the stream's source table in
    event-time order, one commit per `every` of schedule; returns the rows appended.

    speed: schedule seconds per real second (3600: an hour of departures each second); 0 appends
    as fast as Spark commits.
    """
    if every <= dt.timedelta(0) or speed < 0 or end <= start:
        raise ConfigError(f"feed: need start < end, every > 0 and speed >= 0 (got {start} .. {end}, {every}, {speed})")
    env, source = lakehouse.env, incoming(model_cfg)
    at_col = source.timestamp
    rows = to_pandas(scheduled(lakehouse.read(env.table(model_cfg.spine.table)), source, start, end).orderBy(at_col))
    began, appended, at = time.monotonic(), 0, start
    while at < end:
        upto = min(at + every, end)
        chunk = rows[(rows[at_col] >= f"{at:%Y-%m-%d %H:%M:%S}") & (rows[at_col] < f"{upto:%Y-%m-%d %H:%M:%S}")]
        if speed:
            sleep(max(0.0, (upto - start).total_seconds() / speed - (time.monotonic() - began)))
        if len(chunk):
            append(lakehouse, source, lakehouse.spark.createDataFrame(chunk))
            appended += len(chunk)
        say(
            f"feed: {len(chunk):>5} rows of {at:%Y-%m-%d %H:%M} .. {upto:%H:%M} appended "
            f"({appended} in all, {time.monotonic() - began:.1f}s)"
        )
        at = upto
    return appended


def append(lakehouse: Lakehouse, source: Incoming, rows: DataFrame) -> None:
    """Append rows (the source's fields, as text) to the source table, stamped with their arrival time."""
    text = [F.col(c).cast("string").alias(c) for c in source.fields]
    lakehouse.write(rows.select(*text, F.current_timestamp().alias(ARRIVED)), lakehouse.env.table(source.table), mode="append")


def main(argv: list[str] | None = None) -> int:
    """`python -m lib.inference.feed --env prod --from 2013-10-01 --to 2013-10-02 [--every 1h] [--speed 3600]`:
    append the spine table's rows of the period to the stream's source table in event-time order (a replay source)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m lib.inference.feed", description=main.__doc__)
    parser.add_argument("--env", default="prod")
    parser.add_argument("--from", dest="start", required=True, help="first scheduled day, YYYY-MM-DD")
    parser.add_argument("--to", dest="end", required=True, help="first day not fed, YYYY-MM-DD")
    parser.add_argument("--every", default="1h", help="schedule time per commit: Nm, Nh or Nd (default 1h)")
    parser.add_argument(
        "--speed", type=float, default=0.0, help="schedule seconds per real second, e.g. 3600; 0 (default) as fast as it can"
    )
    args = parser.parse_args(argv)
    registry.no_telemetry()
    try:
        env = config.load_env(args.env)
        start_day, end_day = _day(args.start, "--from"), _day(args.end, "--to")
        every = _duration(args.every)
        model_cfg = config.load_model_config()
        lakehouse = Lakehouse(get_spark("feed", env=env), env)
        replay(
            lakehouse,
            model_cfg,
            dt.datetime.combine(start_day, dt.time()),
            dt.datetime.combine(end_day, dt.time()),
            every,
            args.speed,
        )
    except LakehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("feed: stopped (every commit made is whole)")
        return 130
    return 0


def _day(text: str, flag: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{flag} {text!r} is not a date: use YYYY-MM-DD") from None


def _duration(text: str) -> dt.timedelta:
    match = re.fullmatch(r"(\d+)([mhd])", text)
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"--every must look like 30m, 1h or 1d, not {text!r}")
    return dt.timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]: int(match.group(1))})


if __name__ == "__main__":
    raise SystemExit(main())
