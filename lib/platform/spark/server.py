"""The lakehouse's Spark "cluster": one Spark Connect server that notebooks attach to.

Databricks notebooks attach to a running cluster instead of each starting Spark; here one
Spark Connect server per lakehouse root plays the cluster. `ensure` starts it on demand (or
reuses it), and restarts it when it runs stale code or settings: its Python workers import
`lib`, and static confs are fixed at start. State and log live in `<home>/spark/`:
`server.json` (pid, url, what it was started with) and `server.log`.

    python -m lib.platform.spark start|stop|status [--env prod]
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lib.core.config import PROJECT_DIR, EnvConfig, parse_model
from lib.core.config.blocks import SparkSettings
from lib.platform.services import java, processes
from lib.platform.services.managed import Service
from lib.platform.spark import builder as spark

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
MODE_ENV_VAR = "LAKEHOUSE_SPARK_MODE"  # overrides spark.mode: connect or local
PORT_ENV_VAR = "LAKEHOUSE_SPARK_PORT"  # overrides spark.port; 0 picks a free port
MASTER_ENV_VAR = "LAKEHOUSE_SPARK_MASTER"  # overrides spark.master, e.g. spark://127.0.0.1:7077
START_TIMEOUT_S = 180.0


def settings(env: EnvConfig) -> SparkSettings:
    """The environment's Spark settings, with the environment-variable overrides applied."""
    overrides = {
        key: os.environ[var]
        for key, var in (("mode", MODE_ENV_VAR), ("port", PORT_ENV_VAR), ("master", MASTER_ENV_VAR))
        if os.environ.get(var)
    }
    if not overrides:
        return env.spark
    return parse_model(
        SparkSettings,
        {**env.spark.model_dump(), **overrides},
        f"environment variables over conf/environments.yml (environment {env.name})",
        "spark",
    )


@dataclass(frozen=True)
class Running:
    pid: int
    url: str
    log: Path
    started_at: float


def folder(home: Path) -> Path:
    return home / "spark"


def log_file(home: Path) -> Path:
    return folder(home) / "server.log"


def _service(home: Path) -> Service:
    return Service("the Spark server", folder(home))


def _running(state: dict, home: Path) -> Running:
    return Running(int(state["pid"]), state["url"], log_file(home), float(state["started_at"]))


def server_confs(cfg: SparkSettings, warehouse: Path) -> dict[str, str]:
    """Every conf the server starts with: the same as an in-process session, plus cfg.conf."""
    return {**spark.SESSION_CONFS, "spark.sql.warehouse.dir": str(warehouse), **cfg.conf}


def fingerprint(cfg: SparkSettings, jars: list[str], confs: dict[str, str]) -> str:
    """What the server runs: the `lib` sources, the settings, jars and confs it started with."""
    digest = hashlib.sha256()
    for path in sorted((PROJECT_DIR / "lib").rglob("*.py")):
        digest.update(path.relative_to(PROJECT_DIR).as_posix().encode() + b"\0" + path.read_bytes())
    digest.update(json.dumps([cfg.model_dump(), jars, confs, sys.executable], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def find(home: Path) -> tuple[Running, dict] | None:
    """The running server of this lakehouse and its state, or None (a stale state file is removed)."""
    state = _service(home).read()
    return (_running(state, home), state) if state is not None else None


def _answers(url: str) -> bool:
    host, port = url.removeprefix("sc://").split(":")
    with contextlib.suppress(OSError), socket.create_connection((host, int(port.split("/")[0])), timeout=1):
        return True
    return False


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_port(wanted: int) -> tuple[int, str]:
    """The configured port if free, else a free one (and a line saying so)."""
    if wanted and _free(wanted):
        return wanted, ""
    port = processes.free_port()
    note = f"port {wanted} is taken by another program: the Spark server uses port {port}" if wanted else ""
    return port, note


def ensure(env: EnvConfig, say=print) -> Running:
    """The lakehouse's Spark server, started if it is not running and restarted if it is stale."""
    cfg = settings(env)
    java.check_java()
    jars = spark.spark_jars()
    confs = server_confs(cfg, env.home / "spark-warehouse")
    wanted = fingerprint(cfg, jars, confs)
    state = _service(env.home).ensure(
        lambda: _start(env.home, cfg, jars, confs, wanted, say),
        lambda state: _answers(state["url"]),
        say,
        fingerprint=wanted,
        changed="lib/ or its settings changed since it started",
    )
    return _running(state, env.home)


def class_archive() -> Path:
    """The server JVM's classes, archived once at set-up (`make install`) with the JDK's class data
    sharing: a server that maps them starts and runs its first Delta write about twice as fast.
    An archive made by another JDK or for other jars is ignored by the JVM."""
    return Path(sys.prefix) / "lakehouse-spark-server.jsa"


def _command(cfg: SparkSettings, jars: list[str], confs: dict[str, str], port: int, archive_to: Path | None = None) -> list[str]:
    command = [
        str(spark.spark_home() / "bin" / "spark-submit"),
        "--class",
        SERVER_CLASS,
        "--name",
        "lakehouse-mlops",
        "--master",
        cfg.master,
        "--driver-memory",
        cfg.driver_memory,
        "--jars",
        ",".join(jars),
    ]
    java = [confs.get("spark.driver.extraJavaOptions", "")]
    if archive_to is not None:
        java.append(f"-XX:ArchiveClassesAtExit={archive_to}")
    elif class_archive().exists():
        java.append(f"-XX:SharedArchiveFile={class_archive()}")
    extra = {"spark.driver.extraJavaOptions": " ".join(filter(None, java))} if any(java) else {}
    for key, value in {
        **confs,
        **extra,
        "spark.connect.grpc.binding.port": str(port),
        "spark.connect.grpc.binding.address": "127.0.0.1",
    }.items():
        command += ["--conf", f"{key}={value}"]
    return command + ["spark-internal"]


def build_class_archive(say=print) -> Path | None:
    """Start a server once, run a small Delta workload through it, and archive the classes its
    JVM loaded (written when it exits). Returns the archive, or None (and a line) if the JDK
    made none: the server then starts without one, as before."""
    import tempfile

    target = class_archive()
    partial = target.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lakehouse-class-archive-") as tmp:
        home = Path(tmp)
        folder(home).mkdir()
        cfg = SparkSettings(port=0)
        confs = server_confs(cfg, home / "spark-warehouse")
        state = _start(home, cfg, spark.spark_jars(), confs, "class-archive", say=lambda line: None, archive_to=partial)
        try:
            session = spark.attach(state["url"])
            _warm_up(session, home / "warm-up")
            session.stop()
        except Exception as exc:  # an archive of what loaded so far still helps: go on, and say so
            say(f"the class archive's warm-up stopped early ({type(exc).__name__}: {str(exc).strip()[:200]})")
        finally:
            exited = processes.terminate(state["pid"], timeout=120, kill=False)
            if not exited:
                processes.terminate(state["pid"], timeout=10)
        if not exited or not partial.exists() or partial.stat().st_size == 0:
            partial.unlink(missing_ok=True)
            say(f"no class archive was made ({processes.last_error(log_file(home))}): the Spark server starts without one")
            return None
    partial.replace(target)
    say(f"archived the Spark server's classes in {target} ({time.monotonic() - started:.0f}s)")
    return target


def _warm_up(session, path: Path) -> None:
    """What the pipeline's tasks do, in small: the classes they load go into the archive."""
    import pandas as pd
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    frame = pd.DataFrame({"k": ["a", "b", "c"] * 100, "x": range(300), "t": pd.date_range("2013-01-01", periods=300, freq="h")})
    df = session.createDataFrame(frame)
    df.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(str(path))
    df.where("x < 10").write.format("delta").mode("overwrite").option("replaceWhere", "x < 10").save(str(path))
    table = session.read.format("delta").load(str(path))
    first = Window.partitionBy("k").orderBy(F.col("t").desc())
    (
        table.withColumn("n", F.row_number().over(first))
        .where("n = 1")
        .join(table.groupBy("k").agg(F.count("*").alias("rows"), F.avg("x").alias("mean")), "k")
        .mapInPandas(lambda frames: frames, "k string, x long, t timestamp, n int, rows long, mean double")
        .toPandas()
    )
    for statement in (
        f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('warm' = 'up')",
        f"DESCRIBE DETAIL delta.`{path}`",
        f"DESCRIBE HISTORY delta.`{path}`",
        f"MERGE INTO delta.`{path}` t USING (SELECT 1L AS x) s ON t.x = s.x WHEN MATCHED THEN DELETE",
    ):
        session.sql(statement).collect()


def _start(
    home: Path, cfg: SparkSettings, jars: list[str], confs: dict[str, str], fingerprint_: str, say, archive_to: Path | None = None
) -> dict:
    port, note = _pick_port(cfg.port)
    if note:
        say(note)
    url = f"sc://127.0.0.1:{port}"
    started = time.monotonic()
    state = _service(home).start(
        _command(cfg, jars, confs, port, archive_to),
        lambda state: _answers(state["url"]),
        START_TIMEOUT_S,
        cwd=home,
        env={**spark.server_environment(), **spark.worker_environment()},
        url=url,
        fingerprint=fingerprint_,
        master=cfg.master,
        python=sys.executable,
    )
    say(f"started the Spark server at {url} in {time.monotonic() - started:.1f}s (pid {state['pid']}, log {log_file(home)})")
    return state


def stop(home: Path, say=print) -> Running | None:
    """Stop the lakehouse's server (SIGTERM, then wait); returns what was stopped."""
    stopped = _service(home).stop(say)
    return _running(stopped, home) if stopped is not None else None


def died(home: Path, url: str) -> str | None:
    """Why the server at url is gone, naming its log; None while it still answers."""
    if _answers(url):
        return None
    return f"the Spark server at {url} is gone (log: {log_file(home)}); the next run starts a fresh one"


def main(command: str, env: EnvConfig) -> int:
    """`python -m lib.platform.spark start|stop|status`."""
    home = env.home
    if command == "start":
        running = ensure(env)
        print(
            f"Spark server {running.url} (pid {running.pid}); notebooks attach with SPARK_REMOTE={running.url}; "
            f"stop: {sys.executable} -m lib.platform.spark stop"
        )
    elif command == "stop":
        stopped = stop(home)
        print(f"stopped the Spark server (pid {stopped.pid})" if stopped else f"no Spark server runs for {home}")
    else:
        found = find(home)
        if found is None:
            print(f"no Spark server runs for {home}")
            return 3
        running, state = found
        cfg = settings(env)
        stale = state.get("fingerprint") != fingerprint(cfg, spark.spark_jars(), server_confs(cfg, home / "spark-warehouse"))
        print(
            f"Spark server {running.url} (pid {running.pid}, master {state.get('master')}, up "
            f"{time.time() - running.started_at:.0f}s{', stale: lib/ or settings changed' if stale else ''}; "
            f"log {running.log})"
        )
    return 0
