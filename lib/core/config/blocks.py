"""The service blocks of an environment (conf/environments.yml): `serving`, `spark`, `publish`,
`notifications`. They live in core so that every layer reads the same typed values; the layers
add what is theirs at run time (a server's folder, environment-variable overrides).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt, field_validator, model_validator

from lib.core.config.loading import Strict, invalid

Number = Annotated[float, Field(strict=True)]  # an int or a float, not text or a boolean


class Capture(Strict):
    """`serving.capture`: the inference table <catalog>.<schema>.<endpoint>_payload."""

    enabled: StrictBool = True
    flush_seconds: Number = Field(5.0, ge=0.05)  # captured rows are appended this often
    max_queue: StrictInt = Field(100_000, ge=1)  # rows waiting beyond this are dropped (and counted)


class Rollout(Strict):
    """`serving.rollout`: how the deployment job moves traffic to a new Champion."""

    steps: tuple[StrictInt, ...] = (100,)  # traffic % to the new version per step; the last is 100
    step_seconds: Number = Field(60.0, ge=0)  # live traffic observed between steps
    max_error_rate: Number = Field(0.01, ge=0)  # 5xx share of the new version's requests in a step
    max_p99_ms: Number = Field(1000.0, ge=0)  # p99 latency bound of the new version in a step
    min_requests: StrictInt = Field(50, ge=0)  # fewer requests in a step than this: the step is not judged

    @field_validator("steps")
    @classmethod
    def _rising_to_100(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps or steps[0] <= 0 or steps[-1] != 100 or any(not a < b for a, b in zip(steps, steps[1:])):
            raise ValueError(f"must be rising percentages ending at 100, e.g. [10, 50, 100], got {list(steps)}")
        return steps


class Serving(Strict):
    """`serving`: the environment's model serving endpoint (python run_pipeline.py --serve)."""

    host: str = "127.0.0.1"
    port: StrictInt = Field(ge=0, le=65535)  # 0 picks a free port
    endpoint: str = Field(min_length=1)  # the deployment job keeps it on the Champion
    max_request_mb: Number = Field(ge=0.001)  # larger request bodies get 413
    max_batch_rows: StrictInt = Field(ge=1)  # concurrent requests are scored together, up to this many rows
    capture: Capture = Field(default_factory=Capture)
    rollout: Rollout = Field(default_factory=Rollout)


class SparkSettings(Strict):
    """`spark`: the lakehouse's Spark "cluster"."""

    mode: Literal["connect", "local"] = "connect"
    port: int = Field(15002, ge=0, le=65535)  # taken or 0: a free port
    master: str = "local[2]"  # or spark://host:port, a standalone cluster
    driver_memory: str = "3g"
    conf: dict[str, str] = Field(default_factory=dict)  # more static confs for the server


class Switch(Strict):
    enabled: StrictBool = True


FileFormat = Literal["parquet", "csv"]


def _every_format() -> list[FileFormat]:
    return ["parquet", "csv"]


class FilesTarget(Switch):
    formats: list[FileFormat] = Field(default_factory=_every_format, min_length=1)


class JdbcTarget(Switch):
    enabled: StrictBool = False
    url: str | None = Field(None, pattern=r"^jdbc:postgresql://[^/]+/$")  # None: the lakehouse's own PostgreSQL


class KafkaTarget(Switch):
    enabled: StrictBool = False
    # host:port[,host:port]; None: the lakehouse's own broker (lib/platform/services/kafka_server.py)
    bootstrap_servers: str | None = Field(None, pattern=r"^[\w.-]+:\d+(,[\w.-]+:\d+)*$")


class Destinations(Strict):
    """`publish`: where predictions go, a scored period by batch inference, the stream's
    micro-batches by streaming inference (`kafka`, and its Delta table)."""

    delta: Switch = Field(default_factory=Switch)
    files: FilesTarget = Field(default_factory=FilesTarget)
    online: Switch = Field(default_factory=Switch)
    jdbc: JdbcTarget = Field(default_factory=JdbcTarget)
    kafka: KafkaTarget = Field(default_factory=KafkaTarget)

    def enabled(self) -> list[str]:
        """The batch destinations switched on."""
        return [name for name in ("delta", "files", "online", "jdbc") if getattr(self, name).enabled]

    @model_validator(mode="after")
    def _something_on(self) -> Destinations:
        if not self.enabled():
            raise invalid("", "every destination is switched off, so nothing would be published")
        return self


class Notifications(Strict):
    """`notifications`: who hears of a failed task."""

    webhook_url: str | None = Field(None, pattern=r"^https?://\S+$")  # gets a JSON POST when a task fails
