"""`python run_pipeline.py --init DIR --from FILE`: a new project's config folder made from one
CSV or Parquet file, ready for `python run_pipeline.py --conf DIR --env prod`.

The file is inspected (lib/bundle/dataset.py), then DIR gets the seven files a project declares
(sources, model, environments, monitors, alerts, jobs, hyperparameters), each naming its JSON
Schema on its first line and saying in comments what was chosen and why. DIR is then checked
as `--validate --conf DIR` checks it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

from lib.bundle import project_files as files
from lib.bundle import validate
from lib.bundle.dataset import inspect
from lib.core.config.loading import CONF_DIR, display_path, schema_comment
from lib.core.errors import ConfigError

MIN_DAYS = 10  # the shortest date range that holds training, held-out and scored days


def windows(start: dt.date, end: dt.date) -> files.Window:
    """The data window of [start, end): horizon = a 30th of the range (1..7 days), holdout = a 10th
    (1..28 days). The scored period ends a horizon before `end`, so a later run (as of the period's
    end) finds its labels, as production would; the holdout days precede it, training takes the rest."""
    days = (end - start).days
    if days < MIN_DAYS:
        raise ConfigError(
            f"the file's dates span {days} day(s) ({start}..{end - dt.timedelta(days=1)}): --init needs at least "
            f"{MIN_DAYS} to train, hold out and score"
        )
    horizon, holdout = min(7, max(1, days // 30)), min(28, max(1, days // 10))
    as_of = end - dt.timedelta(days=2 * horizon)
    train = (as_of - start).days - holdout
    return {
        "start": start,
        "end": end,
        "as_of": as_of,
        "train_days": train,
        "holdout_days": holdout,
        "horizon_days": horizon,
    }


def staging_window(start: dt.date, end: dt.date) -> files.Window:
    """Staging (CI's short run) takes the last quarter of the range (at least MIN_DAYS), split the same way."""
    days = (end - start).days
    return windows(max(start, end - dt.timedelta(days=max(MIN_DAYS, days // 4))), end)


def project_name(folder: Path) -> str:
    """DIR's name as a schema name: letters, digits and _ (tables, the model and its endpoint are named from it)."""
    name = re.sub(r"[^a-z0-9_]+", "_", folder.name.lower()).strip("_")
    return name if re.match(r"^[a-z]", name) else f"p_{name}"


def init(
    folder: Path,
    file: Path,
    label: str | None = None,
    timestamp: str | None = None,
    id_: str | None = None,
    say: Callable[[str], None] = print,
) -> list[Path]:
    """Write the project's config folder `folder` from `file`; returns the files written."""
    folder = folder.expanduser().resolve()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"--init {folder}: exists and is not an empty folder: give a new folder")
    data = inspect(file, label, timestamp, id_)
    name = project_name(folder)
    prod, staging = windows(data.start, data.end), staging_window(data.start, data.end)
    texts = {
        "sources.yml": files.sources_yml(data, name, folder),
        "model.yml": files.model_yml(data, name),
        "hyperparameters.yml": files.hyperparameters_yml(),
        "environments.yml": files.environments_yml(data, name, prod, staging, MIN_DAYS),
        "monitors.yml": files.monitors_yml(data, name),
        "alerts.yml": files.alerts_yml(data),
        "jobs.yml": (CONF_DIR / "jobs.yml").read_text().split("\n", 1)[1],
    }
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, text in texts.items():
        path = folder / file_name
        path.write_text(f"{schema_comment(path, path.stem)}\n{text}")
        written.append(path)
    say(
        f"inspected {display_path(data.path)}: {data.rows} rows, {data.start}..{data.end - dt.timedelta(days=1)}; "
        f"label {data.label} ({data.problem_type}), timestamp {data.timestamp}, id {data.id}"
        + (f" (generated from {', '.join(data.id_from)})" if data.id_from else "")
    )
    say(f"features: categorical {', '.join(data.categorical) or '-'}; numeric {', '.join(data.numeric) or '-'}")
    for column, why in data.dropped.items():
        say(f"not a feature: {column} ({why})")
    try:
        validate.validate(folder=folder, say=lambda line: None)
    except ConfigError as exc:  # nothing is left behind: the same command can run again
        for path in written:
            path.unlink()
        if made:
            shutil.rmtree(folder)
        raise ConfigError(f"--init: the config made from {data.path.name} does not validate (a bug of --init): {exc}") from exc
    conf = typed_path(folder)
    say(f"wrote {display_path(folder)}: {', '.join(texts)}; checked as --validate checks it")
    say("next:")
    say(f"  python run_pipeline.py --conf {conf} --env prod          # ingest, train, gate, deploy, serve, score, monitor")
    say(f"  python run_pipeline.py --conf {conf} --env prod --history")
    return written


def typed_path(path: Path) -> str:
    """`path` as the user would type it: relative to the working folder when inside it."""
    relative = os.path.relpath(path)
    return shlex.quote(str(path) if relative.startswith("..") else relative)
