"""Monitors (conf/monitors.yml): Lakehouse Monitoring's InferenceLog profile of a table, checked,
and the names of the tables a refresh writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lib.core import names
from lib.core.config import conf_dir, parse_model, read_yaml
from lib.core.config.loading import invalid
from lib.monitoring import metrics
from lib.monitoring.custom_metrics import CustomMetric

TABLE = metrics.TABLE


GRANULARITIES = ("5 minutes", "30 minutes", "1 hour", "1 day", "1 week", "2 weeks", "3 weeks", "4 weeks", "1 month", "1 year")


_SECONDS = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}


class Monitor(BaseModel):
    """One monitored table (a block of conf/monitors.yml), as an InferenceLog monitor."""

    model_config = ConfigDict(extra="forbid")

    table_name: str = Field(pattern=r"^\w+$")
    timestamp_col: str
    granularities: list[Literal[GRANULARITIES]] = Field(min_length=1)  # type: ignore[valid-type]
    model_id_col: str
    prediction_col: str
    problem_type: Literal["PROBLEM_TYPE_CLASSIFICATION", "PROBLEM_TYPE_REGRESSION"] = "PROBLEM_TYPE_CLASSIFICATION"
    label_col: str | None = None
    labels_table: str | None = Field(None, pattern=r"^\w+$")
    label_key: list[str] = Field(default_factory=list)
    slicing_exprs: list[str] = Field(default_factory=list)
    baseline_table_name: str | None = Field(None, pattern=r"^\w+$")
    baseline_max_rows: int = Field(20_000, gt=0)
    exclude_columns: list[str] = Field(default_factory=list)
    custom_metrics: list[CustomMetric] = Field(default_factory=list)

    def output(self, env, kind: str) -> str:
        """`<catalog>.<schema>.<table>_profile_metrics` (kind "profile") or `..._drift_metrics`."""
        return env.table(f"{self.table_name}_{kind}_metrics")

    @model_validator(mode="after")
    def _consistent(self) -> Monitor:
        if self.labels_table and not (self.label_col and self.label_key):
            raise invalid("labels_table", "needs label_col and label_key")
        metric_names = [m.name for m in self.custom_metrics]
        taken = set(metric_names) & {n for n, _ in metrics.PROFILE_FIELDS + metrics.DRIFT_FIELDS}
        if taken or len(set(metric_names)) != len(metric_names):
            raise invalid(
                "custom_metrics",
                f"names must be unique and not a built-in metric's ({', '.join(sorted(taken)) or 'a name is repeated'})",
            )
        return self


class MonitorsFile(BaseModel):
    """conf/monitors.yml: the monitored tables by name."""

    model_config = ConfigDict(extra="forbid")

    monitors: dict[str, Monitor] = Field(default_factory=dict)


def load_monitors(folder: Path | None = None) -> dict[str, Monitor]:
    """conf/monitors.yml (of `folder`, default the conf folder in use), checked: a wrong or
    misspelt key is one line naming its path."""
    path = (folder or conf_dir()) / "monitors.yml"
    return parse_model(MonitorsFile, read_yaml(path), str(path)).monitors


SERVING_FIELDS = [
    ("window", metrics.WINDOW_TYPE),
    ("granularity", "string"),
    ("served_entity", "string"),
    ("requests", "bigint"),
    ("errors", "bigint"),
    ("client_errors", "bigint"),
    ("error_rate", "double"),
    ("p50_ms", "double"),
    ("p99_ms", "double"),
]


def serving_metrics_table(env) -> str:
    """`<inference table>_serving_metrics` of the environment's endpoint."""

    return names.serving_metrics_table(env.payload_table)
