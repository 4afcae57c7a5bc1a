"""Serving throughput and latency: this project's server vs `mlflow models serve`, side by side.

    python benchmarks/serving.py [--seconds 10] [--repeats 3] [--home DIR] [--keep]

Prepares a throwaway lakehouse (the staging training and deployment jobs: a HistGradientBoosting
pipeline on the flights features, registered and served), or reuses --home. Then, on the same
model, the same real feature rows and the same load generator (benchmarks/loadgen.py):
  - ours: the endpoint with inference-table capture on and traffic split 90/10 across two
    registered versions of the model (two served entities, each batching on its own);
  - mlflow: `mlflow models serve` with one worker, as documented.
Each cell (payload rows x concurrency) runs --repeats times, alternating which server goes
first; the medians and the ratio print as a Markdown table. Last, ten config updates are made
under steady load (one of them names a version that fails to load), counting failed requests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import loadgen  # noqa: E402  (a sibling script, not a package)

from lib.core import names


def sh(cmd: list[str], env: dict[str, str], log: Path) -> None:
    print(f"  $ {' '.join(cmd)}", flush=True)
    with open(log, "a") as out:
        if subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT).returncode:
            sys.exit(f"failed: {' '.join(cmd)} (see {log})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--home", help="a lakehouse prepared by an earlier run (--keep)")
    parser.add_argument("--keep", action="store_true", help="keep the prepared lakehouse")
    args = parser.parse_args()

    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="lakehouse-serving-bench-")) / "lakehouse"
    os.environ.update({"LAKEHOUSE_HOME": str(home), "LAKEHOUSE_SERVING_PORT": "0"})
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    log = home.parent / "bench.log"
    home.parent.mkdir(parents=True, exist_ok=True)
    if not args.home:
        print(f"preparing {home} (staging training + deployment jobs)", flush=True)
        for job in ("ingest", "training", "deployment"):
            sh([sys.executable, "run_pipeline.py", "--env", "staging", "--job", job], env, log)

    from lib.core.config import load_env, load_model_config
    from lib.features import tables as features
    from lib.lifecycle import training
    from lib.platform import registry
    from lib.platform.catalog import Lakehouse
    from lib.platform.services import processes
    from lib.platform.spark.session import get_spark
    from lib.serving import rollout, server, settings
    from lib.serving.client import Client

    staging = load_env("staging")
    registry.configure(staging)
    champion = registry.require_alias(staging.model_name, names.CHAMPION)
    source = registry.client().get_model_version_download_uri(champion.name, champion.version)
    twin = str(registry.client().create_model_version(champion.name, source=source).version)
    broken_dir = home / "broken_model"
    if not broken_dir.exists():
        shutil.copytree(source.removeprefix("file://"), broken_dir)
        (broken_dir / "python_model.pkl").write_bytes(b"not a pickle")
    broken = str(registry.client().create_model_version(champion.name, source=str(broken_dir)).version)

    model_cfg = load_model_config()
    spark = get_spark("serving-bench", warehouse=home / "spark-warehouse")
    rows = features.load_labelled(Lakehouse(spark, staging), staging, model_cfg, staging.data.split(staging.data.as_of).holdout)
    gateway = spark.sparkContext._gateway
    spark.stop()
    gateway.shutdown()
    gateway.proc.kill()  # no idle JVM of ours competing with the servers while they are measured
    columns = training.input_columns(model_cfg)  # what the model is given (on-demand features it computes)
    bodies = {
        n: json.dumps(
            {"dataframe_split": json.loads(rows[columns].head(n).to_json(orient="split", index=False, date_format="iso"))}
        ).encode()
        for n in (1, 100)
    }

    running = server.start(staging)
    api = Client(running.url, settings.load(staging).token())
    a = {"name": "champion", "entity_name": champion.name, "entity_version": champion.version}
    b = {"name": "twin", "entity_name": champion.name, "entity_version": twin}
    capture = {"catalog_name": staging.catalog, "schema_name": staging.schema, "table_name_prefix": "bench"}
    split = rollout.endpoint_config([(a, 90), (b, 10)], capture)
    if api.get("bench") is None:
        api.create("bench", split)
    else:
        api.wait("bench")  # restored from the last run: let it finish loading
        api.update("bench", split)
    assert api.wait("bench")["state"]["config_update"] == "NOT_UPDATING"
    ours = f"{running.url}/serving-endpoints/bench/invocations"

    port = processes.free_port()
    mlflow_log = open(home.parent / "mlflow_serve.log", "w")
    mlflow_proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            champion.uri,
            "-p",
            str(port),
            "--env-manager",
            "local",
            "-w",
            "1",
        ],
        env={**env, "MLFLOW_TRACKING_URI": staging.tracking_uri},
        stdout=mlflow_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    theirs = f"http://127.0.0.1:{port}/invocations"
    token = api.token
    try:
        # Warm both up. Ours longer: its inference-table writer starts a JVM at the first flush,
        # which takes about a minute of CPU to warm; the table below is the steady state.
        for url, tok, seconds in ((ours, token, 60), (theirs, "", 15)):
            loadgen.run(url, bodies[1], 8, seconds, tok)
        results = {}
        for n in (1, 100):
            for c in (1, 32):
                cell = {"ours": [], "mlflow": []}
                for rep in range(args.repeats):
                    order = [("ours", ours, token), ("mlflow", theirs, "")]
                    for name, url, tok in order if rep % 2 == 0 else order[::-1]:
                        outcome = loadgen.run(url, bodies[n], c, args.seconds, tok, warmup=2)
                        cell[name].append(outcome.to_dict())
                        print(f"  {n:>3} rows c={c:<2} {name:<6} {outcome.to_dict()}", flush=True)
                results[(n, c)] = cell
        updates = ten_updates(api, ours, token, bodies[1], a, b, broken, capture)
        metrics_text = api.metrics("bench")
    finally:
        os.killpg(mlflow_proc.pid, 15)
        mlflow_proc.wait(30)
    report(results, updates, metrics_text, args)
    server.stop(staging)
    if not args.keep and not args.home:
        shutil.rmtree(home.parent, ignore_errors=True)
    else:
        print(f"kept {home} (rerun with --home {home})")


def ten_updates(api, url, token, body, a, b, broken, capture) -> dict:
    """Ten config updates under steady load (c=8); one names a version that fails to load."""
    from lib.serving import rollout

    bad = {"name": "broken", "entity_name": a["entity_name"], "entity_version": broken}
    configs = [
        [(a, 50), (b, 50)],
        [(b, 100)],
        [(a, 100)],
        [(bad, 100)],
        [(a, 10), (b, 90)],
        [(a, 100)],
        [(b, 100)],
        [(a, 90), (b, 10)],
        [(a, 100)],
        [(a, 90), (b, 10)],
    ]
    holder: dict = {}
    load = threading.Thread(target=lambda: holder.update(result=loadgen.run(url, body, 8, 40, token, warmup=0)))
    load.start()
    time.sleep(3)
    states = []
    started = time.monotonic()
    for routes in configs:
        api.update("bench", rollout.endpoint_config(routes, capture))
        states.append(api.wait("bench")["state"]["config_update"])
    took = time.monotonic() - started
    load.join()
    result = holder["result"]
    return {
        "states": states,
        "seconds": round(took, 1),
        "requests": result.requests,
        "failed": result.failed,
        "statuses": result.statuses,
    }


def report(results: dict, updates: dict, metrics_text: str, args) -> None:
    def med(cell, key):
        return statistics.median(r[key] for r in cell)

    print(f"\n{args.repeats} runs of {args.seconds:g} s per cell, medians; ours = capture on, traffic split 90/10\n")
    print(
        "| rows | concurrency | ours req/s | mlflow req/s | throughput ratio | ours p50 / p99 ms | mlflow p50 / p99 ms | failed (ours/mlflow) |"
    )
    print("|---:|---:|---:|---:|---:|---|---|---|")
    for (n, c), cell in results.items():
        ratio = med(cell["ours"], "rps") / med(cell["mlflow"], "rps")
        print(
            f"| {n} | {c} | {med(cell['ours'], 'rps'):.0f} | {med(cell['mlflow'], 'rps'):.0f} | {ratio:.1f}x | "
            f"{med(cell['ours'], 'p50_ms'):.1f} / {med(cell['ours'], 'p99_ms'):.1f} | "
            f"{med(cell['mlflow'], 'p50_ms'):.1f} / {med(cell['mlflow'], 'p99_ms'):.1f} | "
            f"{sum(r['failed'] for r in cell['ours'])}/{sum(r['failed'] for r in cell['mlflow'])} |"
        )
    print(
        f"\nTen config updates under load (c=8, {updates['seconds']} s of updates): states {updates['states']}; "
        f"{updates['requests']} requests, {updates['failed']} failed ({updates['statuses']})"
    )
    batches = [line for line in metrics_text.splitlines() if line.startswith(("serving_batches_total", "serving_capture"))]
    print("\n" + "\n".join(batches))
    print(json.dumps({f"{n}x{c}": cell for (n, c), cell in results.items()}))


if __name__ == "__main__":
    main()
