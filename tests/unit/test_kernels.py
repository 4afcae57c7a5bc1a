import json

import pytest

from lib.platform.services import processes
from lib.platform.workflows.kernels import KernelPool

pytestmark = pytest.mark.slow

INSPECT = (
    "import os, sys, json; print(json.dumps([os.getpid(), os.environ.get('TASK'), os.environ.get('LATE'), "
    "os.environ.get('GONE'), 'mlflow' in sys.modules, "
    "sorted(n for n in dir() if not n.startswith('_') and n not in "
    "{'In', 'Out', 'exit', 'quit', 'open', 'get_ipython', 'os', 'sys', 'json'})]))"
)


def run(kernel, code: str) -> str:
    """Execute code in a kernel; returns what it printed."""
    client = kernel.client()
    client.start_channels()
    printed = []
    try:
        client.wait_for_ready(timeout=60)
        client.execute_interactive(
            code,
            timeout=60,
            output_hook=lambda msg: printed.append(msg["content"].get("text", "")) if msg["msg_type"] == "stream" else None,
        )
    finally:
        client.stop_channels()
    return "".join(printed)


def test_each_task_gets_a_kernel_of_its_own_preloaded_with_its_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GONE", "set when the kernel was launched")
    pool = KernelPool(tmp_path / "run")
    try:
        pool.start()
        # Changed after the kernel was launched: a task still sees the environment as it is now.
        monkeypatch.setenv("LATE", "set after the launch")
        monkeypatch.delenv("GONE")
        first = pool.take({"TASK": "first"}, tmp_path / "first.log")
        second = pool.take({"TASK": "second"}, tmp_path / "second.log")
        seen = [json.loads(run(kernel, INSPECT)) for kernel in (first, second)]
        # Two processes; each has its own environment, the preloaded modules and no extra names.
        assert seen[0][0] != seen[1][0]
        assert [s[1:] for s in seen] == [
            ["first", "set after the launch", None, True, []],
            ["second", "set after the launch", None, True, []],
        ]
        # What the kernel process writes to its stderr (as a JVM or a C library would) is in its task's log.
        run(first, "import os; os.write(2, b'written by the first task\\n')")
        assert "written by the first task" in (tmp_path / "first.log").read_text()
        assert "written by the first task" not in (tmp_path / "second.log").read_text()
        pool.release(first)
        pool.release(second)
    finally:
        pool.close()
    # Nothing is left running or lying around: not the used kernels, not the one booting ahead.
    assert not any(processes.alive(pid) for pid, *_ in seen)
    assert not (tmp_path / "run").exists()  # its boot logs went to the tasks' logs; nothing else was there


def test_a_pool_that_ran_nothing_leaves_nothing(tmp_path):
    pool = KernelPool(tmp_path / "run")
    pool.start()
    pool.close()
    assert not (tmp_path / "run").exists()
