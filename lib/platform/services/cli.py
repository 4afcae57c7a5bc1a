"""`python -m <server> <command> [--env E]`: the command line the lakehouse's servers share.

Errors a user can hit are one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from lib.core import config
from lib.core.config import EnvConfig
from lib.core.errors import LakehouseError

Command = Callable[[EnvConfig], int | None]


def main(
    prog: str,
    argv: list[str],
    commands: dict[str, Command],
    *,
    plain: dict[str, Callable[[], int | None]] | None = None,
    default: str | None = None,
    env_default: str = "prod",
    description: str | None = None,
) -> int:
    """Run one command: `commands` take the environment named by --env; `plain` ones take nothing.

    `default` is the command run when none is given. Returns the exit code (None counts as 0).
    """
    plain = plain or {}
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=description)
    parser.add_argument("command", choices=[*plain, *commands], nargs="?" if default else None, default=default)
    parser.add_argument("--env", default=env_default, help="environment in conf/environments.yml")
    args = parser.parse_args(argv)
    try:
        if args.command in plain:
            return plain[args.command]() or 0
        return commands[args.command](config.load_env(args.env)) or 0
    except LakehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def lakehouse_commands(
    name: str,
    start: Callable[[Path], str],
    stop: Callable[[Path], bool],
    status: Callable[[Path], str | None],
    remove: Callable[[Path], None],
) -> dict[str, Command]:
    """start|stop|status|remove of a server run per lakehouse (PostgreSQL, Kafka).

    start(home) -> its address; stop(home) -> whether one ran; status(home) -> its address or
    None; remove(home): stop it and delete its data.
    """

    def none(env: EnvConfig) -> str:
        return f"no {name} runs for {env.home}"

    return {
        "start": lambda env: print(start(env.home)),
        "stop": lambda env: None if stop(env.home) else print(none(env)),
        "status": lambda env: print(status(env.home) or none(env)),
        "remove": lambda env: remove(env.home),
    }
