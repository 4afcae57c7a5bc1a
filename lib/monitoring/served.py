"""What an endpoint served: its inference table unpacked into predictions with their inputs,
profiled like a monitored table, and its requests, errors and latency per served entity.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lib.core import names, payload
from lib.core.config import ModelConfig
from lib.core.errors import ApiError
from lib.features import on_demand
from lib.features import store as feature_store
from lib.features.store import lookup_features
from lib.monitoring import metrics
from lib.monitoring.monitors import SERVING_FIELDS, Monitor
from lib.monitoring.refresh import kinds, sketch_rows, to_spark, windowed, with_window

REQUEST_TIME = "request_time"


def _unpack(columns: list[str]):
    """Inference-table rows (one per request) to one row per prediction, with the request's
    values of `columns` (the spine keys and model inputs it sent; null for those it did not)."""

    def unpack(batches):
        for frame in batches:
            rows = []
            for request, response, at, entity in zip(
                frame["request"], frame["response"], frame[REQUEST_TIME], frame["served_entity_id"]
            ):
                predictions = json.loads(response).get("predictions", [])
                try:
                    sent = payload.parse(request.encode()).columns
                except ApiError:
                    sent = {}
                values = [sent.get(c) or [None] * len(predictions) for c in columns]
                rows += [
                    (at, p, entity, *[None if v[i] is None else str(v[i]) for v in values]) for i, p in enumerate(predictions)
                ]
            yield pd.DataFrame(rows, columns=[REQUEST_TIME, "prediction", "model_version", *columns])

    return unpack


def served_predictions(payload_table: DataFrame, keys: list[str], features: dict[str, str], timestamp: str) -> DataFrame:
    """The predictions an endpoint answered (status 200), one row each, with the request time,
    the served entity, and the spine keys and features the request sent (typed as `features`
    says: column -> Spark type; the spine's `timestamp` as a timestamp, other keys as text)."""
    columns = list(dict.fromkeys([*keys, *features]))
    schema = ", ".join(
        [f"{REQUEST_TIME} timestamp_ntz", "prediction double", "model_version string", *[f"`{c}` string" for c in columns]]
    )
    answered = payload_table.where("status_code = 200").select(
        "request", "response", F.col(REQUEST_TIME).cast("timestamp_ntz").alias(REQUEST_TIME), "served_entity_id"
    )
    typed = {c: features.get(c, "timestamp_ntz" if c == timestamp else "string") for c in columns}
    return answered.mapInPandas(_unpack(columns), schema).select(
        REQUEST_TIME, "prediction", "model_version", *[F.col(c).cast(t).alias(c) for c, t in typed.items()]
    )


def with_looked_up_features(lakehouse, served: DataFrame, keys: list[str], lookups, features: list[str]) -> DataFrame:
    """Fill the features a request did not send (requests by key) from the feature tables, point
    in time, as the model's own lookups do; a value the request sent is kept."""
    looked_up = {c for lookup in lookups for c in lookup.features} - set(keys)
    sent = [c for c in features if c in looked_up]
    spine = served.select(*[F.col(c).alias(f"_sent_{c}") if c in sent else F.col(c) for c in served.columns])
    filled = lookup_features(lakehouse, spine, lookups)
    return filled.select(*[F.coalesce(F.col(f"_sent_{c}"), F.col(c)).alias(c) if c in sent else F.col(c) for c in served.columns])


def profile_rows_of(df: DataFrame, monitor: Monitor, as_of: dt.date, decision_threshold: float) -> pd.DataFrame:
    """Every window's profile rows of a DataFrame (no baseline, no stored state)."""
    columns = kinds(df, monitor)
    spec, merged, keys = sketch_rows(df, monitor, columns, decision_threshold, None)
    return with_window(metrics.profile_rows(merged, spec, columns, keys, as_of))


def refresh_served(
    lakehouse, env, payload_table: str, monitor: Monitor, as_of: dt.date, decision_threshold: float, model_cfg: ModelConfig
) -> str | None:
    """Profile an endpoint's inference table into `<payload_table>_profile_metrics`: each answered
    prediction with the model's inputs (as sent, or looked up by key) and its label once it
    arrived, per served entity and window of request time; None if nothing was served."""
    if not lakehouse.exists(payload_table):
        return None
    keys = list(model_cfg.keys)
    made = {f.output for f in on_demand.of_model(model_cfg)}  # computed by the model, not sent or looked up
    types = {c: "string" for c in model_cfg.features.categorical}
    types |= {c: "double" for c in model_cfg.features.numeric if c not in made}
    spine = model_cfg.spine
    served = served_predictions(lakehouse.read(payload_table), keys, types, spine.timestamp)
    served = with_looked_up_features(
        lakehouse, served, keys, feature_store.lookups(model_cfg.feature_lookups, env.catalog, env.schema), list(types)
    )
    served = served.withColumn("model_id", F.col("model_version"))
    if monitor.labels_table:
        labels = (
            lakehouse.read(env.table(monitor.labels_table))
            .where(F.col(spine.timestamp) < F.lit(as_of))
            .select(*monitor.label_key, monitor.label_col)
        )
        served = served.join(labels, monitor.label_key, "left")
    served_monitor = monitor.model_copy(
        update={
            "timestamp_col": REQUEST_TIME,
            "model_id_col": "model_version",
            "slicing_exprs": [],
            "exclude_columns": [spine.id, spine.timestamp],
            "custom_metrics": [],
        }
    )
    rows = profile_rows_of(served, served_monitor, as_of, decision_threshold)
    table = names.profile_metrics_table(payload_table)
    fields = metrics.PROFILE_FIELDS
    with contextlib.ExitStack() as stack:
        lakehouse.write(to_spark(lakehouse, stack, rows, fields), table)
    return table


def refresh_serving_metrics(lakehouse, env, granularities: list[str]) -> str | None:
    """The endpoint's infrastructure metrics per served entity and window of request time:
    requests, server errors (5xx) and their share, client errors (4xx), p50/p99 latency (exact).
    Written (replaced) to `serving_metrics_table(env)`; None if nothing was served."""
    payload_table = env.payload_table
    table = names.serving_metrics_table(payload_table)
    if not lakehouse.exists(payload_table):
        return None
    requests = lakehouse.read(payload_table).withColumn("_at", F.col("request_time").cast("timestamp_ntz"))
    latency = F.expr("percentile(execution_duration_ms, array(0.5, 0.99))")
    per_window = (
        windowed(requests, "_at", granularities)
        .groupBy("granularity", "window_start", "window_end", F.coalesce("served_entity_id", F.lit("")).alias("served_entity"))
        .agg(
            F.count(F.lit(1)).alias("requests"),
            F.count(F.when(F.col("status_code") >= 500, 1)).alias("errors"),
            F.count(F.when(F.col("status_code").between(400, 499), 1)).alias("client_errors"),
            latency.alias("_ms"),
        )
        .select(
            F.struct(F.col("window_start").alias("start"), F.col("window_end").alias("end")).alias("window"),
            "granularity",
            "served_entity",
            "requests",
            "errors",
            "client_errors",
            (F.col("errors") / F.col("requests")).alias("error_rate"),
            F.col("_ms")[0].alias("p50_ms"),
            F.col("_ms")[1].alias("p99_ms"),
        )
    )
    lakehouse.write(per_window.select(*[F.col(n).cast(t) for n, t in SERVING_FIELDS]), table)
    return table
