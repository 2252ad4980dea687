"""``make demo``: import a folder of photos on the embedded default and show their tags.

Usage: ``python -m pipelines.demo [FOLDER]``. Without a folder it imports the sample photos
that scikit-image ships (astronaut, cat, coffee, rocket, ...). The catalog and originals go
to ``IMGTAG_HOME`` (``make demo`` uses ``var/demo``). Needs no service running.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from catalog import runtime
from core import tf_runtime
from core.settings import Settings
from pipelines.tagging.importer import collect_files, import_files
from serving.current import get_tagger

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def sample_folder() -> Path:
    """The folder of sample images inside the installed scikit-image package."""
    import skimage.data

    return Path(skimage.data.__file__).parent


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0]) if argv and argv[0] else sample_folder()
    console = Console(soft_wrap=True)
    settings = (
        Settings.from_env()
    )  # this entry point's settings, passed down (Django reads the same environment)
    tf_runtime.configure(verbose=settings.tf_verbose)
    console.print(f"[bold]imgtag demo[/bold]: importing images from {folder} into {settings.home}")
    files = collect_files([folder])
    runtime.setup(migrate=True)
    with console.status("Loading the tagging model (EfficientNet-Lite0, ImageNet weights, offline)..."):
        tagger = get_tagger(settings)
    with Progress(console=console) as progress:
        task = progress.add_task("tagging", total=len(files))
        summary = import_files(files, tagger, on_progress=lambda n: progress.advance(task, n))

    # Django models: importable only once catalog.runtime.setup() has run
    from catalog import services

    table = Table("file", "size", "status", "tags (score)", title="Tags per image")
    for asset in services.search("").order_by("filename"):
        row = services.asset_summary(asset)
        tags = ", ".join(f"{t['name']} {t['score']:.2f}" for t in row["tags"][:6]) or row["error"] or "-"
        table.add_row(row["filename"], f"{row['width']}x{row['height']}", row["status"], tags)
    console.print(table)
    console.print(
        f"imported {summary.imported}, already there {summary.duplicates}, failed {len(summary.failed)}"
    )
    for failure in summary.failed:
        console.print(f"  [red]failed[/red] {failure['error']}")
    home = f"IMGTAG_HOME={settings.home} .venv/bin/imgtag"
    steps = [
        (f"{home} search 'cat OR dog'", "find by tag (AND / OR / NOT, quotes for names with spaces)"),
        (f"{home} createuser me --superuser", "a user for the web pages and the admin, and an API token"),
        (f"{home} serve", "web pages on http://127.0.0.1:8000/ (sign in as me), REST API on /api/"),
        (".venv/bin/imgtag tag your.jpg --json", "tag a file without storing it"),
    ]
    width = max(len(command) for command, _ in steps)
    console.print("\nNext:")
    for command, what in steps:
        console.print(f"  {command:<{width}}  # {what}", markup=False, highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
