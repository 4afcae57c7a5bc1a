"""The lakehouse's own PostgreSQL server: where the `jdbc` destination publishes by default.

Debian's PostgreSQL (`apt-get install postgresql`; `.ci/run` installs it) runs one server per
lakehouse, started on demand like the Spark server, on 127.0.0.1 only, trusting local
connections (it is this machine's own). A catalog is a database (`prod`, `staging`), a schema
a schema: `prod.<schema>.predictions` is table `<schema>.predictions` of database `prod`.
PostgreSQL refuses to run as root; as root, the data folder belongs to the `postgres` user, in
`/var/tmp/lakehouse-mlops-postgres/` (a path that user can reach), and its commands run as it.
`$LAKEHOUSE_JDBC_URL` (`jdbc:postgresql://host:port/`) names a server someone else runs.

    python -m lib.platform.services.postgres start|stop|status|remove [--env prod]   # remove: stop, delete the data
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from lib.core.errors import SetupError
from lib.platform.services import cli, processes
from lib.platform.services.managed import Service

URL_ENV_VAR = "LAKEHOUSE_JDBC_URL"  # jdbc:postgresql://host:port/ of a server to use instead
PORT_ENV_VAR = "LAKEHOUSE_POSTGRES_PORT"  # overrides the default port; 0 picks a free one
DEFAULT_PORT = 5442
START_TIMEOUT_S = 60.0
USER = "lakehouse"
_ROOT_DATA = Path("/var/tmp/lakehouse-mlops-postgres")


def bin_dir() -> Path:
    """The folder of PostgreSQL's server programs (the newest installed), or one SetupError line."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    which = shutil.which("initdb")
    if which:
        return Path(which).parent
    raise SetupError(
        "PostgreSQL's server programs are not installed (the jdbc destination needs them): "
        "apt-get install postgresql, or set LAKEHOUSE_JDBC_URL, or switch publish.jdbc off"
    )


def _service(home: Path) -> Service:
    # SIGINT is PostgreSQL's fast shutdown (SIGTERM's smart one waits for every client to leave);
    # one that does not stop is an error, not a SIGKILL: its data is kept.
    return Service("PostgreSQL", home / "postgres", log=_data(home) / "server.log", stop_signal=signal.SIGINT, kill_late=False)


def _data(home: Path) -> Path:
    if os.geteuid() != 0:
        return home / "postgres" / "data"
    return _ROOT_DATA / hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]


def _owner() -> str | None:
    """Who runs PostgreSQL's programs: the `postgres` user when we are root (PostgreSQL refuses
    root), else we (None)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise SetupError(
            "PostgreSQL refuses to run as root, and this machine has no `postgres` user to run it "
            "as: run as another user, or set LAKEHOUSE_JDBC_URL to a server you run"
        ) from None
    return "postgres"


def base_url(home: Path, say=print) -> str:
    """`jdbc:postgresql://127.0.0.1:<port>/` of the lakehouse's server (started if it is not
    running), or $LAKEHOUSE_JDBC_URL."""
    if os.environ.get(URL_ENV_VAR):
        return os.environ[URL_ENV_VAR]
    return f"jdbc:postgresql://127.0.0.1:{ensure(home, say)}/"


def running_url(home: Path) -> str | None:
    """Like base_url, but None instead of starting a server."""
    if os.environ.get(URL_ENV_VAR):
        return os.environ[URL_ENV_VAR]
    state = _service(home).read()
    return f"jdbc:postgresql://127.0.0.1:{state['port']}/" if state and processes.answers(state["port"]) else None


def drop_database(url: str, database: str) -> None:
    """Drop a catalog's database (a temporary environment's wipe)."""
    with connect(url, "postgres") as admin:
        admin.autocommit = True
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def has_data(home: Path) -> bool:
    """Whether the lakehouse's own server was ever set up (it may hold published periods)."""
    return (_data(home) / "PG_VERSION").exists()


def ensure(home: Path, say=print) -> int:
    """Start the lakehouse's PostgreSQL server unless it runs; returns its port."""
    return _service(home).ensure(lambda: _start(home, say), lambda state: _ready(Path(state["data"]), state["port"]), say)["port"]


def _start(home: Path, say) -> dict:
    data, binaries, owner = _data(home), bin_dir(), _owner()
    _stop_orphan(data)
    wanted = int(os.environ.get(PORT_ENV_VAR, DEFAULT_PORT))
    port = wanted if wanted and not processes.answers(wanted) else processes.free_port()
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if owner:
            shutil.chown(data, owner, owner)
            data.chmod(0o700)
        done = subprocess.run(
            [str(binaries / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-instructions"],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=data,
            user=owner,
            group=owner,
            extra_groups=[] if owner else None,
        )
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip().splitlines() or [f"exit code {done.returncode}"]
            raise SetupError(f"PostgreSQL: initdb failed: {why[-1]}")
    command = [
        str(binaries / "postgres"),
        "-D",
        str(data),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "unix_socket_directories=",
    ]
    state = _service(home).start(
        command, lambda state: _ready(data, state["port"]), START_TIMEOUT_S, cwd=data, user=owner, port=port, data=str(data)
    )
    say(f"started PostgreSQL on 127.0.0.1:{port} (data {data})")
    return state


def _ready(data: Path, port: int) -> bool:
    """Whether the server accepts connections: its postmaster.pid says `ready` (what pg_ctl waits for)."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except OSError:
        return False
    return len(lines) > 7 and lines[7].strip() == "ready" and processes.answers(port)


def _stop_orphan(data: Path) -> None:
    """Stop a server on this data folder that no state file names (its state file went missing,
    or an earlier version of this module started it with pg_ctl); a pid that is not PostgreSQL
    on this folder is left alone."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        runs_here = Path(f"/proc/{pid}/cwd").resolve() == data.resolve()  # the postmaster works in its data folder
    except (OSError, ValueError, IndexError):
        return
    if runs_here and not processes.terminate(pid, timeout=60, kill=False, sig=signal.SIGINT):
        raise SetupError(f"a PostgreSQL server on {data} (pid {pid}) that no state file names did not stop")


def stop(home: Path, say=print) -> bool:
    """Stop the lakehouse's PostgreSQL server; returns whether one ran."""
    stopped = _service(home).stop()
    if stopped is not None:
        say(f"stopped PostgreSQL (data {stopped['data']})")
    return stopped is not None


def remove(home: Path) -> None:
    """Stop the server and delete its data (`make clean`, a test run's clean-up)."""
    stop(home, say=lambda line: None)  # raises, keeping the data, if the server would not stop
    shutil.rmtree(_data(home), ignore_errors=True)


def connect(url: str, database: str):
    """A psycopg connection to `database` on the server at url (jdbc:postgresql://host:port/),
    creating the database first if it does not exist."""
    import psycopg

    host, port = _host_port(url)
    try:
        with psycopg.connect(host=host, port=port, user=USER, dbname="postgres", autocommit=True, connect_timeout=10) as admin:
            if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
                admin.execute(f'CREATE DATABASE "{database}"')
        return psycopg.connect(host=host, port=port, user=USER, dbname=database, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise SetupError(f"PostgreSQL at {url} is unreachable: {str(exc).strip().splitlines()[0]}") from None


def _host_port(url: str) -> tuple[str, int]:
    rest = url.removeprefix("jdbc:postgresql://").split("/")[0]
    host, _, port = rest.partition(":")
    return host, int(port or 5432)


def main(argv: list[str]) -> int:
    return cli.main(
        "lib.platform.services.postgres", argv, cli.lakehouse_commands("PostgreSQL server", base_url, stop, running_url, remove)
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
