"""What the benchmarks that score with prod's Champion share: its lakehouse, made once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lib.core import config, names
from lib.platform import registry
from lib.platform.catalog import Lakehouse
from lib.platform.spark import session

REPO = Path(__file__).resolve().parents[1]


def prod_lakehouse(home: str, app: str) -> Lakehouse:
    """Prod's lakehouse at `home`, attached to its Spark server; if it has no Champion yet, a
    first `run_pipeline.py --env prod` (unmeasured) makes its tables and model."""
    os.environ["LAKEHOUSE_HOME"] = home
    os.environ.pop("SPARK_REMOTE", None)
    registry.no_telemetry()
    env = config.load_env("prod")
    registry.configure(env)
    if registry.version_of(env.model_name, names.CHAMPION) is None:
        print("no Champion in", home, ": running the prod workflow once (unmeasured)...", flush=True)
        subprocess.run([sys.executable, "run_pipeline.py", "--env", "prod"], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return Lakehouse(session.get_spark(app, env=env), env)
