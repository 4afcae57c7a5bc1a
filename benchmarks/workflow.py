"""The production workflow with notebooks attached to one Spark server vs a JVM per notebook.

    python benchmarks/workflow.py [--env prod] [--repeats 3] [--home DIR]

Side by side in one run, on one lakehouse (ingested by a first, unmeasured run): `local` (the
classic way: each notebook kernel starts its own JVM, `LAKEHOUSE_SPARK_MODE=local`),
`attached, cold` (the Spark server is stopped first, so its start is included) and `attached,
warm` (the server is up). The orders rotate between repeats. For each run: wall time, every
task's time, the notebooks' start-up cells, and the peak memory (RSS) of the run's process
tree plus the Spark server. Medians print as Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
TASK_LINE = re.compile(r"^\s+(\w+)\s+ok ([\d.]+)s$")


def peak_rss(root: int, home: Path, stop: threading.Event, out: list[float]) -> None:
    """Sample the RSS of `root`'s process tree and the lakehouse's Spark server until stopped."""
    peak = 0.0
    while not stop.is_set():
        total = 0
        try:
            procs = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        state = home / "spark" / "server.json"
        if state.exists():
            try:
                server = psutil.Process(json.loads(state.read_text())["pid"])
                procs += [server, *server.children(recursive=True)]
            except (psutil.NoSuchProcess, ValueError, KeyError):
                pass
        for proc in {p.pid: p for p in procs}.values():
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        peak = max(peak, total / 2**30)
        time.sleep(0.5)
    out.append(peak)


def startup_cells(run_dir: Path) -> list[float]:
    """Each executed notebook's start-up cell (the first code cell after the parameters)."""
    times = []
    for notebook in run_dir.rglob("*.ipynb"):
        cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
        after = [
            c
            for c in cells
            if "injected-parameters" not in c["metadata"].get("tags", []) and "parameters" not in c["metadata"].get("tags", [])
        ]
        times.append(after[0]["metadata"]["papermill"]["duration"])
    return times


def run_once(mode: str, env_name: str, home: Path) -> dict:
    env = {**os.environ, "LAKEHOUSE_HOME": str(home)}
    env.pop("SPARK_REMOTE", None)
    if mode == "local":
        env["LAKEHOUSE_SPARK_MODE"] = "local"
    elif mode == "attached, cold":
        subprocess.run(
            [sys.executable, "-m", "lib.platform.spark.builder", "stop", "--env", env_name],
            cwd=REPO,
            env=env,
            capture_output=True,
            check=True,
        )
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "run_pipeline.py", "--env", env_name],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stop, peak = threading.Event(), []
    sampler = threading.Thread(target=peak_rss, args=(process.pid, home, stop, peak))
    sampler.start()
    output = process.communicate()[0]
    elapsed = time.monotonic() - started
    stop.set()
    sampler.join()
    if process.returncode != 0:
        sys.exit(f"{mode} run failed:\n{output[-3000:]}")
    run_dir = Path(re.search(r"^Executed notebooks: (.+)$", output, re.M).group(1))
    tasks = {m.group(1): float(m.group(2)) for m in map(TASK_LINE.match, output.splitlines()) if m}
    startup = startup_cells(run_dir)
    print(f"{mode}: {elapsed:.0f}s, peak {peak[0]:.1f} GiB, start-up cells median {statistics.median(startup):.1f}s", flush=True)
    return {"wall": elapsed, "tasks": tasks, "startup": statistics.median(startup), "peak": peak[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="prod")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--home", type=Path, help="lakehouse root to use (default: a new temporary one)")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="lakehouse-workflow-bench-"))
    modes = ["local", "attached, cold", "attached, warm"]
    print(f"lakehouse {home}: a first run ingests and trains (not measured)", flush=True)
    run_once("attached, warm", args.env, home)
    results: dict[str, list[dict]] = {m: [] for m in modes}
    for repeat in range(args.repeats):
        order = ["attached, cold", "attached, warm"]  # cold stops the server, warm finds it up
        order.insert(repeat % 3, "local")  # local leaves the server alone: its place rotates
        for mode in order:
            results[mode].append(run_once(mode, args.env, home))
            print(f"repeat {repeat + 1}, {mode}: {results[mode][-1]['wall']:.0f} s", flush=True)
    subprocess.run(
        [sys.executable, "-m", "lib.serving", "stop", "--env", args.env],
        cwd=REPO,
        env={**os.environ, "LAKEHOUSE_HOME": str(home)},
        capture_output=True,
    )

    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[mode])

    base = med("local", "wall")
    print(f"\n{args.env}, medians of {args.repeats}; lakehouse {home}\n")
    print("| mode | wall time | ratio to local | start-up cell | peak memory |\n|---|---:|---:|---:|---:|")
    for mode in modes:
        print(
            f"| {mode} | {med(mode, 'wall'):.0f} s | {med(mode, 'wall') / base:.2f} | "
            f"{med(mode, 'startup'):.1f} s | {med(mode, 'peak'):.1f} GiB |"
        )
    tasks = list(results["local"][0]["tasks"])
    print("\n| task | " + " | ".join(modes) + " |\n|---|" + "---:|" * len(modes))
    for task in tasks:
        cells = [f"{statistics.median(r['tasks'].get(task, 0.0) for r in results[m]):.1f} s" for m in modes]
        print(f"| {task} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
