"""Monitoring: per-window profile and model-quality metrics of the predictions table.

Shaped like Lakehouse Monitoring's `{table}_profile_metrics` (InferenceLog profile): one
`:table` row per window and model version with counts and the prediction distribution, and
accuracy-style metrics computed only from labels that have arrived by the as-of date.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lib.features import KEY, TIMESTAMP
from lib.evaluation import classification_metrics

QUANTILES = [0.05, 0.25, 0.5, 0.75, 0.95]
_METRICS = ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"]
SCHEMA = (
    "window struct<start:timestamp_ntz,end:timestamp_ntz>, granularity string, model_id string, "
    "slice_key string, slice_value string, column_name string, log_type string, "
    "count bigint, num_nulls bigint, avg double, min double, max double, stddev double, "
    "quantiles array<double>, labelled_count bigint, "
    + ", ".join(f"{m} double" for m in _METRICS)
    + ", refreshed_as_of date"
)


def _profile(threshold: float, granularity: str, as_of: dt.date):
    def profile(pdf: pd.DataFrame) -> pd.DataFrame:
        pred = pdf["prediction"]
        present = pred.dropna()
        labelled = pdf.dropna(subset=["delayed", "prediction"])
        quality = (classification_metrics(labelled["delayed"], labelled["prediction"], threshold)
                   if len(labelled) else {})
        row = {
            "window": {"start": pdf["window_start"].iloc[0], "end": pdf["window_end"].iloc[0]},
            "granularity": granularity, "model_id": str(pdf["model_version"].iloc[0]),
            "slice_key": None, "slice_value": None, "column_name": ":table", "log_type": "INPUT",
            "count": len(pdf), "num_nulls": int(pred.isna().sum()),
            "avg": present.mean(), "min": present.min(), "max": present.max(), "stddev": present.std(),
            "quantiles": list(np.quantile(present, QUANTILES)) if len(present) else None,
            "labelled_count": len(labelled),
            **{m: quality.get(m) for m in _METRICS},
            "refreshed_as_of": as_of,
        }
        return pd.DataFrame([row])

    return profile


def profile_metrics(predictions: DataFrame, labels: DataFrame, as_of: dt.date,
                    granularity: str = "1 day", decision_threshold: float = 0.5) -> DataFrame:
    """One `:table` row per (window, model version).

    Labels count only for flights scheduled before as_of: that is when they have arrived.
    """
    arrived = labels.where(F.col(TIMESTAMP) < F.lit(as_of)).select(KEY, F.col("delayed").cast("double"))
    windowed = (
        predictions.join(arrived, KEY, "left")
        .withColumn("w", F.window(F.col(TIMESTAMP).cast("timestamp"), granularity))
        .select(
            F.col("w.start").cast("timestamp_ntz").alias("window_start"),
            F.col("w.end").cast("timestamp_ntz").alias("window_end"),
            "model_version", "prediction", "delayed",
        )
    )
    return windowed.groupBy("window_start", "model_version").applyInPandas(
        _profile(decision_threshold, granularity, as_of), SCHEMA
    )


SERVED_SCHEMA = f"{KEY} string, {TIMESTAMP} timestamp_ntz, prediction double, model_version string"


def _unpack(batches):
    """Inference-table rows (one per request) to one row per prediction, with the flight if sent."""
    from lib.serving import payload
    from lib.serving.contract import ApiError

    for frame in batches:
        rows = []
        for request, response, at, entity in zip(frame["request"], frame["response"], frame["request_time"],
                                                 frame["served_entity_id"]):
            predictions = json.loads(response).get("predictions", [])
            try:
                flights = payload.parse(request.encode()).columns.get(KEY) or [None] * len(predictions)
            except ApiError:
                flights = [None] * len(predictions)
            rows += [(None if f is None else str(f), at, p, entity) for f, p in zip(flights, predictions)]
        yield pd.DataFrame(rows, columns=[KEY, TIMESTAMP, "prediction", "model_version"])


def served_predictions(payload_table: DataFrame) -> DataFrame:
    """The predictions an endpoint answered (status 200), windowed by request time, per served entity."""
    answered = payload_table.where("status_code = 200").select(
        "request", "response", F.col("request_time").cast("timestamp_ntz").alias("request_time"), "served_entity_id")
    return answered.mapInPandas(_unpack, SERVED_SCHEMA)


def refresh_served(lakehouse, payload_table: str, labels: DataFrame, as_of: dt.date, granularity: str,
                   decision_threshold: float) -> str | None:
    """Profile an endpoint's inference table into `<payload_table>_profile_metrics`; None if nothing was served."""
    if not lakehouse.exists(payload_table):
        return None
    served = served_predictions(lakehouse.read(payload_table))
    table = f"{payload_table}_profile_metrics"
    lakehouse.write(profile_metrics(served, labels, as_of, granularity, decision_threshold), table)
    return table
