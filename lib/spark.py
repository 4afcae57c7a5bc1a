"""Spark with Delta Lake for every notebook and entry point, after checking Java and the jars.

By default a process attaches to the lakehouse's Spark Connect server (lib.spark_server), as
a Databricks notebook attaches to a cluster; `spark.mode: local` starts a JVM in-process.
Missing Java, a Java that Spark 4.2 cannot run on, or Delta jars that can be neither found
in the local caches nor downloaded each end in one SetupError line instead of a Py4J trace.

    python -m lib.spark                        # fetch the Delta jars once, check Delta works
    python -m lib.spark start|stop|status      # the lakehouse's Spark server
    python -m lib.spark archive                # archive the server JVM's classes (faster starts)
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from lib.errors import SetupError

DELTA_VERSION = "4.4.0"
SPARK_BINARY = "4.2"
SCALA_BINARY = "2.13"
DELTA_PACKAGE = f"io.delta:delta-spark_{SPARK_BINARY}_{SCALA_BINARY}:{DELTA_VERSION}"
POSTGRES_JDBC_PACKAGE = "org.postgresql:postgresql:42.7.14"  # the driver of the `jdbc` destination
KAFKA_PACKAGE = f"org.apache.spark:spark-sql-kafka-0-10_{SCALA_BINARY}:4.2.0"  # the stream's Kafka sink
PACKAGES = (DELTA_PACKAGE, POSTGRES_JDBC_PACKAGE, KAFKA_PACKAGE)  # what every Spark here runs with
SUPPORTED_JAVA = (17, 21)
_JAR_NAME = f"io.delta_delta-spark_{SPARK_BINARY}_{SCALA_BINARY}-{DELTA_VERSION}.jar"
REMOTE_ENV_VAR = "SPARK_REMOTE"  # sc://host:port of a Spark Connect server to attach to
# What makes pyspark's builder, and Spark's own launcher, act as a Connect client (the launcher
# then leaves spark-sql off the classpath): never passed to a JVM that runs Spark itself.
CLIENT_ENV_VARS = (REMOTE_ENV_VAR, "SPARK_CONNECT_MODE_ENABLED", "SPARK_LOCAL_REMOTE")


def server_environment() -> dict[str, str]:
    """This process's environment for a process that runs Spark (a server, a master, a worker)."""
    return {k: v for k, v in os.environ.items() if k not in CLIENT_ENV_VARS}


def java_executable() -> str:
    """The java that Spark will launch: $JAVA_HOME/bin/java, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if not candidate.exists():
            raise SetupError(f"JAVA_HOME={java_home} has no bin/java: point it at a JDK 17 or 21")
        return str(candidate)
    found = shutil.which("java")
    if not found:
        raise SetupError("Java not found: install a JDK 17 (apt-get install openjdk-17-jdk-headless, "
                         "or use environment.yml) or set JAVA_HOME")
    return found


def check_java() -> int:
    """Return the Java major version, or raise SetupError saying what to install."""
    return _check_java(java_executable())


@functools.cache  # two `java` launches: once per process and java
def _check_java(java: str) -> int:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SetupError(f"{java} does not run ({exc}): install a JDK 17 or 21") from None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise SetupError(f"cannot tell the version of {java}: install a JDK 17 or 21")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0" style
        major = int(match.group(2))
    if major not in SUPPORTED_JAVA:
        raise SetupError(f"{java} is Java {major}; Spark {SPARK_BINARY} needs Java 17 or 21 "
                         "(install openjdk-17-jdk-headless or set JAVA_HOME)")
    try:
        modules = subprocess.run([java, "--list-modules"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        modules = ""
    if "jdk.incubator.vector" not in modules:
        raise SetupError(f"{java} is a trimmed Java runtime without jdk.incubator.vector: "
                         "install a full JDK 17 or 21 and set JAVA_HOME")
    return major


def ivy_dir() -> Path:
    """Spark's Ivy home, where resolved packages are cached (default ~/.ivy2.5.2)."""
    return Path(os.environ.get("LAKEHOUSE_IVY_DIR", Path.home() / ".ivy2.5.2"))


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
            code = subprocess.run([sys.executable, "-m", "lib.spark", "--resolve-in-child"],
                                  stdout=out, stderr=subprocess.STDOUT, timeout=900).returncode
        except subprocess.TimeoutExpired:
            code = -1
    jars = cached_jars()
    if code != 0 or not jars:
        raise SetupError(f"Spark's jars ({', '.join(PACKAGES)}) could not be resolved from ~/.m2, the Ivy "
                         f"cache or Maven Central (details in {log}): check the network, then run `make jars`")
    return jars


def _resolve_in_child() -> None:
    spark = (_base_builder("lakehouse-mlops-resolve")
             .config("spark.jars.packages", ",".join(PACKAGES)).config("spark.jars.ivy", str(ivy_dir()))
             .getOrCreate())
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
    return {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")}


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
        spark.version  # the first call: fails here, in one line, if nobody answers
    except Exception as exc:  # grpc and pyspark raise several types for "nobody there"
        if spark is not None:
            with contextlib.suppress(Exception):
                spark.client.close()  # else its clean-up at exit retries against nobody
        text = str(exc).strip()
        why = "nobody answers" if "UNAVAILABLE" in text or "RETRIES_EXCEEDED" in text else \
            (text.splitlines() or [type(exc).__name__])[0][:200]
        raise SetupError(f"cannot attach to the Spark server at {url}: {why} "
                         "(start one with `python -m lib.spark start`, or unset SPARK_REMOTE)") from None
    _attached[url] = spark
    return spark


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
    from lib import spark_server

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


def main(argv: list[str]) -> int:
    """`python -m lib.spark`: fetch the Delta jars once and check Delta works (`make jars`);
    `python -m lib.spark start|stop|status [--env NAME]`: the lakehouse's Spark server;
    `python -m lib.spark archive`: archive the server JVM's classes, so servers start faster."""
    import argparse

    from lib import config, spark_server
    from lib.errors import LakehouseError

    if argv == ["--resolve-in-child"]:
        _resolve_in_child()
        return 0
    parser = argparse.ArgumentParser(prog="python -m lib.spark", description=main.__doc__)
    parser.add_argument("command", nargs="?", choices=["start", "stop", "status", "archive"])
    parser.add_argument("--env", default="prod", help="whose settings (conf/environments.yml `spark`) to use")
    args = parser.parse_args(argv)
    try:
        if args.command == "archive":
            spark_server.build_class_archive()
            return 0
        if args.command:
            return spark_server.main(args.command, config.load_env(args.env))
        setup = _local("lakehouse-mlops-setup", None, spark_server.SparkSettings())
        setup.range(1).count()  # fetches the jars
        setup.stop()
        print(f"Delta Lake {DELTA_VERSION}, the PostgreSQL JDBC driver and the Kafka connector: {len(spark_jars())} jars ready in "
              f"{ivy_dir() / 'jars'}")
    except LakehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def to_pandas(df):
    """df.toPandas() without the query metrics Spark Connect attaches to the result's `attrs`:
    pandas deep-copies `attrs` on every operation, which makes later pandas work on the frame
    many times slower (seconds for a few thousand small operations)."""
    frame = df.toPandas()
    frame.attrs.clear()
    return frame
