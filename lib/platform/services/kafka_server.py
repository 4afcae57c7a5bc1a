"""The lakehouse's own Kafka broker: where the stream publishes its predictions by default.

Apache Kafka's own broker (`org.apache.kafka:kafka_2.13` from Maven Central, resolved once by
Maven into ~/.m2), one per lakehouse, single node in KRaft mode (broker and controller in one
JVM), on 127.0.0.1 only, started on demand like the Spark and PostgreSQL servers. Its ports are
chosen when its storage is formatted and kept. `$LAKEHOUSE_KAFKA_SERVERS` (`host:port[,...]`)
names brokers someone else runs.

    python -m lib.platform.services.kafka_server jars                            # resolve the broker's jars once
    python -m lib.platform.services.kafka_server start|stop|status|remove [--env prod]
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from lib.core.errors import SetupError
from lib.platform.services import cli, processes
from lib.platform.services.java import check_java, ivy_dir, java_executable
from lib.platform.services.kafka_client import ready
from lib.platform.services.managed import Service

KAFKA_VERSION = "4.1.1"
BROKER_PACKAGES = (f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION}", "org.slf4j:slf4j-simple:2.0.17")
SERVERS_ENV_VAR = "LAKEHOUSE_KAFKA_SERVERS"  # host:port[,...] of brokers to use instead
PORT_ENV_VAR = "LAKEHOUSE_KAFKA_PORT"  # overrides the default port; 0 picks a free one
DEFAULT_PORT = 9192
READY_S = 60.0


def _manifest() -> Path:
    digest = hashlib.sha256(",".join(BROKER_PACKAGES).encode()).hexdigest()[:12]
    return ivy_dir() / "jars" / f"lakehouse-mlops-kafka-broker-{digest}.txt"


def broker_classpath() -> str:
    """The broker's classpath (jars in ~/.m2): recorded from an earlier resolution, else resolved
    now by Maven (once; one SetupError line if it cannot)."""
    with contextlib.suppress(OSError):
        jars = _manifest().read_text().strip().split(os.pathsep)
        if jars and all(Path(j).exists() for j in jars):
            return os.pathsep.join(jars)
    return _resolve()


def _resolve() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SetupError(
            "Maven (mvn) is needed once to fetch Kafka's broker jars: apt-get install maven, "
            f"or set {SERVERS_ENV_VAR} to brokers you run, or switch publish.kafka off"
        )
    print(f"Fetching Kafka's broker jars ({', '.join(BROKER_PACKAGES)}) once...", flush=True)
    deps = "".join(
        f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
        for g, a, v in (p.split(":") for p in BROKER_PACKAGES)
    )
    manifest = _manifest()
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        pom = Path(folder) / "pom.xml"
        pom.write_text(
            '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
            "<groupId>lakehouse-mlops</groupId><artifactId>kafka-broker</artifactId><version>0</version>"
            f"<packaging>pom</packaging><dependencies>{deps}</dependencies></project>"
        )
        out = Path(folder) / "classpath.txt"
        done = subprocess.run(
            [mvn, "-B", "-q", "-f", str(pom), "dependency:build-classpath", f"-Dmdep.outputFile={out}"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0 or not out.exists():
            errors = [line for line in done.stdout.splitlines() if "ERROR" in line] or [f"exit code {done.returncode}"]
            raise SetupError(
                f"Maven could not fetch Kafka's broker jars ({errors[0].strip()[:200]}): "
                "check the network to Maven Central, then run `python -m lib.platform.services.kafka_server jars`"
            )
        classpath = out.read_text().strip()
    manifest.write_text(classpath)
    return classpath


def _folder(home: Path) -> Path:
    return home / "kafka"


def _service(home: Path) -> Service:
    return Service("Kafka's broker", _folder(home), stop_timeout=30.0)


def servers(home: Path, say=print) -> str:
    """`host:port` of the lakehouse's broker (started if it is not running), or $LAKEHOUSE_KAFKA_SERVERS."""
    if os.environ.get(SERVERS_ENV_VAR):
        return os.environ[SERVERS_ENV_VAR]
    return f"127.0.0.1:{ensure(home, say)}"


def running_servers(home: Path) -> str | None:
    """Like servers(), but None instead of starting a broker."""
    if os.environ.get(SERVERS_ENV_VAR):
        return os.environ[SERVERS_ENV_VAR]
    state = _service(home).read()
    return f"127.0.0.1:{state['port']}" if state and processes.answers(state["port"]) else None


def ensure(home: Path, say=print) -> int:
    """Start the lakehouse's Kafka broker unless it runs; returns its port."""
    return _service(home).ensure(lambda: _start(home, say), lambda state: processes.answers(state["port"]), say)["port"]


def _ports(home: Path) -> dict[str, int]:
    """The broker's and controller's ports (by default 9192 and 9193), chosen when its storage is
    formatted and kept: the controller's address is part of the formatted metadata, so
    $LAKEHOUSE_KAFKA_PORT counts at the first start only."""
    path = _folder(home) / "ports.json"
    if path.exists():
        return json.loads(path.read_text())
    wanted = int(os.environ.get(PORT_ENV_VAR, DEFAULT_PORT))
    port = wanted if wanted and not processes.answers(wanted) else processes.free_port()
    controller = port + 1 if wanted and port == wanted and not processes.answers(port + 1) else processes.free_port()
    ports = {"port": port, "controller_port": controller}
    path.write_text(json.dumps(ports))
    return ports


def _properties(home: Path, ports: dict[str, int]) -> Path:
    broker, controller = f"127.0.0.1:{ports['port']}", f"127.0.0.1:{ports['controller_port']}"
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": controller,
        "listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{broker}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(_folder(home) / "data"),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    path = _folder(home) / "server.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    return path


def _java(classpath: str, *args: str) -> list[str]:
    check_java()
    return [java_executable(), "-Xmx512m", "-cp", classpath, *args]


def _start(home: Path, say) -> dict:
    classpath, ports = broker_classpath(), _ports(home)
    for name in ("port", "controller_port"):
        if processes.answers(ports[name]):
            raise SetupError(
                f"Kafka's {name.replace('_', ' ')} 127.0.0.1:{ports[name]} is taken by another "
                f"program: stop it, or remove this broker (python -m lib.platform.services.kafka_server remove)"
            )
    properties = _properties(home, ports)
    if not has_data(home):
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        done = subprocess.run(
            _java(classpath, "kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(properties), "--standalone"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise SetupError(f"Kafka could not format its storage: {(done.stderr or done.stdout).strip()[-200:]}")
    state = _service(home).start(
        _java(classpath, "kafka.Kafka", str(properties)),
        lambda state: ready(f"127.0.0.1:{state['port']}"),
        READY_S,
        fresh_log=True,
        port=ports["port"],
        controller_port=ports["controller_port"],
    )
    say(f"started Kafka {KAFKA_VERSION} on 127.0.0.1:{ports['port']} (data {_folder(home) / 'data'})")
    return state


def has_data(home: Path) -> bool:
    """Whether the lakehouse's own broker was ever set up (it may hold topics)."""
    return (_folder(home) / "data" / "meta.properties").exists()


def stop(home: Path, say=print) -> bool:
    """Stop the lakehouse's broker; returns whether one ran."""
    stopped = _service(home).stop()
    if stopped is not None:
        say(f"stopped Kafka (pid {stopped['pid']})")
    return stopped is not None


def remove(home: Path) -> None:
    """Stop the broker and delete its topics (`make clean`, a test run's clean-up)."""
    stop(home, say=lambda line: None)
    shutil.rmtree(_folder(home), ignore_errors=True)


def main(argv: list[str]) -> int:
    def jars() -> None:
        print(f"Kafka {KAFKA_VERSION}'s broker: {len(broker_classpath().split(os.pathsep))} jars ready in ~/.m2")

    return cli.main(
        "lib.platform.services.kafka_server",
        argv,
        cli.lakehouse_commands("Kafka broker", servers, stop, running_servers, remove),
        plain={"jars": jars},
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
