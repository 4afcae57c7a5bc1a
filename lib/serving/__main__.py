"""`python -m lib.serving serve|start|stop|status --env ENV`: run or manage a serving server."""

from __future__ import annotations

import argparse
import logging
import sys

from lib.core import config
from lib.platform import registry
from lib.core.errors import LakehouseError
from lib.serving import server
from lib.serving import settings


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.serving", description=__doc__)
    parser.add_argument("command", choices=["serve", "start", "stop", "status"])
    parser.add_argument("--env", default="dev", help="environment in conf/environments.yml")
    args = parser.parse_args(argv)
    registry.no_telemetry()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        env = config.load_env(args.env)
        if args.command == "serve":
            server.serve(env)
        elif args.command == "start":
            running = server.start(env)
            print(f"{env.name} server at {running.url} (pid {running.pid})")
        elif args.command == "stop":
            stopped = server.stop(env)
            print(f"stopped {env.name} server (pid {stopped.pid})" if stopped else f"no {env.name} server running")
        else:
            running = server.find(settings.load(env))
            print(f"{env.name} server at {running.url} (pid {running.pid})" if running else f"no {env.name} server running")
    except LakehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
