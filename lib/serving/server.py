"""Run, start, find and stop an environment's serving server.

`python -m lib.serving serve --env prod` runs it in the foreground (what `run_pipeline.py
--serve` does); `start` runs it in the background and waits until it answers. The server
writes <home>/serving/<env>/server.json (pid and URL) once it listens, restores the saved
endpoints, and on SIGTERM/SIGINT stops taking connections, finishes the requests in flight,
then writes every queued inference-table row before it exits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from lib.platform.services import processes
from lib.core.config import EnvConfig
from lib.core.errors import LakehouseError
from lib.serving import settings as serving_settings
from lib.serving.settings import Settings
from lib.core import names
from lib.core.errors import AccessDeniedError, ApiError
from lib.platform import registry
from lib.platform.catalog import Lakehouse
from lib.platform.registry import ModelRef
from lib.platform.spark.session import get_spark
from lib.serving import app as serving_app
from lib.serving.capture import CaptureWriter
from lib.serving.endpoints import Manager
from lib.serving.entity import Served
from lib.serving.online_store import store_path

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
        make_capture=lambda table: CaptureWriter(table, lakehouse, cfg.flush_seconds, cfg.max_queue,
                                                   after_failure=lakehouse.forget),
        check_version=check_version,
        saved=cfg.endpoints_file,
    )
    app = serving_app.build(manager, token, cfg.max_request_bytes)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.host, cfg.port))
    except OSError as exc:
        raise LakehouseError(f"cannot listen on {cfg.host}:{cfg.port} ({exc.strerror}): set "
                             f"{serving_settings.PORT_ENV_VAR} or serving.port in conf/environments.yml") from None
    host, port = sock.getsockname()[:2]
    url = f"http://{host}:{port}"
    server = _server_class()(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=30,
                                           access_log=False, lifespan="off"))
    cfg.folder.mkdir(parents=True, exist_ok=True)
    cfg.state_file.write_text(json.dumps({"pid": os.getpid(), "url": url, "env": env.name}))
    restored = manager.restore()
    log.info("serving %s at %s (%d saved endpoint(s) restored)", env.name, url, len(restored))
    print(f"serving {env.name} at {url}; token in {cfg.folder / 'token'}; Ctrl-C stops", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        app.app.state.serving["draining"] = True
        manager.close()  # requests have drained: write what capture still holds
        lakehouse.stop()
        if cfg.state_file.exists() and json.loads(cfg.state_file.read_text()).get("pid") == os.getpid():
            cfg.state_file.unlink()
        print(f"{env.name} server stopped", flush=True)


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            # SIGTERM/SIGINT stop the server gracefully, but unlike uvicorn's own handling they
            # are not re-raised afterwards: the inference tables must still be written.
            original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return Server


class _LazyLakehouse:
    """Spark for the inference-table writes: attached to the lakehouse's Spark server at the
    first write (no JVM in the serving process); after a failed write, attached anew."""

    def __init__(self, env: EnvConfig):
        self.env, self._lakehouse = env, None

    def __call__(self):
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


def find(cfg: Settings) -> Running | None:
    """The environment's running server, or None (a stale state file is removed)."""
    try:
        state = json.loads(cfg.state_file.read_text())
        os.kill(int(state["pid"]), 0)
    except (FileNotFoundError, ValueError, KeyError, ProcessLookupError, json.JSONDecodeError):
        cfg.state_file.unlink(missing_ok=True)
        return None
    except PermissionError:
        pass
    return Running(int(state["pid"]), state["url"])


def _answers(url: str, route: str = "/health") -> bool:
    try:
        with urllib.request.urlopen(url + route, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start(env: EnvConfig) -> Running:
    """The environment's server, started in the background if it is not running; returns once ready."""
    cfg = serving_settings.load(env)
    running = find(cfg)
    if running is not None and _answers(running.url):
        return running
    cfg.folder.mkdir(parents=True, exist_ok=True)
    with open(cfg.log_file, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "lib.serving", "serve", "--env", env.name],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, env=os.environ.copy())
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = cfg.log_file.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise LakehouseError(f"the {env.name} serving server exited at start: {tail[0]} (log: {cfg.log_file})")
        running = find(cfg)
        # Ready, not just alive: the saved endpoints are loaded again, so no caller gets a 503.
        if running is not None and running.pid == process.pid and _answers(running.url, "/ready"):
            return running
        time.sleep(0.2)
    process.terminate()
    raise LakehouseError(f"the {env.name} serving server did not answer within {START_TIMEOUT_S:.0f} s (log: {cfg.log_file})")


def stop(env: EnvConfig, timeout: float = 120.0) -> Running | None:
    """Stop the environment's server gracefully (SIGTERM, then wait); returns what was stopped."""
    cfg = serving_settings.load(env)
    running = find(cfg)
    if running is None:
        return None
    if processes.terminate(running.pid, timeout, kill=False):
        return running
    raise LakehouseError(f"the {env.name} server (pid {running.pid}) did not stop within {timeout:.0f} s")
