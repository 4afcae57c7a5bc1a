"""The project's exception types: each carries a one-line message a user can act on."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """An exception's first line of text (its type's name when it has none): what a one-line error quotes."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class LakehouseError(Exception):
    """Base class for errors a user can hit; the CLI prints only the message."""


class ConfigError(LakehouseError):
    """A config file, CLI argument or notebook parameter is missing or malformed."""


class SetupError(LakehouseError):
    """The machine lacks something the project needs (Java, Delta jars, data package)."""


class SourceDataError(LakehouseError):
    """A source's rows do not fit its declaration in sources.yml (a column, a type, an id)."""


class AccessDeniedError(LakehouseError):
    """An environment tried to write a catalog it may only read."""


class TableNotFoundError(LakehouseError):
    """A table named catalog.schema.table does not exist yet."""


class ModelNotFoundError(LakehouseError):
    """A registered model, version or alias does not exist."""


class ValidationFailedError(LakehouseError):
    """A model version failed its validation checks and must not be deployed."""


class JobFailedError(LakehouseError):
    """A task of a job failed; the message names the task and the failing cell."""


class ConcurrentDeploymentError(LakehouseError):
    """Another deployment moved the Champion while this one was comparing."""


class PublishError(LakehouseError):
    """A destination could not take a scored period: it keeps what it held (those before it in
    the publishing order hold the new period)."""


class ApiError(Exception):
    """An HTTP error answered as Databricks does: status, error_code and a message."""

    def __init__(self, status: int, error_code: str, message: str):
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message

    def body(self) -> dict[str, str]:
        return {"error_code": self.error_code, "message": self.message}


def bad(message: str) -> ApiError:
    return ApiError(400, "INVALID_PARAMETER_VALUE", message)
