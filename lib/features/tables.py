"""Feature tables and labels, made from the sources' raw tables as conf/model.yml declares them.

Each feature table (`feature_tables`) holds what is known before the event, keyed by its primary
keys and timestamp key; the labels (`labels`) arrive later and live in their own table with the
spine's keys. A training set is that spine with features looked up point in time
(lib.features.store), so nothing from after an event leaks into its features.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import operator
from collections.abc import Callable
from functools import partial, reduce
from pathlib import Path

import pandas as pd
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

from lib.core.config import sources as sources_file
from lib.core.config.model import FILE, FeatureTable, Labels, ModelConfig, check_sources
from lib.core.config.sources import Source, load_sources
from lib.core.errors import SourceDataError, first_line
from lib.core.metrics import REGRESSION
from lib.features import store as feature_store
from lib.platform.spark.builder import to_pandas

LABELS = "labels"  # the labels table's short name
_LATEST, _RANK = "__keep_latest_by", "__rank"  # working columns of keep_latest_by


def table_names(model_cfg: ModelConfig) -> list[str]:
    """Every table the features task writes, by short name: the feature tables, then the labels."""
    return [*model_cfg.feature_tables, LABELS]


def _specs(model_cfg: ModelConfig) -> dict[str, FeatureTable | Labels]:
    return {**model_cfg.feature_tables, LABELS: model_cfg.labels}


def _where(name: str) -> str:
    """Where a table is declared, as an error names it."""
    return f"{FILE} {LABELS if name == LABELS else f'feature_tables.{name}'}"


def used_sources(model_cfg: ModelConfig) -> list[str]:
    """The sources the tables are made from, each once, in the order of first use."""
    return list(dict.fromkeys(s.source for s in _specs(model_cfg).values() if s.source is not None))


def _resolved(make: Callable[[], DataFrame], where: str, expr: str, source: str) -> DataFrame:
    """`make()`, analysed now: an expression Spark cannot resolve is one line naming it and the source."""
    try:
        df = make()
        df.schema  # noqa: B018  # analysis is lazy (over Spark Connect, until the schema is asked for)
        return df
    except AnalysisException as exc:
        raise SourceDataError(f"{where}: {expr!r} does not resolve over source {source}: {first_line(exc)}") from exc


def read_sources(lakehouse, env, model_cfg: ModelConfig, sources: dict[str, Source]) -> dict[str, DataFrame]:
    """The raw table of each source the tables use, each read once, with the source's derived `columns`."""
    return {name: derive(lakehouse.read(env.raw_table(name)), name, sources[name]) for name in used_sources(model_cfg)}


def derive(df: DataFrame, name: str, source: Source) -> DataFrame:
    """A source's rows with its derived `columns` added, in their order (one may use those before it)."""
    for column, expr in source.columns.items():
        where = f"{sources_file.FILE} sources.{name}.columns.{column}"
        df = _resolved(partial(_with_column, df, column, expr), where, expr, name)
    return df


def _with_column(df: DataFrame, column: str, expr: str) -> DataFrame:
    return df.withColumn(column, F.expr(expr))


def build(raw: dict[str, DataFrame], model_cfg: ModelConfig) -> dict[str, DataFrame]:
    """Every table the features task writes, by short name, from the sources' raw tables (`read_sources`).

    Each table: the source's rows kept by `filter`, its columns made by `select`, and of rows
    repeating the table's key, the one with the largest `keep_latest_by`. Every expression is
    analysed here: one Spark cannot resolve fails before anything is written.
    """
    tables = {name: _table(raw[spec.source], name, spec) for name, spec in _specs(model_cfg).items() if spec.source}
    label = tables[LABELS].schema[model_cfg.label].dataType
    if model_cfg.problem_type == REGRESSION and not isinstance(label, NumericType):
        raise SourceDataError(
            f"{_where(LABELS)}.select: the label {model_cfg.label} made from source {model_cfg.labels.source} is "
            f"{label.simpleString()}, not a number: problem_type {REGRESSION} needs one (CAST it AS double)"
        )
    return tables


def _table(df: DataFrame, name: str, spec: FeatureTable | Labels) -> DataFrame:
    assert spec.source is not None and spec.select is not None  # the config model checks both are given
    where, source = _where(name), spec.source
    if spec.filter:
        # Analysed as a column: a filter keeps its input's schema, which Spark Connect answers without analysis.
        _resolved(partial(df.selectExpr, f"({spec.filter}) AS {_RANK}"), f"{where}.filter", spec.filter, source)
        df = df.where(spec.filter)
    latest = spec.keep_latest_by if isinstance(spec, FeatureTable) else None
    exprs = [*spec.select, *([f"{latest} AS {_LATEST}"] if latest else [])]
    try:
        out = df.selectExpr(*exprs)
        out.schema  # noqa: B018  # analysed now (see _resolved)
    except AnalysisException:
        # Which expression: each one alone, the first that fails names itself.
        for i, expr in enumerate(spec.select):
            _resolved(partial(df.selectExpr, expr), f"{where}.select.{i}", expr, source)
        _resolved(partial(df.selectExpr, str(latest)), f"{where}.keep_latest_by", str(latest), source)
        raise
    if latest and isinstance(spec, FeatureTable):
        key = Window.partitionBy(*spec.primary_keys, spec.timestamp_key).orderBy(F.col(_LATEST).desc())
        out = out.withColumn(_RANK, F.row_number().over(key)).where(F.col(_RANK) == 1).drop(_RANK, _LATEST)
    return out


def refresh(lakehouse, env, model_cfg: ModelConfig, sources: dict[str, Source] | None = None) -> dict[str, int]:
    """Build every table from the raw tables and write it (`write_tables`); rows per table.

    `sources`: conf/sources.yml of the model's conf folder unless given. A table whose newest
    commit was made from the raw tables' current versions, by this code and these specs, is
    current: when all are, nothing is read or written.
    """
    sources = load_sources(model_cfg.folder) if sources is None else sources
    check_sources(model_cfg, sources)
    names = table_names(model_cfg)
    inputs = _inputs(lakehouse, env, model_cfg, sources)
    recorded = {name: lakehouse.stamp(env.table(name)) for name in names}
    if all(r.get("inputs") == inputs and isinstance(r.get("rows"), int) for r in recorded.values()):
        print(
            f"{', '.join(env.table(n) for n in names)} are current (the same raw table versions, code and specs): not rewritten",
            flush=True,
        )
        return {name: r["rows"] for name, r in recorded.items()}
    tables = build(read_sources(lakehouse, env, model_cfg, sources), model_cfg)
    return write_tables(lakehouse, env, model_cfg, tables, inputs=inputs)


def _inputs(lakehouse, env, model_cfg: ModelConfig, sources: dict[str, Source]) -> str:
    """What the tables are made of: the raw tables of the sources used (their versions, and what
    ingest recorded they were made from), the sources' derived columns, the code and the specs."""
    used = used_sources(model_cfg)
    raw = {n: [lakehouse.version(env.raw_table(n)), lakehouse.stamp(env.raw_table(n)), sources[n].columns] for n in used}
    specs = {name: spec.model_dump(mode="json", exclude_unset=True) for name, spec in _specs(model_cfg).items()}
    digest = hashlib.sha256(json.dumps([raw, specs], sort_keys=True, default=str).encode())
    here = Path(__file__)
    for module in (here, here.with_name("store.py")):
        digest.update(module.read_bytes())
    return digest.hexdigest()[:16]


def write_tables(
    lakehouse, env, model_cfg: ModelConfig, tables: dict[str, DataFrame], inputs: str | None = None
) -> dict[str, int]:
    """Write the feature tables (keys recorded) and the labels; rows per table.

    Every feature table's key is checked before the first write, so a bad key changes no table.
    Each table is computed from the raw tables once: cached for the check and the write.
    `inputs` (from `refresh`) is recorded in each table's commit with its rows.
    """
    specs = {name: model_cfg.feature_tables.get(name) for name in tables}
    cached = {name: df.cache() for name, df in tables.items()}
    try:
        rows: dict[str, int] = {}
        for name, df in cached.items():
            spec = specs[name]
            rows[name] = feature_store.check_key(df, env.table(name), spec) if spec is not None else df.count()
        for name, df in cached.items():
            spec = specs[name]
            stamp = {"inputs": inputs, "rows": rows[name]} if inputs else None
            if spec is None:
                lakehouse.write(df, env.table(name), stamp=stamp)
            else:
                feature_store.write_table(lakehouse, df, env.table(name), spec, stamp=stamp)
    finally:
        for df in cached.values():
            df.unpersist()
    return rows


def _within(timestamp: str, start: dt.date, end: dt.date) -> F.Column:
    return (F.col(timestamp) >= F.lit(start)) & (F.col(timestamp) < F.lit(end))


def in_window(df: DataFrame, timestamp: str, start: dt.date, end: dt.date) -> DataFrame:
    """Rows whose `timestamp` (the spine's event time) falls in [start, end)."""
    return df.where(_within(timestamp, start, end))


def labels_in(lakehouse, env, model_cfg: ModelConfig, *windows: tuple[dt.date, dt.date], catalog: str | None = None) -> DataFrame:
    """The labels of the windows (the spine's keys, its timestamp and the label): a training set without features."""
    labels = lakehouse.read(f"{catalog or env.catalog}.{env.schema}.labels")
    at = model_cfg.spine.timestamp
    return labels.where(reduce(operator.or_, [_within(at, start, end) for start, end in windows]))


def training_set(
    lakehouse, env, model_cfg: ModelConfig, *windows: tuple[dt.date, dt.date], catalog: str | None = None
) -> DataFrame:
    """Labelled rows of the windows with their features looked up point in time.

    Tables are read from `catalog` (default: the environment's own; dev explores prod's).
    """
    catalog = catalog or env.catalog
    spine = labels_in(lakehouse, env, model_cfg, *windows, catalog=catalog)
    lookups = feature_store.lookups(model_cfg.feature_lookups, catalog, env.schema)
    return feature_store.lookup_features(lakehouse, spine, lookups)


def load_labelled(lakehouse, env, model_cfg: ModelConfig, *windows: tuple[dt.date, dt.date], catalog: str | None = None):
    """The training set of each window as pandas, in key order so that training is repeatable.

    One Spark pass for all the windows (e.g. train and held-out): one frame per window, or the
    frame itself for one window.
    """
    both = to_pandas(training_set(lakehouse, env, model_cfg, *windows, catalog=catalog))
    at, row_id = pd.to_datetime(both[model_cfg.spine.timestamp]), model_cfg.spine.id
    frames = [
        both[(at >= pd.Timestamp(start)) & (at < pd.Timestamp(end))].sort_values(row_id, kind="stable").reset_index(drop=True)
        for start, end in windows
    ]
    return frames[0] if len(frames) == 1 else frames
