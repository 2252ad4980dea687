"""Checks of the packaged tag map data (``core/data/*.csv``), with the stdlib only.

The files are meant to be edited by hand, so these tests say what a valid edit keeps true:
1000 ImageNet classes in the standard order, readable tags, one parent per broader tag, and
thresholds in (0, 1]. They read the CSVs directly and import no project code.
"""

from __future__ import annotations

import csv
import math
import re
from itertools import pairwise
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[2] / "core" / "data"
CLASS_FILE = DATA_DIR / "imagenet_tags.csv"
THRESHOLD_FILE = DATA_DIR / "tag_thresholds.csv"
WNID = re.compile(r"n\d{8}")


def _chain(row: dict[str, str]) -> list[str]:
    return [t.strip() for t in (row["broader"] or "").split(";") if t.strip()]


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with open(CLASS_FILE, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["index", "wnid", "label", "tag", "broader"]
        return list(reader)


@pytest.fixture(scope="module")
def by_index(rows) -> dict[int, dict[str, str]]:
    return {int(r["index"]): r for r in rows}


@pytest.fixture(scope="module")
def thresholds() -> dict[str, float]:
    with open(THRESHOLD_FILE, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames[:2] == ["tag", "threshold"]
        out: dict[str, float] = {}
        for row in reader:
            tag = row["tag"]
            assert tag == tag.strip() and tag, f"bad tag {tag!r} in {THRESHOLD_FILE.name}"
            assert tag not in out, f"duplicate threshold row for {tag!r}"
            out[tag] = math.inf if row["threshold"] == "off" else float(row["threshold"])
            if row["threshold"] == "off":  # a calibration turned it off, and says why
                assert row.get("reason") and row.get("val_positives"), f"{tag!r} is off without a reason"
            if row.get("prior"):
                assert 0.0 < float(row["prior"]) <= 1.0, f"prior {row['prior']} for {tag!r}"
        return out


def test_thousand_classes_in_order(rows):
    assert len(rows) == 1000
    assert [int(r["index"]) for r in rows] == list(range(1000))


def test_wnids_are_unique_and_well_formed(rows):
    wnids = [r["wnid"] for r in rows]
    bad = [w for w in wnids if not WNID.fullmatch(w)]
    assert not bad, f"malformed wnids: {bad[:5]}"
    assert len(set(wnids)) == 1000
    # The standard ImageNet-1k class order is the sorted order of the wnids.
    assert wnids == sorted(wnids)
    assert wnids[0] == "n01440764" and wnids[999] == "n15075141"


def test_labels_present(rows):
    assert all(r["label"].strip() for r in rows)


def _check_tag(tag: str, where: str) -> None:
    assert tag, f"{where}: empty tag"
    assert tag == tag.strip(), f"{where}: leading/trailing space in {tag!r}"
    assert tag == tag.lower(), f"{where}: {tag!r} is not lowercase"
    assert "," not in tag and ";" not in tag, f"{where}: separator in {tag!r}"
    assert "  " not in tag, f"{where}: double space in {tag!r}"


def test_tags_are_readable(rows):
    for r in rows:
        where = f"index {r['index']}"
        _check_tag(r["tag"], where)
        raw = r["broader"] or ""
        for part in raw.split(";") if raw else []:
            _check_tag(part, f"{where} broader")


def test_each_tag_has_one_parent(rows):
    """Rule (a): the tag right after another in a chain is its parent, the same in every row."""
    parent: dict[str, tuple[str, str]] = {}
    for r in rows:
        path = [r["tag"], *_chain(r)]
        for child, par in pairwise(path):
            seen = parent.setdefault(child, (par, r["index"]))
            assert seen[0] == par, (
                f"index {r['index']}: {child!r} has parent {par!r}, but {seen[0]!r} at index {seen[1]}"
            )


def test_no_cycles_or_repeats(rows):
    for r in rows:
        path = [r["tag"], *_chain(r)]
        assert len(path) == len(set(path)), f"index {r['index']}: repeated tag in {path}"


def test_own_tag_not_in_broader(rows):
    """Rule (b)."""
    for r in rows:
        assert r["tag"] not in _chain(r), f"index {r['index']}: {r['tag']!r} is its own broader tag"


def test_thresholds(thresholds, rows):
    assert thresholds.get("*") is not None and thresholds.get("**") is not None
    for tag, value in thresholds.items():
        assert 0.0 < value <= 1.0 or value == math.inf, (
            f"threshold {value} for {tag!r} is not in (0, 1] or off"
        )
    known = {r["tag"] for r in rows} | {t for r in rows for t in _chain(r)}
    unknown = set(thresholds) - known - {"*", "**"}
    assert not unknown, f"thresholds for tags no class uses: {sorted(unknown)}"


def test_spot_checks(by_index):
    egyptian = by_index[285]
    assert egyptian["wnid"] == "n02124075"
    assert egyptian["tag"] == "egyptian cat"
    assert {"cat", "animal"} <= set(_chain(egyptian))

    tabby = by_index[281]
    assert tabby["wnid"] == "n02123045"
    assert "cat" in _chain(tabby)

    mug = by_index[504]
    assert mug["wnid"] == "n03063599"
    assert "mug" in mug["tag"] or "cup" in mug["tag"]
    assert "cup" in mug["tag"] or "cup" in _chain(mug)

    espresso = by_index[967]
    assert espresso["wnid"] == "n07920052"
    assert "coffee" in espresso["tag"] or "coffee" in _chain(espresso)

    sports_car = by_index[817]
    assert sports_car["wnid"] == "n04285008"
    assert {"car", "vehicle"} <= set(_chain(sports_car))


@pytest.mark.parametrize(
    "index, wnid, label_start",
    [
        (0, "n01440764", "tench"),
        (281, "n02123045", "tabby"),
        (285, "n02124075", "Egyptian cat"),
        (409, "n02708093", "analog clock"),
        (504, "n03063599", "coffee mug"),
        (817, "n04285008", "sports car"),
        (948, "n07742313", "Granny Smith"),
        (967, "n07920052", "espresso"),
        (999, "n15075141", "toilet tissue"),
    ],
)
def test_known_classes(by_index, index, wnid, label_start):
    row = by_index[index]
    assert row["wnid"] == wnid
    assert row["label"].startswith(label_start)


def test_duplicate_imagenet_names_are_told_apart(by_index):
    # ImageNet has two "crane" classes (the bird, the machine): they must not share a tag.
    assert by_index[134]["label"] == by_index[517]["label"] == "crane"
    assert by_index[134]["tag"] != by_index[517]["tag"]
    assert "bird" in _chain(by_index[134])
