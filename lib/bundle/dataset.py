"""What `run_pipeline.py --init DIR --from FILE` learns from a user's CSV or Parquet file: the
columns' kinds, the label and the problem type, the timestamp, the id, and the date range.

A one-off inspection of a file the user hands over, so pandas reads it whole (the data path,
ingest, reads it with Spark). Every choice it cannot make is one ConfigError line that names
the columns to choose from and the flag to choose with.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

import pandas as pd

from lib.core import metrics
from lib.core.errors import ConfigError

NAMED_LABELS = ("label", "target")  # a column of one of these names is the label without --label
GENERATED_ID = "row_id"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Date and date-time layouts a text column may use: (pandas format, Spark reader option or None
# when Spark's cast reads it as it is, date only).
_FORMATS = (
    ("%Y-%m-%d", None, True),
    ("%Y-%m-%d %H:%M:%S", None, False),
    ("%Y-%m-%dT%H:%M:%S", None, False),
    ("%Y/%m/%d", ("dateFormat", "yyyy/MM/dd"), True),
    ("%Y/%m/%d %H:%M:%S", ("timestampFormat", "yyyy/MM/dd HH:mm:ss"), False),
    ("%m/%d/%Y", ("dateFormat", "MM/dd/yyyy"), True),
    ("%d.%m.%Y", ("dateFormat", "dd.MM.yyyy"), True),
)
_POSITIVE = ("1", "true", "yes", "y", "t")  # the positive class of a two-valued label, when it has one of these


@dataclasses.dataclass(frozen=True)
class Dataset:
    """What a file holds, as a project's config needs it."""

    path: Path
    format: str  # csv | parquet
    rows: int
    label: str
    label_expr: str  # Spark SQL over the source's columns giving the label (AS label)
    problem_type: str
    label_std: float  # the label's standard deviation (regression), 0.5 for a classification
    timestamp: str
    reader_options: dict[str, str]  # what Spark's CSV reader needs to read the timestamp
    id: str  # the id column (the file's, or generated)
    id_from: list[str] | None  # the columns a generated id is a hash of; None: the file's column
    categorical: list[str]
    numeric: list[str]
    dropped: dict[str, str]  # column -> why it is not a feature
    start: dt.date  # the first day of the timestamp
    end: dt.date  # the day after the last

    @property
    def features(self) -> list[str]:
        return [*self.categorical, *self.numeric]


def read(path: Path) -> pd.DataFrame:
    """The file's rows (CSV or Parquet, by its suffix)."""
    if not path.is_file():
        raise ConfigError(f"--from {path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except (ValueError, OSError) as exc:  # pandas' parse errors are ValueErrors
        raise ConfigError(f"--from {path}: cannot read it as {suffix[1:]}: {exc}") from None
    raise ConfigError(f"--from {path}: give a .csv or .parquet file")


def inspect(path: Path, label: str | None = None, timestamp: str | None = None, id_: str | None = None) -> Dataset:
    """The file's columns sorted into label, timestamp, id and features."""
    path = path.expanduser().resolve()
    frame = read(path)
    if frame.empty:
        raise ConfigError(f"--from {path}: the file has no rows")
    columns = ", ".join(map(str, frame.columns))
    label = _label(frame, label, columns)
    problem_type, label_expr, label_std = _problem(frame[label], label)
    temporal = {c: _temporal(frame[c]) for c in frame.columns if c != label}
    timestamp = _timestamp(temporal, timestamp, columns, label)
    ts = _as_times(frame[timestamp], temporal[timestamp])
    if ts.isna().any():
        raise ConfigError(f"--from {path}: column {timestamp}: {int(ts.isna().sum())} rows have no date")
    rest = [c for c in frame.columns if c not in (label, timestamp)]
    kinds = {c: "categorical" if frame[c].dtype == object else "numeric" for c in rest if temporal.get(c) is None}
    id_, id_from = _id(frame, id_, rest, timestamp, [c for c, k in kinds.items() if k == "categorical"], columns)
    dropped = {
        c: f"a second date column (the timestamp is {timestamp})" for c in rest if temporal.get(c) is not None and c != id_
    }
    categorical: list[str] = []
    numeric: list[str] = []
    for column, kind in kinds.items():
        if column == id_:
            continue
        distinct = frame[column].nunique()
        if distinct <= 1:
            dropped[column] = "one value only"
        elif kind == "categorical" and distinct > max(50, len(frame) // 2):
            dropped[column] = f"{distinct} distinct values: too many to encode as a category"
        else:
            (categorical if kind == "categorical" else numeric).append(str(column))
    if not categorical and not numeric:
        raise ConfigError(f"--from {path}: no column is left as a feature besides {label}, {timestamp} and {id_}")
    bad = [str(c) for c in [label, timestamp, *(id_from or [id_]), *categorical, *numeric] if not _NAME.match(str(c))]
    if bad:
        raise ConfigError(f"--from {path}: column names must be letters, digits and _ (rename {', '.join(bad)})")
    fmt = temporal[timestamp]
    return Dataset(
        path=path,
        format="parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv",
        rows=len(frame),
        label=label,
        label_expr=label_expr,
        problem_type=problem_type,
        label_std=label_std,
        timestamp=timestamp,
        reader_options=dict([fmt[1]]) if isinstance(fmt, tuple) and fmt[1] else {},
        id=id_,
        id_from=id_from,
        categorical=categorical,
        numeric=numeric,
        dropped=dropped,
        start=ts.min().date(),
        end=ts.max().date() + dt.timedelta(days=1),
    )


def _label(frame: pd.DataFrame, label: str | None, columns: str) -> str:
    if label is not None:
        if label not in frame.columns:
            raise ConfigError(f"--label {label} is not a column of the file (columns: {columns})")
        return label
    named = [c for c in frame.columns if str(c).lower() in NAMED_LABELS]
    if len(named) != 1:
        raise ConfigError(
            f"choose the label with --label COL: no single column is named {' or '.join(NAMED_LABELS)} (columns: {columns})"
        )
    return str(named[0])


def _problem(values: pd.Series, label: str) -> tuple[str, str, float]:
    """The problem type, the label's Spark SQL expression and its spread."""
    known = values.dropna()
    distinct = sorted(known.unique(), key=str)
    if len(distinct) == 2:
        texts = [str(v).lower() for v in distinct]
        positive = next((v for v, t in zip(distinct, texts) if t in _POSITIVE), None)
        if positive is None:  # two other values: the rarer one is the event a model looks for
            counts = known.value_counts()
            positive = min(distinct, key=lambda v: (counts[v], str(v)))
        if pd.api.types.is_bool_dtype(values) or set(texts) <= {"0", "1"}:
            expr = f"CAST({label} AS int) AS {label}"
        else:
            literal = str(positive).replace("'", "\\'")
            expr = f"CAST(CAST({label} AS string) = '{literal}' AS int) AS {label}"
        return metrics.CLASSIFICATION, expr, 0.5
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values) and len(distinct) > 2:
        return metrics.REGRESSION, f"CAST({label} AS double) AS {label}", float(known.astype(float).std())
    shown = ", ".join(map(str, distinct[:5])) + (", ..." if len(distinct) > 5 else "")
    raise ConfigError(
        f"label {label} has {len(distinct)} distinct value(s) ({shown}): --init makes a regression "
        "(a numeric label) or a binary classification (two values)"
    )


def _temporal(values: pd.Series) -> tuple[str, tuple[str, str] | None, bool] | str | None:
    """How a column holds dates: 'native' (a datetime or date type), a text format, or None."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return "native"
    known = values.dropna()
    if values.dtype != object or known.empty:
        return None
    if all(isinstance(v, dt.date) for v in known.head(100)):
        return "native"
    if not all(isinstance(v, str) for v in known.head(100)):
        return None
    sample = known.head(10_000)
    for fmt, option, date_only in _FORMATS:
        if pd.to_datetime(sample, format=fmt, errors="coerce").notna().all():
            return fmt, option, date_only
    return None


def _as_times(values: pd.Series, how: object) -> pd.Series:
    if how == "native":
        return pd.to_datetime(values, errors="coerce")
    assert isinstance(how, tuple)
    return pd.to_datetime(values, format=how[0], errors="coerce")


def _timestamp(temporal: dict, timestamp: str | None, columns: str, label: str) -> str:
    if timestamp is not None:
        if timestamp not in temporal:
            raise ConfigError(f"--timestamp {timestamp} is not a column of the file (columns: {columns})")
        if temporal[timestamp] is None:
            raise ConfigError(
                f"--timestamp {timestamp}: its values are not dates or date-times (ISO 2024-01-31[ 13:45:00], "
                "2024/01/31, 01/31/2024 or 31.01.2024)"
            )
        return timestamp
    found = [str(c) for c, how in temporal.items() if how is not None]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ConfigError(
            f"no column holds dates (ISO 2024-01-31[ 13:45:00], 2024/01/31, 01/31/2024 or 31.01.2024): "
            f"give the timestamp with --timestamp COL (columns: {columns})"
        )
    raise ConfigError(f"several columns hold dates ({', '.join(found)}): choose the timestamp with --timestamp COL")


def _id(
    frame: pd.DataFrame, id_: str | None, rest: list[str], timestamp: str, categorical: list[str], columns: str
) -> tuple[str, list[str] | None]:
    """The id column, or a generated id's name and the columns it hashes."""
    if id_ is not None:
        if id_ not in rest:
            raise ConfigError(f"--id {id_} is not a column of the file besides the label and timestamp (columns: {columns})")
        if frame[id_].isna().any() or frame[id_].duplicated().any():
            raise ConfigError(
                f"--id {id_}: {int(frame[id_].duplicated().sum())} repeated and {int(frame[id_].isna().sum())} empty values"
            )
        return id_, None
    for column in rest:
        name = str(column).lower()
        if (name == "id" or name.endswith("_id")) and frame[column].notna().all() and not frame[column].duplicated().any():
            return str(column), None
    name = GENERATED_ID
    while name in frame.columns:
        name += "_"
    for hashed in ([timestamp, *categorical], [str(c) for c in frame.columns]):
        if not frame.duplicated(subset=hashed).any():
            return name, hashed
    raise ConfigError(
        f"the file has {int(frame.duplicated().sum())} duplicate rows and no id column: remove them or give --id COL"
    )
