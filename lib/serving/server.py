"""Run, start, find and stop an environment's serving server.

`python -m lib.serving serve --env prod` runs it in the foreground (what `run_pipeline.py
--serve` does); `start` runs it in the background and waits until it answers. The server
writes <home>/serving/<env>/server.json (pid and URL) once it listens, restores the saved
endpoints, and on SIGTERM/SIGINT stops taking connections, finishes the requests under way,
then writes every queued inference-table row before it exits.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass

from lib.core import names
from lib.core.config import EnvConfig
from lib.core.errors import AccessDeniedError, ApiError, LakehouseError
from lib.platform import registry
from lib.platform.catalog import Lakehouse
from lib.platform.registry import ModelRef
from lib.platform.services.managed import Service
from lib.platform.spark.session import get_spark
from lib.serving import app as serving_app
from lib.serving import settings as serving_settings
from lib.serving.capture import CaptureWriter
from lib.serving.endpoints import Manager
from lib.serving.entity import Served
from lib.serving.online_store import store_path
from lib.serving.settings import Settings

log = logging.getLogger("lib.serving")
START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Running:
    pid: int
    url: str


def serve(env: EnvConfig) -> None:
    """Run the server in this process until SIGTERM or SIGINT."""
    # Each served entity scores on its own thread; OpenMP teams per thread (HistGradientBoosting)
    # would oversubscribe the cores and spin-wait against each other. Set before sklearn loads.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import uvicorn

    cfg = serving_settings.load(env)
    running = find(cfg)
    if running is not None:
        raise LakehouseError(f"a {env.name} server already runs at {running.url} (pid {running.pid})")
    registry.configure(env)
    token = cfg.token(create=True)
    lakehouse = _LazyLakehouse(env)

    def check_version(name: str, version: str) -> None:
        try:
            names.check_own(env.catalog, name, f"the {env.name} server", "serve")
        except AccessDeniedError as exc:
            raise ApiError(403, "PERMISSION_DENIED", str(exc)) from None
        try:
            registry.require_version(ModelRef(name, version))
        except LakehouseError as exc:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", str(exc)) from None

    manager = Manager(
        env.catalog,
        make_served=lambda spec: Served(spec, store_path(env.home, env.catalog), cfg.max_batch_rows),
        make_capture=lambda table: CaptureWriter(
            table, lakehouse, cfg.flush_seconds, cfg.max_queue, after_failure=lakehouse.forget
        ),
        check_version=check_version,
        saved=cfg.endpoints_file,
    )
    app = serving_app.build(manager, token, cfg.max_request_bytes)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.host, cfg.port))
    except OSError as exc:
        raise LakehouseError(
            f"cannot listen on {cfg.host}:{cfg.port} ({exc.strerror}): set "
            f"{serving_settings.PORT_ENV_VAR} or serving.port in conf/environments.yml"
        ) from None
    host, port = sock.getsockname()[:2]
    url = f"http://{host}:{port}"
    server = _server_class()(
        uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=30, access_log=False, lifespan="off")
    )
    _service(cfg).record(os.getpid(), url=url, env=env.name)
    restored = manager.restore()
    log.info("serving %s at %s (%d saved endpoint(s) restored)", env.name, url, len(restored))
    print(f"serving {env.name} at {url}; token in {cfg.folder / 'token'}; Ctrl-C stops", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        app.app.state.serving["draining"] = True
        manager.close()  # requests have drained: write what capture still holds
        lakehouse.stop()
        _service(cfg).forget(os.getpid())
        print(f"{env.name} server stopped", flush=True)


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            # SIGTERM/SIGINT stop the server gracefully, but unlike uvicorn's own handling they
            # are not re-raised afterwards: the inference tables must still be written.
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


class _LazyLakehouse:
    """Spark for the inference-table writes: attached to the lakehouse's Spark server at the
    first write (no JVM in the serving process); after a failed write, attached anew."""

    def __init__(self, env: EnvConfig):
        self.env = env
        self._lakehouse: Lakehouse | None = None

    def __call__(self) -> Lakehouse:
        if self._lakehouse is None:
            self._lakehouse = Lakehouse(get_spark("serving-capture", env=self.env), self.env)
        return self._lakehouse

    def forget(self) -> None:
        """Attach again at the next write (the server may have been restarted)."""
        self.stop()
        self._lakehouse = None

    def stop(self) -> None:
        if self._lakehouse is not None:
            with contextlib.suppress(Exception):  # a server that is gone has nothing to release
                self._lakehouse.spark.stop()


def _service(cfg: Settings) -> Service:
    # SIGTERM drains: requests under way finish and queued inference-table rows are written, so
    # one that does not stop in time is an error, not a SIGKILL.
    return Service(f"the {cfg.folder.name} serving server", cfg.folder, stop_timeout=120.0, kill_late=False)


def find(cfg: Settings) -> Running | None:
    """The environment's running server, or None (a stale state file is removed)."""
    state = _service(cfg).read()
    return Running(int(state["pid"]), state["url"]) if state is not None else None


def _answers(url: str, route: str = "/health") -> bool:
    try:
        with urllib.request.urlopen(url + route, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start(env: EnvConfig, say=print) -> Running:
    """The environment's server, started in the background if it is not running; returns once ready."""
    cfg = serving_settings.load(env)
    service = _service(cfg)
    # Ready, not just alive: the saved endpoints are loaded again, so no caller gets a 503. The
    # server writes its state itself, once it listens (its port may be a free one).
    launch = functools.partial(
        service.start,
        [sys.executable, "-m", "lib.serving", "serve", "--env", env.name],
        lambda state: _answers(state["url"], "/ready"),
        START_TIMEOUT_S,
        env=os.environ.copy(),
        record=False,
    )
    state = service.ensure(launch, lambda state: _answers(state["url"]), say)
    return Running(int(state["pid"]), state["url"])


def stop(env: EnvConfig, timeout: float = 120.0) -> Running | None:
    """Stop the environment's server gracefully (SIGTERM, then wait); returns what was stopped."""
    stopped = _service(serving_settings.load(env)).stop(timeout=timeout)
    return Running(int(stopped["pid"]), stopped["url"]) if stopped is not None else None
