"""Cold and warm wall time of the two README commands, and the environment's size on disk.

    python benchmarks/setup_and_workflow.py [--only pipeline|test]

Cold: a fresh clone of this repository's HEAD, with pip's cache off and an empty Ivy cache,
so that packages and Delta jars are downloaded. Warm: the same command again in that clone.
Each command's output is kept next to the clones; the results print as a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(label: str, cmd: list[str], cwd: Path, env: dict[str, str], logs: Path) -> float:
    print(f"{label}: {' '.join(cmd)} ...", flush=True)
    started = time.monotonic()
    with open(logs / f"{label}.log", "w") as out:
        code = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    elapsed = time.monotonic() - started
    if code != 0:
        sys.exit(f"{label} failed (exit {code}); see {logs / f'{label}.log'}")
    print(f"{label}: {elapsed:.0f}s", flush=True)
    return elapsed


def size(path: Path) -> str:
    return subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True).stdout.split()[0]


def fresh_clone(work: Path, name: str) -> tuple[Path, dict[str, str]]:
    clone = work / name
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    env = {**os.environ, "PIP_NO_CACHE_DIR": "1", "LAKEHOUSE_IVY_DIR": str(work / f"ivy-{name}")}
    env.pop("LAKEHOUSE_HOME", None)
    return clone, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["pipeline", "test"], help="time only one of the two commands")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lakehouse-bench-"))
    rows, sizes = [], []

    if args.only != "test":
        clone, env = fresh_clone(work, "pipeline")
        rows.append(("`make pipeline`, cold", timed("pipeline_cold", ["make", "pipeline"], clone, env, work)))
        rows.append(("`make pipeline`, warm (2nd run)", timed("pipeline_warm", ["make", "pipeline"], clone, env, work)))
        sizes = [
            (".venv", size(clone / ".venv")),
            ("Delta jars (Ivy cache)", size(work / "ivy-pipeline")),
            (".lakehouse after two prod runs", size(clone / ".lakehouse")),
        ]

    if args.only != "pipeline":
        clone, env = fresh_clone(work, "test")
        rows.append(("`make test`, cold", timed("test_cold", ["make", "test"], clone, env, work)))
        rows.append(("`make test`, warm (2nd run)", timed("test_warm", ["make", "test"], clone, env, work)))

    print(f"\nlogs: {work}\n\n| command | wall time |\n|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {seconds / 60:.1f} min ({seconds:.0f} s) |")
    print("\n| on disk | size |\n|---|---|")
    for label, value in sizes:
        print(f"| {label} | {value} |")


if __name__ == "__main__":
    main()
