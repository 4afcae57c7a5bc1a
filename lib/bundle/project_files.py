"""The files `run_pipeline.py --init` writes into a new project's folder, as YAML text with
comments, from what lib/bundle/dataset.py learnt of the file (lib/bundle/scaffold.py writes them)."""

from __future__ import annotations

import datetime as dt
import math
import os
import sys
from pathlib import Path

import yaml

from lib.bundle.dataset import Dataset
from lib.core import metrics

Window = dict[str, int | dt.date]  # environments.yml `data`: start, end, as_of, train/holdout/horizon_days


def _flow(value: object) -> str:
    """A value as one line of YAML (quoted where YAML needs it)."""
    return yaml.safe_dump(value, default_flow_style=True, width=math.inf, sort_keys=False).strip().removesuffix("\n...")


def _installed_package(path: Path) -> tuple[str, Path] | None:
    """(package, path inside it) when `path` is a file of an installed package (under site-packages)."""
    roots = [Path(p).resolve() for p in sys.path if p and Path(p).name in ("site-packages", "dist-packages")]
    for root in roots:
        if root in path.parents:
            inside = path.relative_to(root)
            if len(inside.parts) > 1 and (root / inside.parts[0] / "__init__.py").exists():
                return inside.parts[0], Path(*inside.parts[1:])
    return None


def sources_yml(data: Dataset, name: str, folder: Path) -> str:
    packaged = _installed_package(data.path)
    if packaged is not None:
        where = f"    package: {packaged[0]}\n    path: {packaged[1].as_posix()}    # inside the installed package (not copied)\n"
    else:
        relative = os.path.relpath(data.path, folder)
        shown = relative if not relative.startswith("../..") else str(data.path)
        how = "relative to this folder" if shown == relative else "absolute"
        where = f"    path: {shown}    # {how}; the file is read where it is, not copied\n"
    options = (
        f"    options: {_flow(data.reader_options)}    # how Spark reads the timestamp's layout\n" if data.reader_options else ""
    )
    if data.id_from:
        id_line = (
            f"    id: {{generate: {data.id}, from: {_flow(data.id_from)}}}    # the file has no id column: a stable hash "
            "of these columns (unique in the file); a duplicate is refused at ingest\n"
        )
    else:
        id_line = f"    id: {data.id}    # unique in the file; a duplicate is refused at ingest\n"
    return (
        f"# Sources: what the ingest task reads into the raw tables <raw_catalog>.raw.<name>. Made by\n"
        f"# `run_pipeline.py --init` from {data.path.name}; the raw schema is shared by the projects of a\n"
        f"# lakehouse, so the source is named after this project.\n"
        f"sources:\n"
        f"  {name}:\n"
        f"    format: {data.format}\n"
        f"{where}{options}"
        f"    timestamp: {data.timestamp}    # a date-only column is read as midnight\n"
        f"{id_line}"
    )


def model_yml(data: Dataset, name: str) -> str:
    regression = data.problem_type == metrics.REGRESSION
    table = f"{name}_features"
    select = [data.id, data.timestamp, *(f"CAST({c} AS string) AS {c}" for c in data.categorical)]
    select += [f"CAST({c} AS double) AS {c}" for c in data.numeric]
    features = data.features
    std = _round(data.label_std)
    if regression:
        thresholds = "    r2: {min: 0.0}                # better than the held-out days' own mean"
        bound = _round(1.5 * data.label_std)
        slices_metric = f"    metric: rmse\n    max: {bound}   # 1.5 x the label's standard deviation ({std}) in the file"
        deploy = "  metric: rmse\n  min_improvement: 0.0\n  baseline: {kind: mean}         # the training label's mean"
        inference = "inference: {}\n"
    else:
        thresholds = "    roc_auc: {min: 0.55}          # a little better than chance"
        slices_metric = "    metric: roc_auc\n    min: 0.52"
        deploy = "  metric: roc_auc\n  min_improvement: 0.0\n  baseline: {kind: none}         # the first model passing the gates"
        inference = "inference:\n  decision_threshold: 0.5         # probability above which the predicted class is 1\n"
    slices = ""
    if data.categorical:
        slices = (
            f"  slices:                         # the metric per value of {data.categorical[0]}\n"
            f"    columns: [{data.categorical[0]}]\n{slices_metric}\n"
            "    min_rows: 30                  # smaller slices are reported, not judged\n"
        )
    return (
        f"# The model and its gates, made by `run_pipeline.py --init` from {data.path.name}.\n"
        f"problem_type: {data.problem_type}\n"
        f"label: {data.label}\n"
        f"\n"
        f"# One feature table: the source's rows, one per {data.id}, known from {data.timestamp} on.\n"
        f"feature_tables:\n"
        f"  {table}:\n"
        f"    source: {name}\n"
        f"    primary_keys: [{data.id}]\n"
        f"    timestamp_key: {data.timestamp}\n"
        f"    select: {_flow(select)}\n"
        f"    description: The rows of {data.path.name}, one per {data.id}.\n"
        f"\n"
        f"# The spine: what a prediction is about; batch inference scores the table's rows of a period.\n"
        f"spine: {{table: {table}, id: {data.id}, timestamp: {data.timestamp}}}\n"
        f"keys: [{data.id}, {data.timestamp}]              # what a caller sends to get a prediction\n"
        f"labels:                           # the table `labels`: the training spine, and what monitoring joins\n"
        f"  source: {name}\n"
        f"  filter: {data.label} IS NOT NULL\n"
        f"  select: {_flow([data.id, data.timestamp, data.label_expr])}\n"
        f"\n"
        f"feature_lookups:\n"
        f"  - table: {table}\n"
        f"    lookup_key: [{data.id}]\n"
        f"    timestamp_lookup_key: {data.timestamp}\n"
        f"    features: {_flow(features)}\n"
        f"\n"
        f"# Built in (lib/features/on_demand.py): 0 = Monday 00h .. 167 (for daily rows: the day of the week).\n"
        f"on_demand_features:\n"
        f"  - {{function: hour_of_week, inputs: {{ts: {data.timestamp}}}, output: hour_of_week}}\n"
        f"\n"
        f"features:\n"
        f"  categorical: {_flow(data.categorical)}\n"
        f"  numeric: {_flow([*data.numeric, 'hour_of_week'])}\n"
        + "".join(f"  # not a feature: {c} ({why})\n" for c, why in data.dropped.items())
        + "\n"
        f"training:\n"
        f"  hyperparameters_file: hyperparameters.yml\n"
        f"\n"
        f"validation:\n"
        f"  mode: enabled\n"
        f"  thresholds:                     # on the held-out days\n"
        f"{thresholds}\n"
        f"{slices}"
        f"\n"
        f"deployment:                       # Challenger vs Champion (or the baseline, the first time)\n"
        f"{deploy}\n"
        f"  approval: not_required\n"
        f"{inference}"
    )


def hyperparameters_yml() -> str:
    return (
        "# Hyperparameters of the training task (model.yml training.hyperparameters_file); the\n"
        "# algorithm fits the problem type (hist_gradient_boosting: its classifier or its regressor).\n"
        "algorithm: hist_gradient_boosting\n"
        "params:\n"
        "  learning_rate: 0.1\n"
        "  max_iter: 150\n"
        "  max_leaf_nodes: 31\n"
        "  random_state: 42\n"
    )


def environments_yml(data: Dataset, name: str, prod: Window, staging: Window, min_days: int) -> str:
    """environments.yml: the prod window as the defaults' (dev's too), staging's its own."""
    return (
        f"# Environments, made by `run_pipeline.py --init`. Tables: <catalog>.{name}.<table>; the catalogs\n"
        f"# dev, staging and prod are shared with the other projects of the lakehouse, so the schema, the\n"
        f"# model, its experiment and its endpoint carry this project's name. Ports 0: free ones (the\n"
        f"# run's summary prints the endpoint's URL).\n"
        f"#\n"
        f"# Data windows from the file's dates ({data.start}..{data.end - dt.timedelta(days=1)}): score\n"
        f"# horizon_days (a 30th of the range, 1..7) from as_of, hold out the holdout_days before them (a\n"
        f"# 10th, 1..28), train on all the days before. as_of leaves one more horizon after the scored\n"
        f"# days: monitoring as of as_of + horizon_days finds their labels (--job monitoring --as-of ...).\n"
        f"# Staging, CI's short run, takes the last quarter of the range (at least {min_days} days), split\n"
        f"# the same way.\n"
        f"defaults:\n"
        f"  lakehouse_root: .lakehouse\n"
        f"  schema: {name}\n"
        f"  model: {name}_model\n"
        f"  experiment: /lakehouse-mlops/{{env}}/{name}_model\n"
        f"  tracking_uri: sqlite:///{{home}}/mlflow.db\n"
        f"  registry_uri: sqlite:///{{home}}/mlflow.db\n"
        f"  temporary: false\n"
        f"  data: {_flow(prod)}\n"
        f"  spark: {{port: 0}}\n"
        f"  serving: {{host: 127.0.0.1, port: 0, endpoint: {name.replace('_', '-')}, max_request_mb: 16, max_batch_rows: 5000}}\n"
        f"environments:\n"
        f"  dev: {{catalog: dev, raw_catalog: prod}}    # dev reads production's raw data; it can never write it\n"
        f"  staging:\n"
        f"    catalog: staging\n"
        f"    raw_catalog: staging\n"
        f"    temporary: true\n"
        f"    data: {_flow(staging)}\n"
        f"  prod: {{catalog: prod, raw_catalog: prod}}\n"
    )


def monitors_yml(data: Dataset, name: str) -> str:
    regression = data.problem_type == metrics.REGRESSION
    kind = "PROBLEM_TYPE_REGRESSION" if regression else "PROBLEM_TYPE_CLASSIFICATION"
    excluded = [data.id, *([] if regression else ["predicted_class"])]
    excluded += ["model_name", "model_alias", "feature_lookup_misses", "period_start", "period_end", "scored_at"]
    slicing = f"    slicing_exprs: [{data.categorical[0]}]\n" if data.categorical else ""
    return (
        "# Monitors, made by `run_pipeline.py --init`: batch inference's predictions, profiled per day and\n"
        "# week, drift against the Champion's training set, model quality once the labels are joined.\n"
        "monitors:\n"
        "  predictions:                      # the monitoring task refreshes this monitor by name\n"
        "    table_name: predictions\n"
        f"    timestamp_col: {data.timestamp}\n"
        '    granularities: ["1 day", "1 week"]\n'
        "    model_id_col: model_version\n"
        "    prediction_col: prediction\n"
        f"    problem_type: {kind}\n"
        f"    label_col: {data.label}\n"
        "    labels_table: labels\n"
        f"    label_key: [{data.id}]\n"
        f"{slicing}"
        f"    baseline_table_name: {name}_model_baseline\n"
        f"    exclude_columns: {_flow(excluded)}\n"
    )


def alerts_yml(data: Dataset) -> str:
    if data.problem_type == metrics.REGRESSION:
        column, op, threshold = "root_mean_squared_error", ">", _round(data.label_std)
        why = f"RMSE of the labelled rows rose above the label's standard deviation in the file ({threshold})"
    else:
        column, op, threshold = "roc_auc", "<", 0.55
        why = "ROC AUC of the labelled rows fell below the validation floor (0.55)"
    return (
        "# Alerts over the monitoring metric tables, made by `run_pipeline.py --init` (conf/alerts.yml explains the keys).\n"
        "alerts:\n"
        "  - name: model_quality\n"
        f"    description: The {why}.\n"
        "    query: |\n"
        f"      SELECT window.start AS window, {column} AS value\n"
        "      FROM {predictions_profile_metrics}\n"
        "      WHERE log_type = 'INPUT' AND granularity = '1 day' AND slice_key IS NULL AND column_name = ':table'\n"
        f'    condition: {{op: "{op}", threshold: {threshold}}}\n'
        "    trigger: {m: 3, n: 5}\n"
        "    severity: critical\n"
        "    actions: [notify, {run_job: retraining}]\n"
    )


def _round(value: float) -> float:
    """Two significant digits: a threshold, not a measurement."""
    return float(f"{value:.2g}") if value else 0.0
