"""`python -m lib.platform.spark`: fetch the jars, start or stop the Spark server, archive its classes."""

from __future__ import annotations

import functools
import sys

from lib.platform.services import cli
from lib.platform.services.java import ivy_dir
from lib.platform.spark import server as spark_server
from lib.platform.spark.builder import DELTA_VERSION, _resolve_in_child, spark_jars
from lib.platform.spark.session import _local


def _jars() -> None:
    setup = _local("lakehouse-mlops-setup", None, spark_server.SparkSettings())
    setup.range(1).count()  # fetches the jars
    setup.stop()
    print(
        f"Delta Lake {DELTA_VERSION}, the PostgreSQL JDBC driver and the Kafka connector: {len(spark_jars())} jars ready in "
        f"{ivy_dir() / 'jars'}"
    )


def _archive() -> None:
    spark_server.build_class_archive()


def main(argv: list[str]) -> int:
    """`python -m lib.platform.spark [jars]`: fetch the Delta jars once and check Delta works (`make jars`);
    `python -m lib.platform.spark start|stop|status [--env NAME]`: the lakehouse's Spark server;
    `python -m lib.platform.spark archive`: archive the server JVM's classes, so servers start faster."""
    if argv == ["--resolve-in-child"]:
        _resolve_in_child()
        return 0
    return cli.main(
        "lib.platform.spark",
        argv,
        {verb: functools.partial(spark_server.main, verb) for verb in ("start", "stop", "status")},
        plain={"jars": _jars, "archive": _archive},
        default="jars",
        description=main.__doc__,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
