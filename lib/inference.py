"""Batch inference: score a period with the Champion on Spark and publish to Delta.

The model is loaded by alias, but the version behind the alias is resolved once first, at
every run, so every row of a run names the model, the exact version that scored it and the
alias it was resolved from: a new Champion is scored with from the next run on. Publishing replaces the rows of
the flights in that period in one transaction: history is kept, and a re-run (or a run whose
period overlaps an earlier one) never holds a flight twice.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType

from lib import feature_store, registry
from lib.catalog import Lakehouse
from lib.errors import ModelNotFoundError, TableNotFoundError
from lib.features import KEY, TIMESTAMP, in_window
from lib.registry import ModelRef

MISSES = "feature_lookup_misses"  # per row: the lookups that found no feature row (scored from nulls)


def score(lakehouse: Lakehouse, spine: DataFrame, ref: ModelRef, start: dt.date, end: dt.date,
          decision_threshold: float, alias: str | None = None) -> DataFrame:
    """Predictions for the flights of the spine scheduled in [start, end), with the model's
    inputs next to them (what monitoring profiles), the `alias` `ref` was resolved from, and
    per row how many feature lookups found nothing (MISSES: scored anyway, from nulls).

    The spine needs only the keys the model was logged with; the features come from the
    model's own feature lookups, point in time (Feature Store `score_batch`).
    """
    import mlflow
    from mlflow.models import Model

    info = Model.load(ref.uri)  # the MLmodel file: signature and packaged lookups
    packaged = (info.metadata or {}).get("feature_lookups")
    if not packaged:
        raise ModelNotFoundError(f"{ref.uri} carries no feature lookups: it cannot score from keys")
    keys = info.metadata.get("keys") or []
    missing = [k for k in keys if k not in spine.columns]
    if missing:
        raise TableNotFoundError(f"the rows to score lack key column(s) {', '.join(missing)} needed by {ref.uri}")
    batch = feature_store.lookup_features(lakehouse, in_window(spine, start, end).select(*keys),
                                          [feature_store.FeatureLookup.from_dict(d) for d in packaged], MISSES)
    columns = info.signature.inputs.input_names()
    # Spark's Python workers load the model themselves; over Spark Connect they cache it by the
    # URI's hash, so the URI must name this version of this lakehouse, not `models:/name/1`.
    # A type object, not "double": parsing a type string needs the process's *active* session,
    # which need not be this lakehouse's.
    predict = mlflow.pyfunc.spark_udf(lakehouse.spark, registry.artifact_uri(ref), result_type=DoubleType(),
                                      env_manager="local")
    return (
        batch
        .withColumn("prediction", predict(F.struct(*[F.col(c) for c in columns])))
        .select(
            KEY, TIMESTAMP, *[c for c in columns if c not in (KEY, TIMESTAMP)], "prediction",
            (F.col("prediction") >= decision_threshold).cast("int").alias("predicted_delayed"),
            F.lit(ref.name).alias("model_name"),
            F.lit(ref.version).alias("model_version"),
            F.lit(alias).cast("string").alias("model_alias"),
            MISSES,
            F.lit(start).alias("period_start"),
            F.lit(end).alias("period_end"),
            F.current_timestamp().alias("scored_at"),
        )
    )


def publish(lakehouse: Lakehouse, predictions: DataFrame, table: str, start: dt.date, end: dt.date) -> int:
    """Replace the predictions of the flights scheduled in [start, end); returns their count."""
    period = f"{TIMESTAMP} >= TIMESTAMP_NTZ'{start.isoformat()}' AND {TIMESTAMP} < TIMESTAMP_NTZ'{end.isoformat()}'"
    lakehouse.write(predictions, table, mode="overwrite", replace_where=period)
    return lakehouse.read(table).where(period).count()
