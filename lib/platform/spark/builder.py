"""Spark with Delta Lake for every notebook and entry point, after checking Java and the jars.

By default a process attaches to the lakehouse's Spark Connect server (lib.platform.spark.server), as
a Databricks notebook attaches to a cluster; `spark.mode: local` starts a JVM in-process.
Missing Java, a Java that Spark 4.2 cannot run on, or Delta jars that can be neither found
in the local caches nor downloaded each end in one SetupError line instead of a Py4J trace.

    python -m lib.platform.spark                        # fetch the Delta jars once, check Delta works
    python -m lib.platform.spark start|stop|status      # the lakehouse's Spark server
    python -m lib.platform.spark archive                # archive the server JVM's classes (faster starts)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

from lib.core.errors import SetupError
from lib.platform.services.java import ivy_dir

DELTA_VERSION = "4.4.0"


SPARK_BINARY = "4.2"


SCALA_BINARY = "2.13"


DELTA_PACKAGE = f"io.delta:delta-spark_{SPARK_BINARY}_{SCALA_BINARY}:{DELTA_VERSION}"


POSTGRES_JDBC_PACKAGE = "org.postgresql:postgresql:42.7.14"  # the driver of the `jdbc` destination


KAFKA_PACKAGE = f"org.apache.spark:spark-sql-kafka-0-10_{SCALA_BINARY}:4.2.0"  # the stream's Kafka sink


PACKAGES = (DELTA_PACKAGE, POSTGRES_JDBC_PACKAGE, KAFKA_PACKAGE)  # what every Spark here runs with


_JAR_NAME = f"io.delta_delta-spark_{SPARK_BINARY}_{SCALA_BINARY}-{DELTA_VERSION}.jar"


REMOTE_ENV_VAR = "SPARK_REMOTE"  # sc://host:port of a Spark Connect server to attach to


# What makes pyspark's builder, and Spark's own launcher, act as a Connect client (the launcher
# then leaves spark-sql off the classpath): never passed to a JVM that runs Spark itself.
CLIENT_ENV_VARS = (REMOTE_ENV_VAR, "SPARK_CONNECT_MODE_ENABLED", "SPARK_LOCAL_REMOTE")


def server_environment() -> dict[str, str]:
    """This process's environment for a process that runs Spark (a server, a master, a worker)."""
    return {k: v for k, v in os.environ.items() if k not in CLIENT_ENV_VARS}


def _manifest() -> Path:
    return ivy_dir() / "jars" / f"lakehouse-mlops-{hashlib.sha256(','.join(PACKAGES).encode()).hexdigest()[:12]}.txt"


def cached_jars() -> list[str] | None:
    """The jar files Spark resolved for PACKAGES, if all are still there.

    Spark's package resolution runs once (from ~/.m2, the Ivy cache or Maven Central); its
    result is recorded so that later sessions start offline, faster, and without Ivy's chatter.
    """
    try:
        jars = _manifest().read_text().split()
    except OSError:
        return None
    if not jars or not all(Path(j.removeprefix("file://")).exists() for j in jars):
        return None
    return _not_shipped(jars)


def _artifact(jar: str, grouped: bool) -> str:
    """A jar's artifact name: `[group_]parquet-hadoop-1.16.0.jar` -> `parquet-hadoop`.

    Ivy names its cached jars `<group>_<artifact>-<version>.jar`; pyspark's jars/ has no group.
    """
    name = jar.rsplit("/", 1)[-1]
    if grouped:
        name = name.partition("_")[2]
    return re.sub(r"-\d[\w.]*(-\d+)?\.jar$", "", name)


def _not_shipped(jars: list[str]) -> list[str]:
    """Drop the jars pyspark already ships, newer: Ivy brings older hadoop, parquet, jackson..."""
    shipped = {_artifact(p.name, grouped=False) for p in (spark_home() / "jars").glob("*.jar")}
    return [j for j in jars if _artifact(j, grouped=True) not in shipped]


def spark_jars() -> list[str]:
    """Delta Lake's jars, the JDBC driver and the Kafka connector: recorded from an earlier resolution,
    else resolved now (once)."""
    return cached_jars() or fetch_jars()


def fetch_jars() -> list[str]:
    """Resolve the Delta jars with Spark's own package mechanism, in a child process.

    The child's Ivy and Java output goes to a log file, so a failure is one SetupError line.
    """
    print(f"Fetching Spark's jars ({', '.join(PACKAGES)}) once...", flush=True)
    log = ivy_dir() / "lakehouse-mlops-resolve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        try:
            code = subprocess.run(
                [sys.executable, "-m", "lib.platform.spark", "--resolve-in-child"],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=900,
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
    jars = cached_jars()
    if code != 0 or not jars:
        raise SetupError(
            f"Spark's jars ({', '.join(PACKAGES)}) could not be resolved from ~/.m2, the Ivy "
            f"cache or Maven Central (details in {log}): check the network, then run `make jars`"
        )
    return jars


def _resolve_in_child() -> None:
    spark = (
        _base_builder("lakehouse-mlops-resolve")
        .config("spark.jars.packages", ",".join(PACKAGES))
        .config("spark.jars.ivy", str(ivy_dir()))
        .getOrCreate()
    )
    resolved = spark.sparkContext.getConf().get("spark.jars", "")
    spark.stop()
    for jar in (_JAR_NAME, "org.postgresql_postgresql-", "org.apache.spark_spark-sql-kafka"):
        if jar not in resolved:
            raise SystemExit(f"Spark resolved no {jar}: {resolved!r}")
    _manifest().write_text("\n".join(resolved.split(",")) + "\n")


# Static confs of every Spark this project starts: the Connect server and in-process sessions.
SESSION_CONFS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # The default 50 costs every snapshot of a small table 50 tasks: seconds per operation.
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.log.level": "WARN",
}


def spark_home() -> Path:
    """pyspark's own Spark distribution (its bin/ and jars/)."""
    import pyspark

    return Path(pyspark.__file__).parent


def worker_environment() -> dict[str, str]:
    """What Spark's Python workers need: this environment's Python (spark_udf and pandas UDFs
    import pandas and lib from it), and no LAN address: everything is local."""
    return {
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
    }


def _base_builder(app_name: str, master: str = "local[2]", memory: str = "3g"):
    from pyspark.sql import SparkSession

    for key in CLIENT_ENV_VARS:  # else pyspark's builder attaches instead
        os.environ.pop(key, None)
    for key, value in worker_environment().items():
        os.environ.setdefault(key, value)
    builder = SparkSession.builder.appName(app_name).master(master).config("spark.driver.memory", memory)
    for key, value in SESSION_CONFS.items():
        builder = builder.config(key, value)
    return builder


_attached: dict = {}  # url -> this process's session to that server


def attach(url: str):
    """A Spark Connect session to the server at url (sc://host:port), checked to answer."""
    from pyspark.sql import SparkSession
    from pyspark.sql.connect.client.retries import DefaultPolicy

    known = _attached.get(url)
    if known is not None and not known.is_stopped:
        return known
    spark = None
    try:
        # create(), not getOrCreate(): that would hand back a session to another server. No
        # builder options: applying them is a call, made before the retry policy below is set.
        spark = SparkSession.builder.remote(url).create()
        # A server that is gone fails a call within ~10 s, not after pyspark's default 10 minutes.
        spark.client.set_retry_policies([DefaultPolicy(max_retries=6, max_backoff=2000)])
        _ = spark.version  # the first call: fails here, in one line, if nobody answers
    except Exception as exc:  # grpc and pyspark raise several types for "nobody there"
        if spark is not None:
            with contextlib.suppress(Exception):
                spark.client.close()  # else its clean-up at exit retries against nobody
        text = str(exc).strip()
        why = (
            "nobody answers"
            if "UNAVAILABLE" in text or "RETRIES_EXCEEDED" in text
            else (text.splitlines() or [type(exc).__name__])[0][:200]
        )
        raise SetupError(
            f"cannot attach to the Spark server at {url}: {why} "
            "(start one with `python -m lib.platform.spark start`, or unset SPARK_REMOTE)"
        ) from None
    _attached[url] = spark
    return spark


def to_pandas(df):
    """df.toPandas() without the query metrics Spark Connect attaches to the result's `attrs`:
    pandas deep-copies `attrs` on every operation, which makes later pandas work on the frame
    many times slower (seconds for a few thousand small operations)."""
    frame = df.toPandas()
    frame.attrs.clear()
    return frame
