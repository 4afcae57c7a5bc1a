"""A local SparkSession with Delta Lake, after checking Java and the Delta jars up front.

Missing Java, a Java that Spark 4.2 cannot run on, or Delta jars that can be neither found
in the local caches nor downloaded each end in one SetupError line instead of a Py4J trace.
"""

from __future__ import annotations

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
SUPPORTED_JAVA = (17, 21)
_JAR_NAME = f"io.delta_delta-spark_{SPARK_BINARY}_{SCALA_BINARY}-{DELTA_VERSION}.jar"


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
    java = java_executable()
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
    return ivy_dir() / "jars" / f"lakehouse-mlops-{DELTA_PACKAGE.replace(':', '_')}.txt"


def cached_jars() -> list[str] | None:
    """The jar files Spark resolved for DELTA_PACKAGE, if all are still there.

    Spark's package resolution runs once (from ~/.m2, the Ivy cache or Maven Central); its
    result is recorded so that later sessions start offline, faster, and without Ivy's chatter.
    """
    try:
        jars = _manifest().read_text().split()
    except OSError:
        return None
    return jars if jars and all(Path(j.removeprefix("file://")).exists() for j in jars) else None


def delta_jars() -> list[str]:
    """The Delta jars: recorded from an earlier resolution, else resolved now (once)."""
    return cached_jars() or fetch_jars()


def fetch_jars() -> list[str]:
    """Resolve the Delta jars with Spark's own package mechanism, in a child process.

    The child's Ivy and Java output goes to a log file, so a failure is one SetupError line.
    """
    print(f"Fetching the Delta Lake jars ({DELTA_PACKAGE}) once...", flush=True)
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
        raise SetupError(f"Delta Lake jars {DELTA_PACKAGE} could not be resolved from ~/.m2, the Ivy "
                         f"cache or Maven Central (details in {log}): check the network, then run `make jars`")
    return jars


def _resolve_in_child() -> None:
    spark = (_base_builder("lakehouse-mlops-resolve")
             .config("spark.jars.packages", DELTA_PACKAGE).config("spark.jars.ivy", str(ivy_dir()))
             .getOrCreate())
    resolved = spark.sparkContext.getConf().get("spark.jars", "")
    spark.stop()
    if _JAR_NAME not in resolved:
        raise SystemExit(f"Spark resolved no {_JAR_NAME}: {resolved!r}")
    _manifest().write_text("\n".join(resolved.split(",")) + "\n")


def _base_builder(app_name: str):
    from pyspark.sql import SparkSession

    # spark_udf and pandas UDFs run in Python workers: they must use this environment's Python.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # no LAN address: everything is local
    return (
        SparkSession.builder.appName(app_name)
        .master(os.environ.get("LAKEHOUSE_SPARK_MASTER", "local[2]"))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", os.environ.get("LAKEHOUSE_SPARK_MEMORY", "3g"))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.log.level", "WARN")
    )


def get_spark(app_name: str = "lakehouse-mlops", warehouse: Path | None = None):
    """Start (or reuse) a local SparkSession with Delta Lake enabled.

    Args:
        app_name: shown in Spark's logs.
        warehouse: folder for Spark's own managed tables; ours live under the lakehouse root.
    """
    from pyspark.errors import PySparkRuntimeError
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    check_java()
    jars = delta_jars()
    builder = _base_builder(app_name).config("spark.jars", ",".join(jars))
    if warehouse is not None:
        builder = builder.config("spark.sql.warehouse.dir", str(warehouse))
    try:
        spark = builder.getOrCreate()
    except PySparkRuntimeError as exc:
        raise SetupError(f"Spark failed to start ({exc.getErrorClass()}); see the Java output above") from None
    spark.sparkContext.setLogLevel("WARN")
    return spark


def main(argv: list[str]) -> int:
    """`python -m lib.spark`: fetch the Delta jars once and check Delta works (`make jars`)."""
    from lib.errors import LakehouseError

    if argv == ["--resolve-in-child"]:
        _resolve_in_child()
        return 0
    try:
        get_spark("lakehouse-mlops-setup").range(1).count()  # checks Java, fetches the jars if needed
    except LakehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Delta Lake {DELTA_VERSION}: {len(delta_jars())} jars ready in {ivy_dir() / 'jars'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
