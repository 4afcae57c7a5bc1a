"""conf/model.yml (the model and the gates of each stage) and hyperparameters files, parsed
into ModelConfig and Hyperparameters.

The on-demand function names are resolved by lib.features.on_demand.declared (core imports
nothing above it); here the declarations' shape and the columns they read and make are checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, PrivateAttr, StrictBool, StrictInt, field_validator, model_validator

from lib.core import metrics as metric_registry
from lib.core.config import aggregates
from lib.core.config.aggregates import Aggregate
from lib.core.config.blocks import Number
from lib.core.config.loading import PROJECT_DIR, Strict, conf_dir, display_path, invalid, parse_model, read_yaml, suggest
from lib.core.errors import ConfigError

FILE = "model.yml"
# The metrics every stage reports, nameable in model.yml: the names of the registry (lib/core/metrics.py),
# which knows each one's problem type and direction.
METRICS = metric_registry.NAMES
PROBLEM_TYPES = metric_registry.PROBLEM_TYPES
VALIDATION_MODES = ("enabled", "dry_run", "disabled")
APPROVAL_MODES = ("not_required", "required")
ALGORITHMS = ("hist_gradient_boosting", "logistic_regression", "ridge")
# Which algorithms fit which problem type (hist_gradient_boosting: its classifier or its regressor).
ALGORITHMS_OF = {
    metric_registry.CLASSIFICATION: ("hist_gradient_boosting", "logistic_regression"),
    metric_registry.REGRESSION: ("hist_gradient_boosting", "ridge"),
}
if TYPE_CHECKING:  # mypy cannot read a Literal built from a tuple; pydantic can (and lists the names)
    Metric = str
    ProblemType = str
else:
    Metric = Literal[METRICS]
    ProblemType = Literal[PROBLEM_TYPES]
Columns = Annotated[list[str], Field(min_length=1)]


Expressions = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
_IDENTIFIER = r"[A-Za-z_]\w*|`[^`]+`"


def output_name(expr: str) -> str | None:
    """The column a Spark SQL select expression makes, when it can be read: `... AS name` or a
    bare column; None otherwise (e.g. `upper(x)`, `x name`, `*`)."""
    found = re.fullmatch(rf"(?is)(?:.*\S\s+AS\s+)?({_IDENTIFIER})\s*", expr.strip())
    return found.group(1).strip("`") if found else None


def _unmade(select: list[str], needed: dict[str, str]) -> str | None:
    """What is wrong when a column of `needed` (name -> what it is for) is not made by `select`."""
    made = {output_name(e) for e in select}
    missing = [f"{name} ({why})" for name, why in needed.items() if name not in made]
    if not missing:
        return None
    unread = [e for e in select if output_name(e) is None]
    hint = f"; the name of {unread[0]!r} could not be read: end it with `AS <name>`" if unread else ""
    return f"makes no column {', '.join(missing)}{hint}"


class FeatureTable(Strict):
    """A feature table made from a source's raw table (its rows filtered, its columns selected), or
    by windowed `aggregates` of sources over the spine table's rows (lib/core/config/aggregates.py)."""

    primary_keys: Columns
    timestamp_key: str  # a row holds the values as they were known from this time on
    source: str | None = None  # a source of sources.yml: its raw table, with the source's derived `columns`
    filter: str | None = None  # a Spark SQL predicate: the rows kept
    select: Expressions | None = None  # Spark SQL expressions; they make the keys and the features
    keep_latest_by: str | None = None  # of rows repeating the key (primary keys + timestamp key), keep the largest
    description: str = ""
    aggregates: Annotated[dict[str, Aggregate], Field(min_length=1)] | None = None  # a row per spine row

    @model_validator(mode="after")
    def _made_from_a_source(self) -> FeatureTable:
        if self.aggregates is not None:
            given = [k for k in ("source", "filter", "select", "keep_latest_by") if getattr(self, k) is not None]
            if given:
                raise invalid(given[0], "not a key of a table made by `aggregates` (it has a row per spine row)")
            return self
        if self.source is None or self.select is None:
            raise invalid("", "needs `source` and `select`, or `aggregates`")
        problem = _unmade(
            self.select, {**{k: "a primary key" for k in self.primary_keys}, self.timestamp_key: "the timestamp key"}
        )
        if problem:
            raise invalid("select", problem)
        return self


class Labels(Strict):
    """The table `labels`, the training spine: a source's rows that have a label, with the keys."""

    source: str  # a source of sources.yml
    filter: str | None = None  # a Spark SQL predicate: the rows that have a label
    select: Expressions  # they make every column of `keys` and the label
    description: str = ""


class Spine(Strict):
    """The entity a prediction is about: the feature table whose rows are scored, its id and its event time."""

    table: str  # a table of `feature_tables`: batch inference scores its rows (in the period), the replay feed streams them
    id: str  # one per scored row: the online store's and Kafka's key, the predictions' row id
    timestamp: str  # event time: data windows, scored periods, as-of lookups


class Lookup(Strict):
    """A point-in-time lookup from the spine into a feature table."""

    table: str  # a table of `feature_tables`
    lookup_key: Columns  # one spine column per primary key of the table
    timestamp_lookup_key: str
    features: Columns
    lookback_hours: Annotated[Number, Field(gt=0)] | None = None  # no older than this


class OnDemand(Strict):
    """`output` = `function`(**{parameter: column for parameter, column in inputs})."""

    function: str  # a function of lib/features/on_demand.py, or module:function of the conf folder's module.py
    inputs: dict[str, str]
    output: str

    @field_validator("function")
    @classmethod
    def _a_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_]\w*(:[A-Za-z_]\w*)?", value):
            raise ValueError(f"must be a built-in function's name or module:function, got {value!r}")
        return value


class Features(Strict):
    categorical: list[str]
    numeric: list[str]

    @property
    def columns(self) -> list[str]:
        """What the estimator sees, on-demand features included."""
        return [*self.categorical, *self.numeric]


class Training(Strict):
    hyperparameters_file: str  # relative: to the conf folder


class Threshold(Strict):
    """Bounds on a metric. The bound in the metric's direction (`min` if higher is better) is judged
    by MLflow; one against it (e.g. `max` on roc_auc) is a plain comparison."""

    min: Number | None = None
    max: Number | None = None
    min_change_vs_champion: Number | None = None  # absolute; MLflow refuses 0 (leave it out instead)

    @field_validator("min_change_vs_champion")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError(f"must be > 0 (MLflow refuses 0; leave it out instead), got {value!r}")
        return value

    @model_validator(mode="after")
    def _some_rule(self) -> Threshold:
        if self.min is None and self.max is None and self.min_change_vs_champion is None:
            raise invalid("", "needs `min`, `max` and/or `min_change_vs_champion`")
        _ordered(self.min, self.max)
        return self


def _ordered(low: float | None, high: float | None) -> None:
    if low is not None and high is not None and low > high:
        raise invalid("", f"`min` {low} is above `max` {high}: no value can pass")


class Slices(Strict):
    """The metric per value of each column; every judged slice must stay within `min`/`max`."""

    columns: Columns
    metric: Metric
    min: Number | None = None
    max: Number | None = None
    min_rows: StrictInt = Field(ge=0)  # smaller slices are reported but not judged

    @model_validator(mode="after")
    def _some_bound(self) -> Slices:
        if self.min is None and self.max is None:
            raise invalid("", "needs `min` and/or `max`")
        _ordered(self.min, self.max)
        return self


class Compliance(Strict):
    required_tags: list[str] = Field(default_factory=list)
    require_description: StrictBool = False


class Validation(Strict):
    mode: Literal["enabled", "dry_run", "disabled"] = "enabled"
    thresholds: dict[Metric, Threshold] = Field(min_length=1)
    slices: Slices | None = None
    compliance: Compliance = Field(default_factory=Compliance)


class RuleBaseline(Strict):
    """A Spark SQL expression over the held-out rows' features that gives a score."""

    kind: Literal["rule"]
    expr: str = Field(min_length=1)


class LabelBaseline(Strict):
    """The label's mean or median over the training window, for every row."""

    kind: Literal["mean", "median"]


class GroupMeanBaseline(Strict):
    """The label's mean over the training window per value of a column (the overall mean for unseen values)."""

    kind: Literal["group_mean"]
    by: str


class NoBaseline(Strict):
    """No baseline: the first deployment promotes a Challenger that passed the gates."""

    kind: Literal["none"]


Baseline = Annotated[RuleBaseline | LabelBaseline | GroupMeanBaseline | NoBaseline, Field(discriminator="kind")]


class Deployment(Strict):
    metric: Metric  # Challenger vs Champion
    min_improvement: Number  # promote only if challenger beats the incumbent by more than this, in the metric's direction
    baseline: Baseline  # what the first Challenger must beat when there is no Champion
    approval: Literal["not_required", "required"] = "not_required"


class Streaming(Strict):
    """`inference.streaming`."""

    source_table: str = "incoming"  # where arriving rows land (its quarantine table: `<source_table>_quarantine`)
    known_values: dict[str, list[str]] = Field(default_factory=dict)  # other values are quarantined
    max_files_per_trigger: StrictInt | None = Field(None, ge=1)  # a cap on a micro-batch (Delta's default: 1000 files)


class Inference(Strict):
    decision_threshold: Number = Field(0.5, ge=0, le=1)  # from this probability a row's predicted class is 1 (classification)
    streaming: Streaming = Field(default_factory=Streaming)


class ModelConfig(Strict):
    """conf/model.yml."""

    problem_type: ProblemType = metric_registry.CLASSIFICATION
    label: str
    description: str = ""  # what the model predicts, in a sentence: each registered version's description starts with it
    feature_tables: dict[str, FeatureTable] = Field(min_length=1)
    labels: Labels
    spine: Spine
    keys: Columns  # the spine's columns: what a caller gives to get a prediction
    feature_lookups: list[Lookup] = Field(min_length=1)
    on_demand_features: list[OnDemand] = Field(default_factory=list)
    features: Features
    training: Training
    validation: Validation
    deployment: Deployment
    inference: Inference
    _folder: Path | None = PrivateAttr(default=None)  # the conf folder it was read from

    @property
    def folder(self) -> Path:
        """The conf folder this model.yml was read from (relative paths in it resolve there)."""
        return self._folder or conf_dir()

    @model_validator(mode="after")
    def _metrics_of_the_problem_type(self) -> ModelConfig:
        """Every metric named is one of the problem type's."""
        named: list[tuple[tuple[str, ...], str]] = [(("validation", "thresholds", m), m) for m in self.validation.thresholds]
        if self.validation.slices is not None:
            named.append((("validation", "slices", "metric"), self.validation.slices.metric))
        named.append((("deployment", "metric"), self.deployment.metric))
        fits = [m.name for m in metric_registry.of(self.problem_type)]
        for at, name in named:
            if name not in fits:
                raise invalid(at, f"{name} is not a metric of problem_type {self.problem_type}: use one of {', '.join(fits)}")
        return self

    @property
    def class_threshold(self) -> float | None:
        """The decision threshold that makes a predicted class; None for regression (no class column)."""
        return self.inference.decision_threshold if self.problem_type == metric_registry.CLASSIFICATION else None

    @model_validator(mode="after")
    def _spine_is_a_keyed_table(self) -> ModelConfig:
        """The spine's id and timestamp are keys, and its table is keyed by the id and timed by the timestamp."""
        spine = self.spine
        for part in ("id", "timestamp"):
            if getattr(spine, part) not in self.keys:
                raise invalid(("spine", part), f"{getattr(spine, part)!r} is not one of `keys` {self.keys}")
        table = self.feature_tables.get(spine.table)
        if table is None:
            raise invalid(
                ("spine", "table"),
                f"{spine.table!r} is not a table of feature_tables ({', '.join(self.feature_tables)})"
                f"{suggest(spine.table, list(self.feature_tables))}",
            )
        if table.primary_keys != [spine.id] or table.timestamp_key != spine.timestamp:
            raise invalid(
                ("spine", "table"),
                f"{spine.table} is keyed by {table.primary_keys} at {table.timestamp_key}, "
                f"not by [{spine.id}] at {spine.timestamp}: the spine's table has one row per id",
            )
        return self

    @model_validator(mode="after")
    def _labels_make_the_keys_and_the_label(self) -> ModelConfig:
        needed = {**{k: "a column of `keys`" for k in self.keys}, self.label: "the label"}
        problem = _unmade(self.labels.select, needed)
        if problem:
            raise invalid(("labels", "select"), problem)
        if "labels" in self.feature_tables:
            raise invalid(("feature_tables", "labels"), "the name of the labels table: name the feature table otherwise")
        return self

    @model_validator(mode="after")
    def _aggregates_follow_the_spine(self) -> ModelConfig:
        """An aggregates table has a row per spine row, keyed as the spine table; its `by` columns
        are columns the spine table's select makes."""
        spine, spine_table = self.spine, self.feature_tables.get(self.spine.table)
        for name, table in self.feature_tables.items():
            if table.aggregates is None:
                continue
            at = ("feature_tables", name)
            if name == spine.table:
                raise invalid(at, "is the spine's table: it is made from a source (aggregates are computed over its rows)")
            aggregates.check_table(at, table.primary_keys, table.timestamp_key, table.aggregates, spine.id, spine.timestamp)
            if spine_table is None or spine_table.select is None:
                continue
            for agg_name, agg in table.aggregates.items():
                problem = _unmade(spine_table.select, {c: "a `by` column" for c in agg.by})
                if problem:
                    raise invalid((*at, "aggregates", agg_name, "by"), f"the spine table {spine.table}'s select {problem}")
        return self

    @model_validator(mode="after")
    def _baseline_groups_by_a_looked_up_column(self) -> ModelConfig:
        """group_mean groups the training window's rows, which hold the keys and the looked-up features."""
        baseline = self.deployment.baseline
        if isinstance(baseline, GroupMeanBaseline):
            known = [*self.keys, *(f for lookup in self.feature_lookups for f in lookup.features)]
            if baseline.by not in known:
                raise invalid(
                    ("deployment", "baseline", "by"),
                    f"{baseline.by!r} is not a key nor a looked-up feature{suggest(baseline.by, known)}",
                )
        return self

    @model_validator(mode="after")
    def _features_come_from_somewhere(self) -> ModelConfig:
        """Every model feature comes from a lookup, the spine or an on-demand function."""
        provided = set(self.keys)
        for i, lookup in enumerate(self.feature_lookups):
            at = f"feature_lookups.{i}"
            table = self.feature_tables.get(lookup.table)
            if table is None:
                raise invalid(
                    f"{at}.table",
                    f"{lookup.table!r} is not a table of feature_tables "
                    f"({', '.join(self.feature_tables)}){suggest(lookup.table, list(self.feature_tables))}",
                )
            if len(lookup.lookup_key) != len(table.primary_keys):
                raise invalid(
                    f"{at}.lookup_key", f"must list one spine column per primary key {table.primary_keys} of {lookup.table}"
                )
            for key, columns in (("lookup_key", lookup.lookup_key), ("timestamp_lookup_key", [lookup.timestamp_lookup_key])):
                if not set(columns) <= set(self.keys):
                    raise invalid(f"{at}.{key}", f"must be columns of `keys` {self.keys}")
            clash = provided & set(lookup.features)
            if clash:
                raise invalid(
                    f"{at}.features", f"feature(s) {', '.join(sorted(clash))} already come from `keys` or an earlier lookup"
                )
            provided |= set(lookup.features)
        for i, feature in enumerate(self.on_demand_features):
            unknown = [c for c in feature.inputs.values() if c not in provided]
            if unknown:
                raise invalid(
                    f"on_demand_features.{i}.inputs", f"input(s) {', '.join(unknown)} come from no lookup and are not keys"
                )
            if feature.output in provided:
                raise invalid(
                    f"on_demand_features.{i}.output", f"{feature.output} already comes from `keys`, a lookup or another function"
                )
            provided.add(feature.output)
        missing = [c for c in self.features.columns if c not in provided]
        if missing:
            raise invalid(
                "features", f"feature(s) {', '.join(missing)} come from no lookup, no on-demand function and are not keys"
            )
        return self


class Hyperparameters(Strict):
    """A hyperparameters file: the estimator and its parameters (unknown names fail when it is built)."""

    algorithm: Literal["hist_gradient_boosting", "logistic_regression", "ridge"]
    params: dict[str, Any] = Field(default_factory=dict)


def check_sources(model_cfg: ModelConfig, sources: Iterable[str]) -> None:
    """Every table's and the labels' `source` is a source of sources.yml (a cross-file check)."""
    known = list(sources)
    made = [(f"feature_tables.{name}.source", t.source) for name, t in model_cfg.feature_tables.items()]
    for name, table in model_cfg.feature_tables.items():
        made += [(f"feature_tables.{name}.aggregates.{a}.source", agg.source) for a, agg in (table.aggregates or {}).items()]
    for at, source in [*made, ("labels.source", model_cfg.labels.source)]:
        if source is not None and source not in known:
            raise ConfigError(
                f"{display_path(model_cfg.folder / FILE)}: {at}: {source!r} is not a source of sources.yml "
                f"({', '.join(known)}){suggest(source, known)}"
            )


def load_model_config(folder: Path | None = None) -> ModelConfig:
    """conf/model.yml (of `folder`, default the conf folder in use), checked."""
    folder = (folder or conf_dir()).resolve()
    cfg = parse_model(ModelConfig, read_yaml(folder / FILE), str(folder / FILE))
    cfg._folder = folder
    return cfg


def hyperparameters_path(path: str | Path | None, model_cfg: ModelConfig) -> Path:
    """The file given (relative: to the project folder, where run_pipeline.py's kernels run), else
    model.yml's training.hyperparameters_file (relative: to model.yml's conf folder)."""
    if path:
        chosen = Path(path).expanduser()
        return chosen if chosen.is_absolute() else PROJECT_DIR / chosen
    chosen = Path(model_cfg.training.hyperparameters_file).expanduser()
    return chosen if chosen.is_absolute() else model_cfg.folder / chosen


def load_hyperparameters(path: str | Path | None, model_cfg: ModelConfig) -> tuple[Path, Hyperparameters]:
    """A hyperparameters file (default: model.yml training.hyperparameters_file), checked.

    Returns its path and its algorithm and params.
    """
    chosen = hyperparameters_path(path, model_cfg)
    return chosen, parse_model(Hyperparameters, read_yaml(chosen), str(chosen))
