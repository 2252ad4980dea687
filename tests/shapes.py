"""A small labelled image set the tests draw themselves: coloured shapes on textured paper.

Each image holds one or two shapes (circle, square, triangle) in a colour (red, green, blue),
so it carries two to four tags; written as real JPEG or PNG files, laid out as a
folder-per-tag tree (an image with two tags sits in both folders) or listed in a CSV manifest.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (40, 40, 220), "green": (50, 180, 50), "blue": (220, 60, 40)}  # BGR


def draw(rng: np.random.Generator, size: int = 160) -> tuple[np.ndarray, set[str]]:
    """One BGR image and its tags."""
    paper = rng.integers(150, 256, size=3)
    image = np.clip(paper + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
    tags: set[str] = set()
    count = 1 if rng.random() < 0.6 else 2
    for _ in range(count):
        shape = SHAPES[rng.integers(len(SHAPES))]
        colour = list(COLOURS)[rng.integers(len(COLOURS))]
        bgr = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in COLOURS[colour])
        r = int(rng.integers(size // 7, size // 4))
        cx, cy = (int(v) for v in rng.integers(r + 2, size - r - 2, size=2))
        if shape == "circle":
            cv2.circle(image, (cx, cy), r, bgr, -1, cv2.LINE_AA)
        elif shape == "square":
            cv2.rectangle(image, (cx - r, cy - r), (cx + r, cy + r), bgr, -1, cv2.LINE_AA)
        else:
            points = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
            cv2.fillPoly(image, [points], bgr, cv2.LINE_AA)
        tags.update((shape, colour))
    return image, tags


#: The two kinds of label, for training rounds on different tags.
LABELS = {"shapes": set(SHAPES), "colours": set(COLOURS)}


def make_images(
    folder: Path, count: int, seed: int = 0, size: int = 160, only: set[str] | None = None
) -> list[tuple[Path, set[str]]]:
    """Write ``count`` images (every fourth a PNG) into ``folder``; returns ``(path, tags)``,
    the tags limited to ``only`` when given (:data:`LABELS`: the shapes, or the colours)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        image, tags = draw(rng, size)
        path = folder / (f"img{seed}_{i:04d}.png" if i % 4 == 3 else f"img{seed}_{i:04d}.jpg")
        cv2.imwrite(str(path), image)
        out.append((path, tags if only is None else tags & only))
    return out


def make_tree(root: Path, count: int, seed: int = 0, size: int = 160, only: set[str] | None = None) -> Path:
    """A folder-per-tag tree ``root/<tag>/<image>``: each image is copied under each of its tags."""
    staging = root.parent / f".{root.name}-drawn"
    for path, tags in make_images(staging, count, seed, size, only):
        for tag in tags:
            (root / tag).mkdir(parents=True, exist_ok=True)
            (root / tag / path.name).write_bytes(path.read_bytes())
    return root


def make_csv(folder: Path, count: int, seed: int = 0, size: int = 160, only: set[str] | None = None) -> Path:
    """Images plus ``labels.csv`` (``path,tags`` with ``;``-separated tags) in ``folder``."""
    images = make_images(folder / "images", count, seed, size, only)
    manifest = folder / "labels.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "tags"])
        for path, tags in images:
            writer.writerow([path.relative_to(folder).as_posix(), ";".join(sorted(tags))])
    return manifest
