"""MkDocs hook: the project's notebooks, where they live (notebooks/), as pages of the guide.

The notebooks stay outside docs/; this adds each `notebooks/**/*.ipynb` to the site under the
same path (`notebooks/pipelines/04_validate.ipynb`), before mkdocs-jupyter turns notebook
files into pages. They are committed without outputs and rendered as they are (not executed).
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files


@event_priority(100)  # before the plugins' on_files: mkdocs-jupyter must see these files
def on_files(files: Files, config) -> Files:
    root = Path(config.config_file_path).parent
    for path in sorted((root / "notebooks").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        files.append(
            File(
                path.relative_to(root).as_posix(),
                src_dir=str(root),
                dest_dir=config.site_dir,
                use_directory_urls=config.use_directory_urls,
            )
        )
    return files
