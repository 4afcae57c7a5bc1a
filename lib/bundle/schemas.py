"""JSON Schemas of the config files, generated from their models: conf/schemas/<kind>.json.

    python -m lib.bundle.schemas          # (re)write them: `make schemas`

Each YAML file under conf/ names its schema on its first line
(`# yaml-language-server: $schema=schemas/model.json`), so an editor with a YAML language
server completes keys and flags a misspelt one as you type.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from lib.bundle.kinds import MODELS, SCHEMAS
from lib.core.config.loading import CONF_DIR, display_path

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def generate(kind: str) -> dict[str, Any]:
    """The schema of one kind of file."""
    schema = MODELS[kind].model_json_schema()
    if kind == "environments":  # any key of an environment may come from `defaults` instead
        for block in schema.get("$defs", {}).values():
            block.pop("required", None)
    return {"$schema": DIALECT, **schema}


def text(kind: str) -> str:
    return json.dumps(generate(kind), indent=2) + "\n"


def write(folder: Path = CONF_DIR / SCHEMAS) -> list[Path]:
    """Write every kind's schema into `folder`; returns the files."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in MODELS:
        path = folder / f"{kind}.json"
        path.write_text(text(kind))
        written.append(path)
    return written


def main() -> int:
    for path in write():
        print(f"wrote {display_path(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
