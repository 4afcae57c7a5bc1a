"""The project's exception types: each carries a one-line message a user can act on."""


class LakehouseError(Exception):
    """Base class for errors a user can hit; the CLI prints only the message."""


class ConfigError(LakehouseError):
    """A config file, CLI argument or notebook parameter is missing or malformed."""


class SetupError(LakehouseError):
    """The machine lacks something the project needs (Java, Delta jars, data package)."""


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
