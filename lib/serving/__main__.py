"""`python -m lib.serving serve|start|stop|status --env ENV`: run or manage a serving server."""

from __future__ import annotations

import logging
import sys

from lib.core.config import EnvConfig
from lib.platform import registry
from lib.platform.services import cli
from lib.serving import server, settings


def _start(env: EnvConfig) -> None:
    running = server.start(env)
    print(f"{env.name} server at {running.url} (pid {running.pid})")


def _stop(env: EnvConfig) -> None:
    stopped = server.stop(env)
    print(f"stopped {env.name} server (pid {stopped.pid})" if stopped else f"no {env.name} server running")


def _status(env: EnvConfig) -> None:
    running = server.find(settings.load(env))
    print(f"{env.name} server at {running.url} (pid {running.pid})" if running else f"no {env.name} server running")


def main(argv: list[str]) -> int:
    registry.no_telemetry()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return cli.main(
        "lib.serving",
        argv,
        {"serve": server.serve, "start": _start, "stop": _stop, "status": _status},
        env_default="dev",
        description=__doc__,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
