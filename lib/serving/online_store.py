"""The online store: feature tables published from Delta into an embedded SQLite file, for
point lookups at serving time (the Databricks online table stand-in).

Publishing copies each table whole into a new SQLite table and swaps it in with one
transaction, so lookups never see a half-published table. The store records which Delta
version and columns it holds of each table, so a publish re-copies only the tables that
changed. A lookup gives each request row the newest feature row at or before its timestamp
key (within the lookback), the same rule as `feature_store.as_of_join` uses offline, so
online and batch scores agree.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
import time
import uuid
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lib.core.errors import LakehouseError
from lib.features.store import PRIMARY_KEYS, TIMESTAMP_KEY, FeatureLookup

MISSES = "_lookup_misses"  # a column lookup() adds: per row, the lookups that found nothing
_TS = "%Y-%m-%d %H:%M:%S"  # lookups compare these strings, so every stored timestamp has this form
_META = "_online_tables"
PREDICTIONS = "_predictions"  # batch inference's predictions by key (publish_predictions)
# Columns added to _META after its first release; a store made before has rows without them.
_META_ADDED = {"delta_version": "INTEGER", "columns": "TEXT"}


@dataclass(frozen=True)
class Published:
    """One table's state in the store after a publish."""

    rows: int
    version: int  # the Delta version the rows were copied from
    skipped: bool  # True when the store already held this version of these columns


def store_path(home: Path, catalog: str) -> Path:
    return home / "online" / f"{catalog}.db"


def _online_name(table: str) -> str:
    return table.replace(".", "__")


def publish(lakehouse, lookups: list[FeatureLookup], path: Path, force: bool = False) -> dict[str, Published]:
    """Bring every table the lookups read up to date in the store, copying only what changed.

    A table is skipped when the store holds its current Delta version with the same columns
    (a table deleted and rewritten up to the same version number looks unchanged: use force).

    Args:
        lakehouse: where the Delta tables are.
        lookups: the lookups to serve; each table is published with the columns they read.
        path: the SQLite store file (created if missing).
        force: copy every table even if unchanged.

    Returns:
        What the store holds of each table, and whether it was skipped.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    published = {}
    with closing(sqlite3.connect(path, isolation_level=None, timeout=30)) as db:
        _prepare(db)
        for table in sorted({lk.table for lk in lookups}):
            began, name = time.perf_counter(), _online_name(table)
            features = [f for lk in lookups if lk.table == table for f in lk.features]
            _drop_leftovers(db, name)
            version = lakehouse.version(table)
            held = None if force else _held(db, name, version, features)
            if held is not None:
                published[table] = Published(held, version, skipped=True)
                print(f"online store: {table} unchanged at version {version} ({held:,} rows)", flush=True)
                continue
            keys, ts = _keys(lakehouse, table)
            columns = _columns(keys, ts, features)
            rows, kinds = _to_sqlite(lakehouse.read(table, version=version).select(*columns).toArrow(), lakehouse)
            _copy_and_swap(db, name, rows, kinds, keys, ts, version, columns)
            published[table] = Published(rows.num_rows, version, skipped=False)
            print(
                f"online store: {table} version {version} published, {rows.num_rows:,} rows in "
                f"{time.perf_counter() - began:.1f} s",
                flush=True,
            )
    return published


def _prepare(db: sqlite3.Connection) -> None:
    """WAL mode and the meta table, adding the columns a store from older code lacks."""
    db.execute("PRAGMA journal_mode=WAL")  # lookups read on while a table is being published
    db.execute("PRAGMA synchronous = NORMAL")  # WAL stays consistent; a power cut may lose the last publish
    db.execute("BEGIN IMMEDIATE")  # one publisher at a time checks and migrates the meta table
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {_META} (name TEXT PRIMARY KEY, primary_keys TEXT, "
        "timestamp_key TEXT, rows INTEGER, published_at TEXT)"
    )
    have = {row[1] for row in db.execute(f"PRAGMA table_info({_META})")}
    for column, kind in _META_ADDED.items():
        if column not in have:  # old rows get NULL: an unknown version, so they are re-copied
            db.execute(f"ALTER TABLE {_META} ADD COLUMN {column} {kind}")
    db.execute("COMMIT")


def _drop_leftovers(db: sqlite3.Connection, name: str) -> None:
    for (left,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB ?", (f"{name}__*",)).fetchall():
        db.execute(f'DROP TABLE "{left}"')  # a copy an interrupted publish left behind


def _held(db: sqlite3.Connection, name: str, version: int, features: list[str]) -> int | None:
    """The rows the store holds of this version of the table with these columns, else None."""
    held = db.execute(
        f"SELECT primary_keys, timestamp_key, rows, delta_version, columns FROM {_META} WHERE name = ?", (name,)
    ).fetchone()
    if held is None or held[3] != version:  # never published, older code (NULL), or a new version
        return None
    # Keys are table properties, which only a new Delta version changes: at the same version the
    # recorded keys are current, so an unchanged table needs no Spark at all.
    keys, ts, rows, _, columns = held
    return rows if json.loads(columns) == _columns(keys.split(","), ts, features) else None


def _keys(lakehouse, table: str) -> tuple[list[str], str]:
    props = lakehouse.properties(table)
    keys, ts = [k for k in props.get(PRIMARY_KEYS, "").split(",") if k], props.get(TIMESTAMP_KEY)
    if not keys or not ts:
        raise LakehouseError(f"{table} has no primary keys / timestamp key properties: run the features task")
    return keys, ts


def _columns(keys: list[str], ts: str, features: list[str]) -> list[str]:
    """The columns to publish, in a stable order (so a recorded list compares equal)."""
    return sorted(set([*keys, ts, *features]))


def _to_sqlite(data: pa.Table, lakehouse) -> tuple[pa.Table, list[str]]:
    """The columns as SQLite will store them, and the type to declare for each."""
    kinds, columns = [], []
    for field, col in zip(data.schema, data.columns):
        kind = "TEXT"
        if pa.types.is_timestamp(field.type):
            if field.type.tz is not None:  # Arrow gives UTC instants; pandas (and Spark) show session wall clock
                zone = lakehouse.spark.conf.get("spark.sql.session.timeZone")
                col = pc.local_timestamp(col.cast(pa.timestamp(field.type.unit, tz=zone)))
            # Arrow's cast to text gives exactly _TS once sub-seconds are floored away, for the
            # whole column at once (the old per-row strftime was a large part of a copy).
            col = pc.floor_temporal(col, unit="second").cast(pa.timestamp("s")).cast(pa.string())
        elif pa.types.is_date(field.type):
            col = col.cast(pa.string())
        elif pa.types.is_boolean(field.type):
            kind = "INTEGER"
        elif pa.types.is_integer(field.type):
            # pandas made an integer column with nulls float; REAL affinity keeps its values floats.
            kind = "REAL" if col.null_count else "INTEGER"
        elif pa.types.is_floating(field.type) or pa.types.is_decimal(field.type):
            kind, col = "REAL", col.cast(pa.float64())  # sqlite3 cannot bind a Decimal
        kinds.append(kind)
        columns.append(col)
    return pa.Table.from_arrays(columns, names=data.column_names), kinds


def _copy_and_swap(
    db: sqlite3.Connection,
    name: str,
    rows: pa.Table,
    kinds: list[str],
    keys: list[str],
    ts: str,
    version: int,
    columns: list[str],
) -> None:
    """Bulk-load rows into a staged table, index it, then swap it in and record meta at once."""
    staged = f"{name}__{uuid.uuid4().hex[:8]}"
    declared = ", ".join(f"[{c}] {kind}" for c, kind in zip(rows.column_names, kinds))
    db.execute("BEGIN")  # one transaction for the copy, not one per row
    db.execute(f'CREATE TABLE "{staged}" ({declared})')
    insert = f'INSERT INTO "{staged}" VALUES ({", ".join("?" * rows.num_columns)})'
    for batch in rows.to_batches(max_chunksize=65_536):  # bounded memory for the Python rows
        db.executemany(insert, zip(*(col.to_pylist() for col in batch.columns)))
    db.execute(f'CREATE INDEX "{staged}_key" ON "{staged}" ({", ".join(f"[{k}]" for k in keys)}, [{ts}])')
    db.execute("COMMIT")
    db.execute("BEGIN IMMEDIATE")  # the swap is one transaction: readers see old or new
    db.execute(f'DROP TABLE IF EXISTS "{name}"')
    db.execute(f'ALTER TABLE "{staged}" RENAME TO "{name}"')
    db.execute(
        f"INSERT OR REPLACE INTO {_META} (name, primary_keys, timestamp_key, rows, published_at, "
        f"{', '.join(_META_ADDED)}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (name, ",".join(keys), ts, rows.num_rows, dt.datetime.now(dt.UTC).isoformat(), version, json.dumps(columns)),
    )
    db.execute("COMMIT")


class OnlineStore:
    """Read side, shared by serving threads (one SQLite connection per thread)."""

    def __init__(self, path: Path):
        if not path.exists():
            raise LakehouseError(f"online store {path} does not exist: the serving job publishes it")
        self.path = path
        self._local = threading.local()

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            db.execute("PRAGMA query_only = ON")
        return db

    def check(self, lookups: list[FeatureLookup]) -> None:
        """Raise one line if a lookup's table was never published."""
        names = {row[0] for row in self._db().execute(f"SELECT name FROM {_META}")}
        missing = [lk.table for lk in lookups if _online_name(lk.table) not in names]
        if missing:
            raise LakehouseError(f"online store {self.path} lacks {', '.join(missing)}: run the serving job to publish")

    def lookup(self, spine: pd.DataFrame, lookups: list[FeatureLookup]) -> pd.DataFrame:
        """The spine with each lookup's features added (NaN / None where nothing is found), and
        MISSES: per row, how many lookups found no feature row for its keys."""
        out = spine.copy()
        misses = np.zeros(len(out), dtype="int64")
        db = self._db()
        for lk in lookups:
            name = _online_name(lk.table)
            keys, ts = db.execute(f"SELECT primary_keys, timestamp_key FROM {_META} WHERE name = ?", (name,)).fetchone()
            where = " AND ".join(f"[{k}] = ?" for k in keys.split(",")) + f" AND [{ts}] <= ?"
            if lk.lookback_hours is not None:
                where += f" AND [{ts}] >= ?"
            query = f'SELECT {", ".join(f"[{c}]" for c in lk.features)} FROM "{name}" WHERE {where} ORDER BY [{ts}] DESC LIMIT 1'
            at = pd.to_datetime(out[lk.timestamp_lookup_key])
            args = [out[k].tolist() for k in lk.lookup_key]
            found: dict[tuple, tuple | None] = {}
            rows = []
            for i, when in enumerate(at):
                key = (*[a[i] for a in args], when)
                if key not in found:
                    params = [*key[:-1], when.strftime(_TS)]
                    if lk.lookback_hours is not None:
                        params.append((when - dt.timedelta(hours=lk.lookback_hours)).strftime(_TS))
                    found[key] = db.execute(query, params).fetchone()
                misses[i] += found[key] is None
                rows.append(found[key] or (None,) * len(lk.features))
            values = pd.DataFrame(rows, columns=list(lk.features), index=out.index)
            for c in lk.features:
                out[c] = values[c].to_numpy()
        out[MISSES] = misses
        return out


def publish_predictions(path: Path, frame: pd.DataFrame, key: str, timestamp: str, start: dt.date, end: dt.date) -> int:
    """Replace the predictions of the period [start, end) of `timestamp` with the frame's rows,
    each under its `key`, in one transaction; returns the rows the store holds for the period."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(frame.to_json(orient="records", date_format="iso", double_precision=15))  # NaN -> null
    times = pd.to_datetime(frame[timestamp]).dt.strftime(_TS).tolist()
    lo, hi = pd.Timestamp(start).strftime(_TS), pd.Timestamp(end).strftime(_TS)
    with closing(sqlite3.connect(path, timeout=30, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode=WAL")  # reads go on during a publish
        db.execute("BEGIN IMMEDIATE")
        db.execute(f"CREATE TABLE IF NOT EXISTS {PREDICTIONS} (key TEXT PRIMARY KEY, at TEXT, row TEXT)")
        db.execute(f"DELETE FROM {PREDICTIONS} WHERE at >= ? AND at < ?", (lo, hi))
        db.executemany(
            f"INSERT OR REPLACE INTO {PREDICTIONS} VALUES (?, ?, ?)",
            ((str(r[key]), at, json.dumps(r)) for r, at in zip(rows, times)),
        )
        held = db.execute(f"SELECT count(*) FROM {PREDICTIONS} WHERE at >= ? AND at < ?", (lo, hi)).fetchone()[0]
        db.execute("COMMIT")
    return held


def prediction(path: Path, key: str) -> dict[str, Any] | None:
    """The newest published prediction of `key` (a spine id), as the predictions table holds
    it (one row as a dict); None if none was published. The read path of applications."""
    if not Path(path).exists():
        raise LakehouseError(f"online store {path} does not exist: run batch inference with publish.online enabled")
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
        try:
            found = db.execute(f"SELECT row FROM {PREDICTIONS} WHERE key = ?", (str(key),)).fetchone()
        except sqlite3.OperationalError:  # no predictions table yet
            raise LakehouseError(
                f"online store {path} holds no predictions: run batch inference with publish.online enabled"
            ) from None
    return None if found is None else json.loads(found[0])


def publish_for(lakehouse, ref, path: Path) -> dict[str, Published]:
    """Publish the tables that a registered version's packaged lookups read (none for None)."""
    from mlflow.models import Model

    if ref is None:
        return {}
    packaged = (Model.load(ref.uri).metadata or {}).get("feature_lookups") or []
    return publish(lakehouse, [FeatureLookup.from_dict(d) for d in packaged], path)
