"""Where the shipped starter model lives and what its folder holds (:mod:`serving.starter` loads
it; :mod:`serving.export` reads only which tags it learned from photos)."""

from __future__ import annotations

import csv
from pathlib import Path

STARTER_DIR = Path(__file__).resolve().parent / "starter_model"
HEAD_FILE = "head.npz"
TAGS_FILE = "learned_tags.csv"
PROVENANCE_FILE = "provenance.json"


def learned_tags(directory: Path = STARTER_DIR) -> tuple[str, ...]:
    """The shipped starter's learned tags, read from ``learned_tags.csv`` without loading the head
    (none when no starter is shipped): the tags it learned from photos."""
    path = directory / TAGS_FILE
    if not path.is_file():
        return ()
    with path.open(newline="", encoding="utf-8") as f:
        return tuple(row["tag"] for row in csv.DictReader(f))
