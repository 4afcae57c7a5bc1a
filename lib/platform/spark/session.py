"""A Spark session for a notebook or job: attached to the lakehouse's Spark Connect server (the
default, as a Databricks notebook attaches to its cluster) or a local in-process session.
"""

from __future__ import annotations

import os
from pathlib import Path

from lib.core.errors import SetupError
from lib.platform.services.java import check_java
from lib.platform.spark import server as spark_server
from lib.platform.spark.builder import REMOTE_ENV_VAR, _base_builder, attach, spark_jars


def get_spark(app_name: str = "lakehouse-mlops", env=None, warehouse: Path | None = None):
    """Spark for this process: attached to the lakehouse's Spark server, or in-process.

    Args:
        app_name: shown in Spark's logs.
        env: the environment (an EnvConfig); its `spark` settings choose the mode. In connect
            mode (the default) the session attaches to $SPARK_REMOTE, else to the lakehouse's
            server, started if it is not running. Without env: $SPARK_REMOTE or in-process.
        warehouse: in-process only: folder for Spark's own managed tables (ours live under the
            lakehouse root).
    """
    cfg = spark_server.settings(env) if env is not None else None
    mode = cfg.mode if cfg else os.environ.get(spark_server.MODE_ENV_VAR, "connect")
    if mode != "local":
        remote = os.environ.get(REMOTE_ENV_VAR) or (spark_server.ensure(env).url if env is not None else None)
        if remote:
            return attach(remote)
    if env is not None and warehouse is None:
        warehouse = env.home / "spark-warehouse"
    return _local(app_name, warehouse, cfg or spark_server.SparkSettings())


def _local(app_name: str, warehouse: Path | None, cfg):
    from pyspark.errors import PySparkRuntimeError
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    check_java()
    builder = _base_builder(app_name, cfg.master, cfg.driver_memory).config("spark.jars", ",".join(spark_jars()))
    for key, value in cfg.conf.items():
        builder = builder.config(key, value)
    if warehouse is not None:
        builder = builder.config("spark.sql.warehouse.dir", str(warehouse))
    try:
        spark = builder.getOrCreate()
    except PySparkRuntimeError as exc:
        raise SetupError(f"Spark failed to start ({exc.getErrorClass()}); see the Java output above") from None
    spark.sparkContext.setLogLevel("WARN")
    return spark
