"""One home for the names several layers share: aliases, registry tag keys, table and topic names.

Every module that writes or reads one of these calls this module, so a rename happens here once.
Names follow Unity Catalog's three levels, `<catalog>.<schema>.<name>`.
"""

from __future__ import annotations

from lib.core.errors import AccessDeniedError

# Model aliases (Unity Catalog's free-form aliases, as the guide names them).
CHAMPION = "Champion"
CHALLENGER = "Challenger"
PREVIOUS = "Previous"  # the Champion before the current one: what a rollback returns to

# Registry tag keys on a model version.
VALIDATION_STATUS = "model_validation_status"  # PENDING -> PASSED | FAILED
VALIDATION_PREFIX = "validation."  # validation.<check>: "<verdict>: <value> (needs <threshold>)"
VALIDATION_MODE = "validation.mode"
APPROVAL = "approval.status"
APPROVAL_BY = "approval.by"
APPROVAL_AT = "approval.at"
DECISION = "deployment.decision"
REASON = "deployment.reason"
DECISION_RUN = "deployment.run"
ALIAS_PREFIX = "alias."


def validation_tag(check: str) -> str:
    """The tag holding one validation check's verdict."""
    return f"{VALIDATION_PREFIX}{check}"


def alias_tags(alias: str, removed: bool = False) -> tuple[str, str, str]:
    """The (at, by, reason) tag keys recording when an alias was set on a version, or removed from it."""
    stem = f"{ALIAS_PREFIX}{alias}.{'removed_' if removed else ''}"
    return f"{stem}at", f"{stem}by", f"{stem}reason"


def alias_events(tags: dict[str, str]) -> list[tuple[str, str, bool]]:
    """(alias, time, removed) for every alias move recorded in a version's tags."""
    events = []
    for key, value in tags.items():
        if key.startswith(ALIAS_PREFIX) and key.endswith((".at", ".removed_at")):
            alias = key[len(ALIAS_PREFIX) :].split(".")[0]
            events.append((alias, value, key.endswith(".removed_at")))
    return events


def full_name(catalog: str, schema: str, name: str) -> str:
    """A three-level Unity Catalog name."""
    return f"{catalog}.{schema}.{name}"


def payload_prefix(endpoint: str) -> str:
    """The inference-table prefix of an endpoint (auto_capture_config's table_name_prefix)."""
    return endpoint.replace("-", "_")


def payload_table(catalog: str, schema: str, endpoint: str) -> str:
    """The inference (payload) table of an endpoint: `<catalog>.<schema>.<endpoint>_payload`."""
    return full_name(catalog, schema, f"{payload_prefix(endpoint)}_payload")


def payload_of_prefix(catalog: str, schema: str, prefix: str) -> str:
    """The payload table of an auto_capture_config's catalog, schema and table_name_prefix."""
    return full_name(catalog, schema, f"{prefix}_payload")


def serving_metrics_table(payload: str) -> str:
    """Requests, errors and latency per served entity and window of an inference table."""
    return f"{payload}_serving_metrics"


def profile_metrics_table(table: str) -> str:
    """Lakehouse Monitoring's profile metrics table of a monitored table."""
    return f"{table}_profile_metrics"


def drift_metrics_table(table: str) -> str:
    """Lakehouse Monitoring's drift metrics table of a monitored table."""
    return f"{table}_drift_metrics"


def quarantine_table(table: str) -> str:
    """Where a stream sets aside the malformed rows of a table."""
    return f"{table}_quarantine"


def topic(catalog: str, schema: str, endpoint: str) -> str:
    """The Kafka topic of an endpoint's predictions: `<catalog>.<schema>.<endpoint>.predictions`."""
    return f"{catalog}.{schema}.{endpoint}.predictions"


def catalog_of(name: str) -> str:
    """The catalog of a three-level name (its first part)."""
    return name.split(".", 1)[0]


def check_own(own_catalog: str, name: str, who: str, action: str = "write") -> None:
    """The own-catalog rule: an environment writes only tables and models of its own catalog
    (it may read others', as dev reads prod's data). Raises AccessDeniedError otherwise.

    Args:
        who: the writer, for the message: "environment dev", "the staging server".
    """
    catalog = catalog_of(name)
    if catalog != own_catalog:
        raise AccessDeniedError(
            f"{who} may not {action} {name}: catalog {catalog} is read-only here ({who} writes only catalog {own_catalog})"
        )
