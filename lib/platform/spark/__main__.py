"""`python -m lib.platform.spark`: fetch the jars, start or stop the Spark server, archive its classes.
"""

from __future__ import annotations


import sys
from lib.platform.services.java import ivy_dir
from lib.platform.spark.builder import DELTA_VERSION, _resolve_in_child, spark_jars
from lib.platform.spark.session import _local
from lib.core import config
from lib.core.errors import LakehouseError
from lib.platform.spark import server as spark_server



def main(argv: list[str]) -> int:
    """`python -m lib.platform.spark`: fetch the Delta jars once and check Delta works (`make jars`);
    `python -m lib.platform.spark start|stop|status [--env NAME]`: the lakehouse's Spark server;
    `python -m lib.platform.spark archive`: archive the server JVM's classes, so servers start faster."""
    import argparse  # noqa: PLC0415 - only the CLI needs it


    if argv == ["--resolve-in-child"]:
        _resolve_in_child()
        return 0
    parser = argparse.ArgumentParser(prog="python -m lib.platform.spark", description=main.__doc__)
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

