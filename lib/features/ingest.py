"""Ingestion: each source of conf/sources.yml into its raw Delta table `<raw_catalog>.raw.<name>`.

A source is read (lib.features.readers), its type overrides applied, its timestamp parsed (a
date: midnight), its rows limited to the window [start, end) and its id checked or generated.
A row that does not fit is one SourceDataError line naming the source and the column, raised
before any table is written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lib.core.config.sources import GeneratedId, Source, load_sources
from lib.core.errors import SourceDataError, TableNotFoundError
from lib.features import readers
from lib.platform.catalog import Lakehouse

_DATE_TIME = ("date", "string")  # what a timestamp column may be read as, and is cast from
# Reader options naming a text timestamp's layout (Spark datetime patterns, as Spark's CSV reader takes
# them): a text timestamp that Spark's cast does not read is parsed with them (e.g. 2012/01/31).
_LAYOUTS = ("timestampFormat", "dateFormat")
_CODE = (Path(__file__), Path(readers.__file__))  # a change here re-ingests


def read_source(lakehouse: Lakehouse, name: str, source: Source, start: dt.date, end: dt.date) -> DataFrame:
    """The source's rows in [start, end), typed and checked: what its raw table holds."""
    where = f"source {name} ({source.location()})"
    df = _typed(readers.read(lakehouse, source, start, end), source, where)
    if source.day is not None:
        day = F.expr(source.day)
        df = df.filter((day >= F.lit(start)) & (day < F.lit(end)))
    else:
        ts = F.col(source.timestamp)
        df = df.filter((ts >= F.lit(_midnight(start))) & (ts < F.lit(_midnight(end))))
    return _with_id(df, source.id, where)


def ingest(lakehouse: Lakehouse, start: dt.date, end: dt.date, sources: dict[str, Source] | None = None) -> dict[str, int]:
    """Load every source (default: conf/sources.yml) for [start, end) into its raw table; returns rows per table.

    Each table is replaced in one Delta transaction, so a re-run is idempotent and a failed
    run leaves the previous version in place. A table whose newest commit was made from the
    same source, days and code is left as it is: a file source is known by its bytes, a delta
    source by its version; a jdbc source is read each run and known by its rows (their count and
    hash). An environment that reads another catalog's raw data (dev reads prod's) ingests
    nothing: it checks that the tables are there.
    """
    sources = load_sources() if sources is None else sources
    env = lakehouse.env
    tables = {name: env.raw_table(name) for name in sources}
    if env.raw_catalog != env.catalog:
        missing = [t for t in tables.values() if not lakehouse.exists(t)]
        if missing:
            raise TableNotFoundError(
                f"{', '.join(missing)} not found: {env.name} reads raw data from catalog {env.raw_catalog}, "
                f"which only its own environment ingests (python run_pipeline.py --env {env.raw_catalog} --job ingest)"
            )
        return {t: lakehouse.read(t).count() for t in tables.values()}
    rows: dict[str, int] = {}
    stale: dict[str, tuple[DataFrame, str, int]] = {}
    # Read and check every source before the first write: bad data then changes no table. (Each
    # table is its own Delta transaction; the set is not one.)
    for name, source in sources.items():
        known = _fingerprint(lakehouse, name, source, start, end)
        if known is not None and _current(lakehouse, tables[name], known, rows):
            continue
        df = read_source(lakehouse, name, source, start, end)
        # A jdbc source's rows are known by their hash (summed as a decimal: a long would overflow).
        content = F.sum(F.xxhash64(*df.columns).cast("decimal(38,0)")) if known is None else F.lit(None)
        count, content = df.agg(F.count(F.lit(1)), content.cast("string")).collect()[0]  # an aggregate: one row
        made = known or _digest(name, source, start, end, [f"{count} {content}".encode()])
        if known is None and _current(lakehouse, tables[name], made, rows):
            continue
        stale[name] = (df, made, int(count))
    for name, (df, made, count) in stale.items():
        lakehouse.write(df, tables[name], mode="overwrite", stamp={"source": made, "rows": count})
        rows[tables[name]] = count
    return {t: rows[t] for t in tables.values()}


def _current(lakehouse: Lakehouse, table: str, fingerprint: str, rows: dict[str, int]) -> bool:
    recorded = lakehouse.stamp(table)
    if recorded.get("source") != fingerprint or not isinstance(recorded.get("rows"), int):
        return False
    rows[table] = recorded["rows"]
    print(f"{table} is current (the same source, days and code): not rewritten", flush=True)
    return True


def _typed(df: DataFrame, source: Source, where: str) -> DataFrame:
    """The columns cast to their overrides and the timestamp column to a timestamp; a non-null
    value that does not cast is an error."""
    types = dict(df.dtypes)
    for column in [*source.types, source.timestamp]:
        if column not in types:
            raise SourceDataError(f"{where}: column {column} not found (it has {', '.join(df.columns)})")
    casts = {column: kind for column, kind in source.types.items() if kind != types[column]}
    read_as = casts.get(source.timestamp, types[source.timestamp])
    if read_as in _DATE_TIME:
        casts[source.timestamp] = "timestamp"  # a date (or a date-only string) is midnight
    elif not read_as.startswith("timestamp"):
        raise SourceDataError(
            f"{where}: column {source.timestamp} is {read_as}, not a timestamp or a date: "
            "override its type (types: {" + source.timestamp + ": timestamp})"
        )
    if not casts:
        return df
    cast = {c: _try_cast(c, source.types.get(c, "timestamp"), casts[c]) for c in casts}
    layouts = [source.options[k] for k in _LAYOUTS if k in source.options]
    if read_as == "string" and layouts:  # text in the layout the options name, whichever reader read it
        cast[source.timestamp] = F.coalesce(cast[source.timestamp], *[_parsed(source.timestamp, f) for f in layouts])
    bad = {c: F.col(c).isNotNull() & cast[c].isNull() for c in casts}
    found = df.agg(
        *[F.count(F.when(bad[c], 1)).alias(f"n{i}") for i, c in enumerate(casts)],
        *[F.first(F.when(bad[c], F.col(c).cast("string")), ignorenulls=True).alias(f"e{i}") for i, c in enumerate(casts)],
    ).collect()[0]  # an aggregate: one row
    for i, column in enumerate(casts):
        if found[f"n{i}"]:
            what = "an unparsable timestamp" if column == source.timestamp else f"a value that is not a {casts[column]}"
            if column == source.timestamp and column in source.types and source.types[column] != "timestamp":
                what = f"a value that is not a {source.types[column]}"
            raise SourceDataError(f"{where}: column {column}: {found[f'n{i}']} rows with {what}, e.g. {found[f'e{i}']!r}")
    return df.select(*[cast[c].alias(c) if c in cast else F.col(c) for c in df.columns])


def _parsed(column: str, layout: str) -> Column:
    """`column` parsed as a timestamp in a Spark datetime pattern; null where it does not fit."""
    return F.expr(f"try_to_timestamp(`{column}`, '{layout.replace(chr(39), chr(92) + chr(39))}')")


def _try_cast(column: str, first: str, then: str) -> Column:
    """`column` cast to `first`, then (a timestamp column overridden as a date) to `then`; null where it fails."""
    expr = f"try_cast(`{column}` AS {first})"
    return F.expr(expr if first == then else f"try_cast({expr} AS {then})")


def _with_id(df: DataFrame, id_: str | GeneratedId | None, where: str) -> DataFrame:
    """The id column checked (or generated first: a hash of the listed columns); a duplicate is an error."""
    if id_ is None:
        return df
    if isinstance(id_, GeneratedId):
        unknown = [c for c in id_.from_ if c not in df.columns]
        if unknown or id_.generate in df.columns:
            problem = f"column {unknown[0]} not found" if unknown else f"column {id_.generate} exists already"
            raise SourceDataError(f"{where}: id {id_.generate}: {problem} (it has {', '.join(df.columns)})")
        hashed = F.substring(F.sha2(F.to_json(F.struct(*id_.from_)), 256), 1, 16)
        df, column = df.select(hashed.alias(id_.generate), *df.columns), id_.generate
        what = f"column {column} (generated from {', '.join(id_.from_)})"
    else:
        if id_ not in df.columns:
            raise SourceDataError(f"{where}: id column {id_} not found (it has {', '.join(df.columns)})")
        column, what = id_, f"column {id_}"
    twice = df.groupBy(column).count().filter("count > 1")
    found = twice.agg(F.count(F.lit(1)).alias("n"), F.min(F.col(column).cast("string")).alias("e")).collect()[0]
    if found["n"]:
        raise SourceDataError(f"{where}: {what}: {found['n']} ids appear more than once, e.g. {found['e']!r}")
    return df


def _fingerprint(lakehouse: Lakehouse, name: str, source: Source, start: dt.date, end: dt.date) -> str | None:
    """What a raw table is made of, known before reading: the source files' bytes (or a delta
    source's version), the source's declaration, the days and this code. None for jdbc."""
    if source.format == "jdbc":
        return None
    if source.format == "delta":
        return _digest(name, source, start, end, [str(readers.delta_version(lakehouse, source)).encode()])
    return _digest(name, source, start, end, [p.read_bytes() for p in readers.files(source)])


def _digest(name: str, source: Source, start: dt.date, end: dt.date, parts: list[bytes]) -> str:
    # The derived `columns` are added by the features task: changing them re-ingests nothing.
    declared = source.model_dump_json(exclude={"columns"})
    digest = hashlib.sha256(f"{name} {start} {end} {declared}".encode())
    for part in [*parts, *(p.read_bytes() for p in _CODE)]:
        digest.update(part)
    return digest.hexdigest()[:16]


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time())
