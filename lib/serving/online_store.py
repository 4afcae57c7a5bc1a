"""The online store: feature tables published from Delta into an embedded SQLite file, for
point lookups at serving time (the Databricks online table stand-in).

Publishing copies each table whole into a new SQLite table and swaps it in with one
transaction, so lookups never see a half-published table. A lookup gives each request row
the newest feature row at or before its timestamp key (within the lookback), the same rule
as `feature_store.as_of_join` uses offline, so online and batch scores agree.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import uuid
from contextlib import closing
from pathlib import Path

import pandas as pd

from lib.errors import LakehouseError
from lib.feature_store import PRIMARY_KEYS, TIMESTAMP_KEY, FeatureLookup

_TS = "%Y-%m-%d %H:%M:%S"
_META = "_online_tables"


def store_path(home: Path, catalog: str) -> Path:
    return home / "online" / f"{catalog}.db"


def _online_name(table: str) -> str:
    return table.replace(".", "__")


def publish(lakehouse, lookups: list[FeatureLookup], path: Path) -> dict[str, int]:
    """Copy every table the lookups read into the store; returns rows published per table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    published = {}
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode=WAL")  # lookups read on while a table is being published
        db.execute(f"CREATE TABLE IF NOT EXISTS {_META} (name TEXT PRIMARY KEY, primary_keys TEXT, "
                   "timestamp_key TEXT, rows INTEGER, published_at TEXT)")
    for table in sorted({lk.table for lk in lookups}):
        props = lakehouse.properties(table)
        keys, ts = [k for k in props.get(PRIMARY_KEYS, "").split(",") if k], props.get(TIMESTAMP_KEY)
        if not keys or not ts:
            raise LakehouseError(f"{table} has no primary keys / timestamp key properties: run the features task")
        needed = dict.fromkeys([*keys, ts, *(f for lk in lookups if lk.table == table for f in lk.features)])
        rows = lakehouse.read(table).select(*needed).toPandas()
        rows[ts] = pd.to_datetime(rows[ts]).dt.strftime(_TS)
        name, staged = _online_name(table), f"{_online_name(table)}__{uuid.uuid4().hex[:8]}"
        with closing(sqlite3.connect(path, isolation_level=None, timeout=30)) as db:
            db.execute("PRAGMA synchronous = NORMAL")
            for (left,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB ?",
                                      (f"{name}__*",)).fetchall():
                db.execute(f'DROP TABLE "{left}"')  # a copy an interrupted publish left behind
            db.execute("BEGIN")  # one transaction for the copy, not one per row
            rows.to_sql(staged, db, index=False)
            if db.in_transaction:
                db.execute("COMMIT")
            db.execute(f'CREATE INDEX "{staged}_key" ON "{staged}" ({", ".join(f"[{k}]" for k in keys)}, [{ts}])')
            db.execute("BEGIN IMMEDIATE")  # the swap is one transaction: readers see old or new
            db.execute(f'DROP TABLE IF EXISTS "{name}"')
            db.execute(f'ALTER TABLE "{staged}" RENAME TO "{name}"')
            db.execute(f"INSERT OR REPLACE INTO {_META} VALUES (?, ?, ?, ?, ?)",
                       (name, ",".join(keys), ts, len(rows), dt.datetime.now(dt.timezone.utc).isoformat()))
            db.execute("COMMIT")
        published[table] = len(rows)
    return published


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
        """The spine with each lookup's features added (NaN / None where nothing is found)."""
        out = spine.copy()
        db = self._db()
        for lk in lookups:
            name = _online_name(lk.table)
            keys, ts = db.execute(f"SELECT primary_keys, timestamp_key FROM {_META} WHERE name = ?", (name,)).fetchone()
            where = " AND ".join(f"[{k}] = ?" for k in keys.split(",")) + f" AND [{ts}] <= ?"
            if lk.lookback_hours is not None:
                where += f" AND [{ts}] >= ?"
            query = (f'SELECT {", ".join(f"[{c}]" for c in lk.features)} FROM "{name}" WHERE {where} '
                     f"ORDER BY [{ts}] DESC LIMIT 1")
            at = pd.to_datetime(out[lk.timestamp_lookup_key])
            args = [out[k].tolist() for k in lk.lookup_key]
            found: dict[tuple, tuple] = {}
            rows = []
            for i, when in enumerate(at):
                key = (*[a[i] for a in args], when)
                if key not in found:
                    params = [*key[:-1], when.strftime(_TS)]
                    if lk.lookback_hours is not None:
                        params.append((when - dt.timedelta(hours=lk.lookback_hours)).strftime(_TS))
                    found[key] = db.execute(query, params).fetchone() or (None,) * len(lk.features)
                rows.append(found[key])
            values = pd.DataFrame(rows, columns=list(lk.features), index=out.index)
            for c in lk.features:
                out[c] = values[c].to_numpy()
        return out


def publish_for(lakehouse, ref, path: Path) -> dict[str, int]:
    """Publish the tables that a registered version's packaged lookups read (none for None)."""
    from mlflow.models import Model

    if ref is None:
        return {}
    packaged = (Model.load(ref.uri).metadata or {}).get("feature_lookups") or []
    return publish(lakehouse, [FeatureLookup.from_dict(d) for d in packaged], path)
