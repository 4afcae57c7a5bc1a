"""Fixtures of the integration tests: a real Spark cluster on localhost."""

import contextlib
import subprocess
import time

import pytest

from lib.platform.services.processes import answers, free_port
from lib.platform.spark.builder import server_environment, spark_home


@pytest.fixture(autouse=True)
def services(spark_server, postgres_server):
    """Every integration test runs jobs (run_pipeline.py subprocesses and their kernels) that
    find the session's Spark server and PostgreSQL through $SPARK_REMOTE and $LAKEHOUSE_JDBC_URL."""
    return spark_server, postgres_server


def wait_for(check, what: str, log, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s: {log.read_text()[-2000:]}"
        time.sleep(0.3)


@pytest.fixture
def standalone(tmp_path):
    """A standalone master and one 2-core worker on 127.0.0.1; yields the master URL and the
    worker's work folder (one folder per application whose executors it ran)."""
    spark_class = str(spark_home() / "bin" / "spark-class")
    env = {**server_environment(), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(tmp_path)}
    port, work = free_port(), tmp_path / "work"
    url = f"spark://127.0.0.1:{port}"
    logs = [tmp_path / "master.log", tmp_path / "worker.log"]
    commands = [
        [
            spark_class,
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(free_port()),
        ],
        [
            spark_class,
            "org.apache.spark.deploy.worker.Worker",
            "--host",
            "127.0.0.1",
            "--cores",
            "2",
            "--memory",
            "2g",
            "--webui-port",
            str(free_port()),
            "--work-dir",
            str(work),
            url,
        ],
    ]
    processes = []
    try:
        for command, log in zip(commands, logs):
            with open(log, "wb") as out:
                processes.append(
                    subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True)
                )
            if log is logs[0]:
                wait_for(lambda: answers(port), "the master listens", log)
        wait_for(lambda: "Registering worker" in logs[0].read_text(), "the worker registers", logs[0])
        yield url, work
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(30)
            if process.poll() is None:
                process.kill()
