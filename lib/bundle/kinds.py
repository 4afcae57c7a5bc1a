"""The kinds of config file under conf/, their models, and the schema line each file starts with."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from lib.core.config.environment import EnvironmentsFile
from lib.core.config.loading import display_path, schema_comment
from lib.core.config.model import Hyperparameters, ModelConfig
from lib.core.config.sources import SourcesFile
from lib.core.errors import ConfigError
from lib.monitoring.alerts import AlertsFile
from lib.monitoring.monitors import MonitorsFile
from lib.platform.workflows.spec import JobsFile

MODELS: dict[str, type[BaseModel]] = {
    "environments": EnvironmentsFile,
    "model": ModelConfig,
    "sources": SourcesFile,
    "hyperparameters": Hyperparameters,
    "jobs": JobsFile,
    "monitors": MonitorsFile,
    "alerts": AlertsFile,
}
FIXED = ("environments", "sources", "model", "jobs", "monitors", "alerts")  # conf/<kind>.yml, one file each
SCHEMAS = "schemas"  # conf/schemas/<kind>.json
_LINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")


def files(conf: Path) -> dict[Path, str]:
    """Every YAML file under the conf folder with its kind: named by the file (conf/model.yml)
    or by its schema line (a hyperparameters file anywhere else)."""
    found = {}
    for path in sorted([*conf.rglob("*.yml"), *conf.rglob("*.yaml")]):
        if SCHEMAS in path.relative_to(conf).parts:
            continue
        first = path.read_text().split("\n", 1)[0]
        match = _LINE.match(first)
        named = Path(match.group(1)).stem if match else None
        kind = path.stem if path.parent == conf and path.stem in FIXED else named
        if kind not in MODELS:
            raise ConfigError(
                f"{display_path(path)}: not a known kind of config file: start it with "
                f"`{schema_comment(path, 'hyperparameters')}` (kinds: {', '.join(MODELS)})"
            )
        found[path] = kind
    return found
