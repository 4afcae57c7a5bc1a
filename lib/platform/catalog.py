"""The Unity Catalog stand-in: `catalog.schema.table` names over Delta folders.

Each catalog is a folder of the lakehouse warehouse (`<home>/warehouse/<catalog>/<schema>/
<table>`), each table a Delta table. An environment may read every catalog but write only
its own: from dev, prod tables are read-only, as the guide prescribes.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import uuid
from pathlib import Path

from lib.core import names
from lib.core.config import EnvConfig
from lib.core.errors import AccessDeniedError, ConfigError, TableNotFoundError

_PART = r"[A-Za-z][A-Za-z0-9_]*"
_NAME = re.compile(rf"^({_PART})\.({_PART})\.({_PART})$")
# Files in _delta_log whose names carry a commit number: commits (`N.json`) and checkpoints
# (`N.checkpoint.parquet`, multi-part `N.checkpoint.i.n.parquet`, v2 `N.checkpoint.<uuid>.json`).
_LOG_FILE = re.compile(r"^(\d{20})\.(?:json|checkpoint(?:\.[^.]+)*\.(?:parquet|json))$")
# The commit's userMetadata for SQL commands, which take no writer options.
_COMMIT_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
_COMMIT_FILE = re.compile(r"\d{20}\.json")  # a commit in _delta_log (not a checkpoint's JSON)


def parse_name(name: str) -> tuple[str, str, str]:
    """Split `catalog.schema.table`, refusing anything else."""
    match = _NAME.match(name) if isinstance(name, str) else None
    if not match:
        raise ConfigError(f"table name {name!r} must have the form catalog.schema.table")
    return match.group(1), match.group(2), match.group(3)


def _quote(text: str) -> str:
    """Escape text for a single-quoted Spark SQL string literal."""
    return text.replace("\\", "\\\\").replace("'", "\\'")


class Lakehouse:
    """Read and write Delta tables by three-level name, enforcing the environment's access."""

    def __init__(self, spark, env: EnvConfig):
        self.spark = spark
        self.env = env
        self.root = env.warehouse

    def path(self, name: str) -> Path:
        catalog, schema, table = parse_name(name)
        return self.root / catalog / schema / table

    def export_path(self, name: str) -> Path:
        """Where files exported from table `name` go: `<home>/exports/<catalog>/<schema>/<table>`
        (dropped with the catalog)."""
        catalog, schema, table = parse_name(name)
        return self.env.home / "exports" / catalog / schema / table

    def checkpoint_path(self, name: str) -> Path:
        """The streaming checkpoint of the query that writes table `name`:
        `<home>/checkpoints/<catalog>/<schema>/<table>` (dropped with the catalog)."""
        catalog, schema, table = parse_name(name)
        return self.env.home / "checkpoints" / catalog / schema / table

    def exists(self, name: str) -> bool:
        return (self.path(name) / "_delta_log").is_dir()

    def _missing(self, name: str) -> TableNotFoundError:
        return TableNotFoundError(f"table {name} does not exist (looked in {self.path(name)})")

    def _require(self, name: str) -> None:
        if not self.exists(name):
            raise self._missing(name)

    def read(self, name: str, version: int | None = None):
        """A DataFrame of the table's current version (or of an earlier `version`)."""
        self._require(name)
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(str(self.path(name)))

    def version(self, name: str) -> int:
        """The table's newest commit number, from the file names in its `_delta_log` (no Spark).

        Checkpoint names count too, since old commit files may have been cleaned up after one.
        """
        log = self.path(name) / "_delta_log"
        found = [int(m.group(1)) for p in log.iterdir() if (m := _LOG_FILE.match(p.name))] if log.is_dir() else []
        if not found:
            raise self._missing(name)
        return max(found)

    def check_writable(self, name: str) -> None:
        parse_name(name)
        names.check_own(self.env.catalog, name, f"environment {self.env.name}")

    def create_schema(self, catalog: str, schema: str) -> Path:
        """Create `catalog.schema` (a folder) if missing; writes need the catalog writable."""
        self.check_writable(f"{catalog}.{schema}.x")
        folder = self.root / catalog / schema
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def write(
        self,
        df,
        name: str,
        mode: str = "overwrite",
        replace_where: str | None = None,
        stamp: dict | None = None,
        properties: dict[str, str] | None = None,
        txn: tuple[str, int] | None = None,
    ) -> None:
        """Write df as one Delta transaction.

        Args:
            df: the rows to write.
            name: `catalog.schema.table` in this environment's catalog.
            mode: "overwrite" (replace the table, or only the rows matching replace_where)
                or "append" (new columns of df are added to the table).
            replace_where: a SQL predicate; with overwrite, only matching rows are replaced,
                atomically, so re-running a period replaces it instead of duplicating it. New
                columns of df are added to the table.
            stamp: recorded in the commit (as JSON in Delta's `userMetadata`), e.g. what the
                rows were made from; `stamp(name)` reads it back while this is the newest commit.
            properties: Delta table properties, set when this write creates the table (an
                existing table keeps its own).
            txn: (application id, version): an idempotent write. Delta records the pair in the
                commit and skips a later write of the same application whose version is not
                newer, so a retried micro-batch is written once (Delta's txnAppId/txnVersion).
        """
        if mode not in ("overwrite", "append"):
            raise ValueError(f"mode must be overwrite or append, not {mode!r}")
        self.check_writable(name)
        catalog, schema, _ = parse_name(name)
        self.create_schema(catalog, schema)
        writer = df.write.format("delta").mode(mode)
        if replace_where is not None:
            if mode != "overwrite":
                raise ValueError("replace_where goes with mode='overwrite'")
            # A column the table lacks is added (rows written before hold null in it).
            writer = writer.option("replaceWhere", replace_where).option("mergeSchema", "true")
        elif mode == "overwrite":
            writer = writer.option("overwriteSchema", "true")
        else:  # append: as with replace_where, a column the table lacks is added
            writer = writer.option("mergeSchema", "true")
        if stamp is not None:
            writer = writer.option("userMetadata", json.dumps(stamp, sort_keys=True))
        for key, value in (properties or {}).items():
            writer = writer.option(key, value)
        if txn is not None:
            writer = writer.option("txnAppId", txn[0]).option("txnVersion", str(txn[1]))
        writer.save(str(self.path(name)))

    def stamp(self, name: str) -> dict:
        """The `stamp` the table's newest commit was written with, read from its log without
        Spark; {} if that commit has none (any later write, or no table)."""
        try:
            commit = self.path(name) / "_delta_log" / f"{self.version(name):020d}.json"
            lines = commit.read_text().splitlines()
        except (TableNotFoundError, OSError):
            return {}
        for line in lines:
            info = json.loads(line).get("commitInfo")
            if info is not None:
                with contextlib.suppress(ValueError, TypeError):
                    stamp = json.loads(info.get("userMetadata"))
                    return stamp if isinstance(stamp, dict) else {}
        return {}

    def txn_time(self, name: str, txn: tuple[str, int]) -> int | None:
        """When (ms since the epoch, the commit's own timestamp) the table took the idempotent
        write `write(..., txn=txn)`; None if it holds none. Read from its log without Spark,
        newest commit first (an application's versions only grow, so an older one ends the search)."""
        commits = [p for p in (self.path(name) / "_delta_log").glob("*.json") if _COMMIT_FILE.fullmatch(p.name)]
        for commit in sorted(commits, reverse=True):
            lines = commit.read_text().splitlines()
            for line in lines:
                if '"txn"' not in line or (found := json.loads(line).get("txn")) is None or found["appId"] != txn[0]:
                    continue
                if int(found["version"]) < txn[1]:
                    return None
                if int(found["version"]) == txn[1]:
                    infos = [info for line in lines if '"commitInfo"' in line and (info := json.loads(line).get("commitInfo"))]
                    return int(infos[0]["timestamp"]) if infos else int(commit.stat().st_mtime * 1000)
        return None

    @contextlib.contextmanager
    def staged(self, table):
        """A DataFrame of an Arrow table, staged as a Parquet file under the warehouse (where the
        Spark server reads the tables) and deleted afterwards; for a large table this is several
        times faster than sending it over Spark Connect as a local relation."""
        import pyarrow.parquet as pq

        folder = self.root / "_staging"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{uuid.uuid4().hex}.parquet"
        pq.write_table(table, path)
        try:
            yield self.spark.read.parquet(str(path))
        finally:
            path.unlink(missing_ok=True)

    def set_properties(self, name: str, properties: dict[str, str], stamp: dict | None = None) -> None:
        """Set Delta table properties (one commit), e.g. a feature table's primary keys; `stamp`
        as in `write`."""
        self.check_writable(name)
        self._require(name)
        pairs = ", ".join(f"'{k}' = '{_quote(str(v))}'" for k, v in properties.items())
        if stamp is not None:
            self.spark.conf.set(_COMMIT_METADATA, json.dumps(stamp, sort_keys=True))
        try:
            self.spark.sql(f"ALTER TABLE delta.`{self.path(name)}` SET TBLPROPERTIES ({pairs})")
        finally:
            if stamp is not None:
                self.spark.conf.unset(_COMMIT_METADATA)

    def properties(self, name: str) -> dict[str, str]:
        """The Delta table properties of a table."""
        self._require(name)
        row = self.spark.sql(f"DESCRIBE DETAIL delta.`{self.path(name)}`").first()
        return dict(row["properties"] or {})

    def compact(self, name: str, max_files: int) -> bool:
        """Delta OPTIMIZE once the table holds more than max_files files (its small files
        rewritten as one, rows marked deleted dropped); True if it did. A table made of many
        small files is slow to read: each file costs the reader whatever its size."""
        self.check_writable(name)
        path = self.path(name)
        if self.spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()["numFiles"] <= max_files:
            return False
        self.spark.sql(f"OPTIMIZE delta.`{path}`").collect()
        return True

    def tables(self, catalog: str | None = None) -> list[str]:
        """Names of the Delta tables in one catalog (default: this environment's)."""
        catalog = catalog or self.env.catalog
        base = self.root / catalog
        found = [p.parent for p in base.glob("*/*/_delta_log")] if base.is_dir() else []
        return sorted(f"{catalog}.{p.parent.name}.{p.name}" for p in found)

    def drop_catalog(self) -> Path:
        """Delete this environment's whole catalog (and the files exported from it and its
        streams' checkpoints); only temporary environments may."""
        if not self.env.temporary:
            raise AccessDeniedError(
                f"environment {self.env.name} is not temporary: its catalog {self.env.catalog} is never wiped"
            )
        folder = self.root / self.env.catalog
        shutil.rmtree(folder, ignore_errors=True)
        for kind in ("exports", "checkpoints"):
            shutil.rmtree(self.env.home / kind / self.env.catalog, ignore_errors=True)
        return folder
