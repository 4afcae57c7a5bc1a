"""What every pipeline notebook does first: check its parameters, then start its tools."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from lib.core import config
from lib.core.config import EnvConfig, ModelConfig, RunWindows
from lib.core.errors import AccessDeniedError
from lib.platform import registry
from lib.platform.catalog import Lakehouse
from lib.platform.registry import ModelRef
from lib.platform.spark.session import get_spark


@dataclass
class Session:
    env: EnvConfig
    as_of: dt.date
    windows: RunWindows
    model_cfg: ModelConfig
    lakehouse: Lakehouse

    @property
    def spark(self):
        return self.lakehouse.spark

    def own_model(self, model_uri: str) -> ModelRef:
        """Parse a `models:/` URI of this environment's own registered model.

        Like tables, models of another catalog may be read but never tagged or aliased.
        """
        ref = ModelRef.parse(model_uri)
        if ref.name != self.env.model_name:
            raise AccessDeniedError(
                f"environment {self.env.name} may only validate or deploy {self.env.model_name}, not {ref.name}"
            )
        registry.require_version(ref)
        return ref


def start(env: str, as_of: str | dt.date | None, app: str, use_mlflow: bool = True) -> Session:
    """Validate the notebook parameters `env` and `as_of`, then start Spark (and MLflow).

    Bad parameters fail here with one ConfigError line, before anything is read or written.
    """
    registry.no_telemetry()
    config.check_param("env", env, str)
    cfg = config.load_env(env)
    day = config.parse_as_of(as_of, cfg)
    model_cfg = config.load_model_config()
    spark = get_spark(app, env=cfg)  # attaches to the lakehouse's Spark server (started if needed)
    if use_mlflow:
        registry.configure(cfg)
    return Session(cfg, day, cfg.data.split(day), model_cfg, Lakehouse(spark, cfg))
