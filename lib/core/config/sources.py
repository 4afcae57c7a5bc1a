"""conf/sources.yml: what the ingest task reads into the raw tables `<raw_catalog>.raw.<name>`.

sources:
  orders:
    format: csv                    # csv | parquet | delta | jdbc
    path: data/orders.csv          # relative: to the conf folder (or, with `package:`, to an installed package)
    timestamp: ordered_at          # the window [data.start, data.end) filters on it (a date: midnight)
    types: {amount: double}        # overrides of the inferred types
    id: {generate: order_id, from: [customer, ordered_at]}   # or the name of an id column
    columns: {order_day: to_date(ordered_at)}   # derived (Spark SQL), added when the features task reads the raw table
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from lib.core.config.loading import Strict, conf_dir, invalid, parse_model, read_yaml

FILE = "sources.yml"
FORMATS = ("csv", "parquet", "delta", "jdbc")
Format = Literal["csv", "parquet", "delta", "jdbc"]
# Spark SQL type names an override may cast a column to.
TypeName = Literal["string", "int", "bigint", "double", "float", "boolean", "date", "timestamp"]
Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
# Where each format is found, and the keys it takes besides the common ones.
_WHERE = {
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
    path: str | None = None  # csv, parquet, delta: a file or folder; relative: to the conf folder, or to `package`
    # csv, parquet: the installed Python package whose folder holds `path` (a dataset shipped on PyPI);
    # its file is read with pandas (such files may be zipped, which Spark does not read) and handed to Spark.
    package: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    table: str | None = None  # delta: catalog.schema.table of the lakehouse; jdbc: [schema.]table
    url: str | None = Field(None, pattern=r"^jdbc:postgresql://[^/]+/$")  # jdbc; None: the lakehouse's own PostgreSQL
    database: str | None = None  # jdbc
    options: dict[str, str] = Field(default_factory=dict)  # passed to Spark's reader (e.g. sep, nullValue)
    timestamp: str  # the event-time column; a date-only column is read as midnight
    day: str | None = None  # a Spark SQL date expression the window filters on instead of `timestamp`
    types: dict[str, TypeName] = Field(default_factory=dict)
    id: GeneratedId | str | None = None  # an id column, or one generated; duplicates are refused
    # Derived columns, name -> Spark SQL expression over the source's columns (and the derived ones
    # listed before it): added when the features task reads the raw table, not at ingest.
    columns: dict[Name, Annotated[str, Field(min_length=1)]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _located(self) -> Source:
        required, optional = _WHERE[self.format]
        for key in sorted(required):
            if getattr(self, key) is None:
                raise invalid(key, f"missing (format {self.format} needs {' and '.join(sorted(required))})")
        given = {key for key in ("path", "package", "table", "url", "database") if getattr(self, key) is not None}
        if self.options:
            given.add("options")
        extra = sorted(given - required - optional)
        if extra:
            raise invalid(extra[0], f"not a key of format {self.format}")
        if self.format == "delta" and (self.path is None) == (self.table is None):
            raise invalid("", "format delta needs `path` or `table` (one of them)")
        return self

    def location(self) -> str:
        """Where the source is read from, as an error message names it."""
        if self.format == "jdbc":
            return f"{self.url or 'the lakehouse PostgreSQL '}{self.database} table {self.table}"
        where = f" of package {self.package}" if self.package else ""
        return f"{self.path or self.table}{where}"


class SourcesFile(Strict):
    sources: Annotated[dict[Name, Source], Field(min_length=1)]


def resolve(source: Source, folder: Path) -> Source:
    """The source with a relative `path` made absolute against `folder` (the conf folder); a
    package's path stays relative to the package (located when read)."""
    if source.path is None or source.package is not None or Path(source.path).expanduser().is_absolute():
        return source
    return source.model_copy(update={"path": str((folder / source.path).resolve())})


def load_sources(folder: Path | None = None) -> dict[str, Source]:
    """conf/sources.yml (of `folder`, default the conf folder in use), checked, paths resolved."""
    folder = folder or conf_dir()
    path = folder / FILE
    parsed = parse_model(SourcesFile, read_yaml(path), str(path))
    return {name: resolve(source, folder) for name, source in parsed.sources.items()}
