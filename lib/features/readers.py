"""One reader per source format of conf/sources.yml: a source's rows as a Spark DataFrame, as
stored (types inferred; lib.features.ingest casts, checks and windows them), and what a source's
fingerprint is made of.

Everything is read through Spark except a file of an installed package (`package:`), a dataset
shipped on PyPI: such files may be zipped, which Spark cannot read, so they
are read with pandas (the rows around the ingest window only) and handed to Spark.
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


def package_file(package: str, path: str) -> Path:
    """A file of an installed package (located, never imported: a data package need not import
    cleanly)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SetupError(f"the data package {package} is not installed: run `make install`")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / path).is_file():
        raise SetupError(f"the package {package} (in {folder}) has no file {path}: check `path`, or reinstall it")
    return folder / path


def packaged(source: Source) -> pd.DataFrame:
    """A package's whole file as pandas, with the types pandas infers."""
    path = package_file(str(source.package), str(source.path))
    if source.format == "parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, **({"sep": source.options["sep"]} if "sep" in source.options else {}))


def read(lakehouse: Lakehouse, source: Source, start: dt.date, end: dt.date) -> DataFrame:
    """The source's rows. Only a package's file uses the window [start, end): pandas hands Spark
    the days around it, not the whole file; the source's own filter picks the rows."""
    spark = lakehouse.spark
    if source.package is not None:
        return spark.createDataFrame(_around(packaged(source), source.timestamp, start, end))
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
    """The files a file-based source (csv, parquet) reads, in a stable order."""
    if source.package is not None:
        return [package_file(source.package, str(source.path))]
    path = _existing(source)
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def delta_version(lakehouse: Lakehouse, source: Source) -> int:
    """The newest commit of a delta source."""
    if source.table is not None:
        return lakehouse.version(source.table)
    history = lakehouse.spark.sql(f"DESCRIBE HISTORY delta.`{_existing(source)}` LIMIT 1")
    return int(history.first()["version"])


def _around(pdf: pd.DataFrame, timestamp: str, start: dt.date, end: dt.date) -> pd.DataFrame:
    # A day more on either side of the window (a UTC timestamp may fall on the next local day),
    # so the transfer to Spark stays small. Rows whose timestamp does not parse are kept: ingest
    # reports them. A missing timestamp column is ingest's error too.
    if timestamp not in pdf.columns:
        return pdf
    at = pd.to_datetime(pdf[timestamp], errors="coerce", utc=True).dt.tz_localize(None)
    keep = at.isna() | ((at >= pd.Timestamp(start - dt.timedelta(days=1))) & (at < pd.Timestamp(end + dt.timedelta(days=1))))
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
