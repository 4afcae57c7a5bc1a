"""Batch inference: score a period with the Champion on Spark and publish it.

The model is loaded by alias, but the version behind the alias is resolved once first, at
every run, so every row of a run names the model, the exact version that scored it and the
alias it was resolved from: a new Champion scores from the next run on.

Publishing goes to the destinations of conf/environments.yml `publish`, each replacing the
period whole, so a re-run (or a run whose period overlaps an earlier one) never holds a
row twice: the Delta table (one transaction), files (Parquet, CSV; a new set swapped in
with one rename), the online store (one SQLite transaction; read by key with
`lib.serving.online_store.prediction`) and PostgreSQL over JDBC (one transaction).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType

from lib.core.config.blocks import Destinations
from lib.core.config.model import Spine
from lib.core.errors import ModelNotFoundError, PublishError, TableNotFoundError, first_line
from lib.features import store as feature_store
from lib.features.tables import in_window
from lib.platform import registry
from lib.platform.catalog import Lakehouse, parse_name
from lib.platform.registry import ModelRef
from lib.platform.services import postgres
from lib.serving import online_store

MISSES = "feature_lookup_misses"  # per row: the lookups that found no feature row (scored from nulls)
PREDICTED_CLASS = "predicted_class"  # classification only: 1 if the prediction reaches the decision threshold


def score(
    lakehouse: Lakehouse,
    spine: DataFrame,
    ref: ModelRef,
    start: dt.date,
    end: dt.date,
    decision_threshold: float | None,
    alias: str | None = None,
    *,
    entity: Spine,
) -> DataFrame:
    """Predictions for the rows of the spine whose event time falls in [start, end) (see `predict`),
    with the period and the time they were scored."""
    rows = in_window(spine, entity.timestamp, start, end)
    return predict(lakehouse, rows, ref, decision_threshold, alias, entity=entity).select(
        "*", F.lit(start).alias("period_start"), F.lit(end).alias("period_end"), F.current_timestamp().alias("scored_at")
    )


def predict(
    lakehouse: Lakehouse,
    spine: DataFrame,
    ref: ModelRef,
    decision_threshold: float | None,
    alias: str | None = None,
    carry: tuple[str, ...] = (),
    *,
    entity: Spine,
) -> DataFrame:
    """A prediction per spine row (first its `entity` id and timestamp), with the model's inputs next
    to it (what monitoring profiles), PREDICTED_CLASS unless `decision_threshold` is None (regression:
    no class), the model's name and version, the `alias` `ref` was resolved from, per row how many feature
    lookups found nothing (MISSES: scored anyway, from nulls), and the spine's `carry` columns.

    The spine needs only the keys the model was logged with; the features come from the
    model's own feature lookups, point in time (Feature Store `score_batch`). Batch and
    streaming inference both score here.
    """
    from mlflow.models import Model

    uri = registry.artifact_uri(ref)  # unique to this version of this lakehouse (see below)
    info = Model.load(uri.removeprefix("file://"))  # the MLmodel file, read in place: signature and packaged lookups
    metadata = info.metadata or {}
    packaged = metadata.get("feature_lookups")
    if not packaged:
        raise ModelNotFoundError(f"{ref.uri} carries no feature lookups: it cannot score from keys")
    keys = metadata.get("keys") or []
    missing = [k for k in keys if k not in spine.columns]
    if missing:
        raise TableNotFoundError(f"the rows to score lack key column(s) {', '.join(missing)} needed by {ref.uri}")
    batch = feature_store.lookup_features(
        lakehouse,
        spine.select(*dict.fromkeys([*keys, *carry])),
        [feature_store.FeatureLookup.from_dict(d) for d in packaged],
        MISSES,
    )
    columns = info.signature.inputs.input_names()
    # Spark's Python workers load the model themselves; over Spark Connect they cache it by the
    # URI's hash, so the URI must name this version of this lakehouse, not `models:/name/1`.
    # A type object, not "double": parsing a type string needs the process's *active* session,
    # which need not be this lakehouse's.
    udf = _udf(lakehouse.spark, uri)
    spine_columns = (entity.id, entity.timestamp)
    return batch.withColumn("prediction", udf(F.struct(*[F.col(c) for c in columns]))).select(
        *spine_columns,
        *[c for c in columns if c not in spine_columns],
        "prediction",
        *predicted_class(decision_threshold),
        F.lit(ref.name).alias("model_name"),
        F.lit(ref.version).alias("model_version"),
        F.lit(alias).cast("string").alias("model_alias"),
        MISSES,
        *[c for c in carry if c not in (*spine_columns, *columns)],
    )


def predicted_class(decision_threshold: float | None) -> list[F.Column]:
    """The PREDICTED_CLASS column of a classification's predictions; none for regression (None)."""
    if decision_threshold is None:
        return []
    return [(F.col("prediction") >= decision_threshold).cast("int").alias(PREDICTED_CLASS)]


_UDFS: dict[tuple[str, str], object] = {}  # (Spark session, model URI) -> its spark_udf


def _udf(spark, uri: str):
    """The model as a Spark UDF, made once per session and version: each spark_udf call
    downloads the model into a new temporary folder (a stream would do so every micro-batch)."""
    import mlflow

    key = (str(getattr(spark, "session_id", id(spark))), uri)
    if key not in _UDFS:
        _UDFS[key] = mlflow.pyfunc.spark_udf(spark, uri, result_type=DoubleType(), env_manager="local")
    return _UDFS[key]


def publish(lakehouse: Lakehouse, predictions: DataFrame, table: str, start: dt.date, end: dt.date, *, timestamp: str) -> int:
    """Replace the predictions whose `timestamp` falls in [start, end); returns their count."""
    period = f"`{timestamp}` >= TIMESTAMP_NTZ'{start.isoformat()}' AND `{timestamp}` < TIMESTAMP_NTZ'{end.isoformat()}'"
    lakehouse.write(predictions, table, mode="overwrite", replace_where=period)
    return lakehouse.read(table).where(period).count()


def publish_everywhere(
    lakehouse: Lakehouse,
    predictions: DataFrame,
    table: str,
    targets: Destinations,
    start: dt.date,
    end: dt.date,
    store: Path,
    *,
    entity: Spine,
) -> dict[str, object]:
    """Publish the period to each enabled destination, the Delta table first (the others then
    copy what it holds, so every destination holds the same rows); returns, per destination,
    the rows it holds for the period (files: the folder)."""
    lakehouse.check_writable(table)
    out: dict[str, object] = {}
    source = predictions
    if targets.delta.enabled:
        out["delta"] = publish(lakehouse, predictions, table, start, end, timestamp=entity.timestamp)
        source = in_window(lakehouse.read(table), entity.timestamp, start, end)
    # With Delta off, each destination scores the period itself (a rare setting; no cache to leak).
    if targets.files.enabled:
        out["files"] = export_files(source, lakehouse.export_path(table), targets.files.formats, start, end)
    if targets.online.enabled:
        out["online"] = online_store.publish_predictions(store, source.toPandas(), entity.id, entity.timestamp, start, end)
    if targets.jdbc.enabled:
        out["jdbc"] = export_jdbc(source, table, targets.jdbc.url, lakehouse.env.home, start, end, timestamp=entity.timestamp)
    return out


def export_jdbc(
    predictions: DataFrame, table: str, url: str | None, home: Path, start: dt.date, end: dt.date, *, timestamp: str
) -> int:
    """Replace the period (of `timestamp`) in PostgreSQL (database = catalog, then schema and table, as named) on
    the server at url (None: the lakehouse's own, started if need be); returns the rows it holds
    for the period.

    Spark writes the rows over JDBC into a staging table; then one transaction deletes the
    period's rows, inserts the staged ones and drops the staging table. A failure at any point
    leaves the table as it was, and is one PublishError line naming the destination.
    """
    catalog, schema, name = parse_name(table)
    stage = f"{name}_stage_{uuid.uuid4().hex[:12]}"
    where = f"{url}{catalog}" if url else "the lakehouse's PostgreSQL"
    try:
        url = url or postgres.base_url(home)
        where = f"{url}{catalog}"
        with postgres.connect(url, catalog) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        (
            predictions.write.format("jdbc")
            .mode("overwrite")
            .option("url", where)
            .option("user", postgres.USER)
            .option("driver", "org.postgresql.Driver")
            .option("dbtable", f'"{schema}"."{stage}"')
            .save()
        )
        with postgres.connect(url, catalog) as conn:  # one transaction: committed at the end of the block
            columns = ", ".join(f'"{c}"' for c in predictions.columns)
            conn.execute(f'CREATE TABLE IF NOT EXISTS "{schema}"."{name}" (LIKE "{schema}"."{stage}")')
            conn.execute(f'DELETE FROM "{schema}"."{name}" WHERE "{timestamp}" >= %s AND "{timestamp}" < %s', (start, end))
            conn.execute(f'INSERT INTO "{schema}"."{name}" ({columns}) SELECT {columns} FROM "{schema}"."{stage}"')
            conn.execute(f'DROP TABLE "{schema}"."{stage}"')
            held = conn.execute(
                f'SELECT count(*) FROM "{schema}"."{name}" WHERE "{timestamp}" >= %s AND "{timestamp}" < %s', (start, end)
            ).fetchone()[0]
    except Exception as exc:  # Spark's JDBC writer, psycopg and the server raise many types
        if url:
            with contextlib.suppress(Exception), postgres.connect(url, catalog) as conn:
                conn.execute(f'DROP TABLE IF EXISTS "{schema}"."{stage}"')
        raise PublishError(
            f"destination jdbc ({where}, table {schema}.{name}) failed; it still holds what it held: {first_line(exc)[:300]}"
        ) from exc
    return int(held)


def export_files(predictions: DataFrame, folder: Path, formats: Sequence[str], start: dt.date, end: dt.date) -> Path:
    """Write the period as one folder per format (`<folder>/<start>_<end>/<format>/`).

    The new set is written beside the old one and swapped in with one rename of a symbolic
    link, so a reader sees the old set or the new one, never half of either; a failed write
    leaves the old set as it was.
    """
    period = folder / f"{start}_{end}"
    version = folder / ".versions" / f"{start}_{end}-{uuid.uuid4().hex[:12]}"
    try:
        for fmt in formats:
            writer = predictions.coalesce(1).write.mode("overwrite").format(fmt)  # a new folder each time
            if fmt == "csv":
                writer = writer.option("header", True)
            writer.save(str(version / fmt))
        link = folder / f".{version.name}.link"
        link.symlink_to(version.relative_to(folder))
    except BaseException:
        shutil.rmtree(version, ignore_errors=True)
        raise
    old = period.resolve() if period.is_symlink() else None
    os.replace(link, period)  # atomic: the old set or the new one
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return period
