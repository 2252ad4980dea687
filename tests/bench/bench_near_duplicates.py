"""How well the tagger's embedding finds near-duplicates, and the distance that calls one.

Data: ``../shared/data/dam-photos`` (``--data``; the benchmark skips with a message without
it). Photos are split in two by sha256 (``--photos`` of each, in sha256 order): the
**calibration** half picks the distance, the **report** half is measured at that distance.

Pairs, within a half:

- **duplicates**: a photo and each of its edits: re-encoded (JPEG quality 40, and as PNG),
  resized (to 40% of each side), cropped (10–20% off each side's length, from both ends at
  random), watermarked (a line of white text across the middle, 60% opaque), rotated
  (2–5°, either way, the corners filled by reflection); the edits are made in memory, never
  written out;
- **different photos**: every pair of distinct photos of the half that share a tag other than
  ``person`` (COCO labels from the manifest: the hardest negatives the set holds, pictures of
  the same kind of thing), and the edits of each photo against the other photos of such pairs.

Embeddings come from the exported starter model's ``embedding`` output (``serving_default``:
decoded and resized inside the SavedModel, as TF Serving does), cosine distance.
The calibrated distance is the largest at which precision on the calibration half is at
least ``--precision`` (0.99). Last line: ``near_duplicates distance=.. precision=.. recall=..``
on the report half, goal recall >= 0.95 at precision >= 0.99; per-edit recall above it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
EDITS = ("reencode", "png", "resize", "crop", "watermark", "rotate")
BROAD = frozenset({"person"})  # on 92% of the photos: sharing it says nothing


@dataclass
class Photo:
    path: Path
    sha: str
    tags: frozenset[str]


def read_photos(folder: Path) -> list[Photo]:
    """The manifest's photos in sha256 order."""
    photos = []
    with (folder / "manifest.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            path = folder / row["path"]
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            photos.append(Photo(path, sha, frozenset(t for t in row["tags"].split(";") if t)))
    return sorted(photos, key=lambda p: p.sha)


def edit(data: bytes, kind: str, rng: random.Random) -> bytes:
    """One near-duplicate of an encoded photo (see the module docstring), encoded again."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    height, width = image.shape[:2]
    quality = [cv2.IMWRITE_JPEG_QUALITY, 90]
    if kind == "reencode":
        return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 40])[1].tobytes()
    if kind == "png":
        return cv2.imencode(".png", image)[1].tobytes()
    if kind == "resize":
        small = cv2.resize(
            image, (max(1, width * 2 // 5), max(1, height * 2 // 5)), interpolation=cv2.INTER_AREA
        )
        return cv2.imencode(".jpg", small, quality)[1].tobytes()
    if kind == "crop":
        cut_x, cut_y = rng.uniform(0.10, 0.20) * width, rng.uniform(0.10, 0.20) * height
        left, top = int(cut_x * rng.random()), int(cut_y * rng.random())
        right, bottom = width - int(cut_x) + left, height - int(cut_y) + top
        return cv2.imencode(".jpg", image[top:bottom, left:right], quality)[1].tobytes()
    if kind == "watermark":
        marked = image.copy()
        scale = width / 400
        cv2.putText(
            marked,
            "(c) imgtag stock",
            (width // 12, height // 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            max(1, int(scale * 3)),
            cv2.LINE_AA,
        )
        blended = cv2.addWeighted(marked, 0.6, image, 0.4, 0)
        return cv2.imencode(".jpg", blended, quality)[1].tobytes()
    if kind == "rotate":
        angle = rng.uniform(2.0, 5.0) * rng.choice((-1, 1))
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
        turned = cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT_101)
        return cv2.imencode(".jpg", turned, quality)[1].tobytes()
    raise ValueError(kind)


def make_set(photos: list[Photo]) -> tuple[list[bytes], list[int], list[str]]:
    """Encoded images (each photo, then its edits), the photo each came from, and the edit."""
    images, source, kinds = [], [], []
    for index, photo in enumerate(photos):
        data = photo.path.read_bytes()
        rng = random.Random(photo.sha)
        for kind in ("original", *EDITS):
            images.append(data if kind == "original" else edit(data, kind, rng))
            source.append(index)
            kinds.append(kind)
    return images, source, kinds


def pairs(photos: list[Photo], source: list[int], kinds: list[str]):
    """``(i, j, duplicate, edit)`` index arrays into the image set (see the module docstring)."""
    originals = {source[k]: k for k in range(len(source)) if kinds[k] == "original"}
    rows = []
    for k, kind in enumerate(kinds):  # duplicates: each edit against its photo
        if kind != "original":
            rows.append((originals[source[k]], k, True, kind))
    by_photo: dict[int, list[int]] = {}
    for k, s in enumerate(source):
        by_photo.setdefault(s, []).append(k)
    for a in range(len(photos)):  # different photos sharing a specific tag
        for b in range(a + 1, len(photos)):
            if (photos[a].tags & photos[b].tags) - BROAD:
                rows.append((originals[a], originals[b], False, "original"))
                for k in by_photo[a][1:]:
                    rows.append((k, originals[b], False, kinds[k]))
                for k in by_photo[b][1:]:
                    rows.append((k, originals[a], False, kinds[k]))
    i, j, dup, kind = zip(*rows, strict=True)
    return np.array(i), np.array(j), np.array(dup), np.array(kind)


def pair_distances(vectors: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Cosine distance of each pair."""
    from core.embedding import normalised

    unit = normalised(vectors)
    return 1.0 - np.einsum("nd,nd->n", unit[i], unit[j])


def calibrate(distance: np.ndarray, duplicate: np.ndarray, precision: float) -> float:
    """The largest distance at which the pairs called duplicates (distance <= it) are at least
    ``precision`` true ones."""
    order = np.argsort(distance, kind="stable")
    hits = np.cumsum(duplicate[order])
    called = np.arange(1, len(order) + 1)
    ok = np.flatnonzero(hits / called >= precision)
    if not len(ok):
        return 0.0
    last = ok[-1]
    # stop halfway to the next pair, so that the next pair stays out
    following = distance[order[last + 1]] if last + 1 < len(order) else distance[order[last]] + 1e-3
    return float((distance[order[last]] + following) / 2)


def measure(distance: np.ndarray, duplicate: np.ndarray, threshold: float) -> tuple[float, float, int]:
    """``(precision, recall, false positives)`` of calling pairs within ``threshold`` duplicates."""
    called = distance <= threshold
    true = int((called & duplicate).sum())
    precision = true / max(1, int(called.sum()))
    recall = true / max(1, int(duplicate.sum()))
    return precision, recall, int((called & ~duplicate).sum())


def starter_embeddings(images: list[bytes], cache_dir: Path) -> np.ndarray:
    """The starter model's ``embedding`` output for encoded images (its SavedModel, exported once)."""
    from core.tf_runtime import import_tensorflow
    from serving import starter

    tf = import_tensorflow()
    path = starter.saved_model(cache_dir, starter.load_head())
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    out = [
        serve(images=tf.constant(images[k : k + 32]))["embedding"].numpy() for k in range(0, len(images), 32)
    ]
    return np.concatenate(out)


def report(name: str, vectors_by_half, halves, precision_goal: float) -> str:
    """Calibrate on the first half, print figures for both; returns the summary line."""
    (cal_vectors, cal_pairs), (rep_vectors, rep_pairs) = vectors_by_half
    cal_d = pair_distances(cal_vectors, cal_pairs[0], cal_pairs[1])
    threshold = calibrate(cal_d, cal_pairs[2], precision_goal)
    p, r, fp = measure(cal_d, cal_pairs[2], threshold)
    print(
        f"[{name}] calibration half: {halves[0]} photos, {int(cal_pairs[2].sum())} duplicate pairs, "
        f"{int((~cal_pairs[2]).sum())} different-photo pairs; distance {threshold:.4f}: precision {p:.4f} recall {r:.4f}"
    )
    rep_d = pair_distances(rep_vectors, rep_pairs[0], rep_pairs[1])
    p, r, fp = measure(rep_d, rep_pairs[2], threshold)
    for kind in EDITS:
        mask = rep_pairs[3] == kind
        dup = mask & rep_pairs[2]
        print(
            f"[{name}]   {kind:10s} recall {(rep_d[dup] <= threshold).mean():.4f}  "
            f"median distance {np.median(rep_d[dup]):.4f}"
        )
    nearest_negative = np.sort(rep_d[~rep_pairs[2]])[:3]
    print(
        f"[{name}] report half: {halves[1]} photos, {int(rep_pairs[2].sum())} duplicate pairs, "
        f"{int((~rep_pairs[2]).sum())} different-photo pairs ({fp} called duplicates; nearest "
        f"{', '.join(f'{d:.4f}' for d in nearest_negative)})"
    )
    return f"near_duplicates distance={threshold:.4f} precision={p:.4f} recall={r:.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("IMGTAG_QUALITY_DATA", DEFAULT_DATA))
    )
    parser.add_argument("--photos", type=int, default=300, help="photos in each half (default 300)")
    parser.add_argument("--precision", type=float, default=0.99)
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where the starter is exported (default: a temporary folder)",
    )
    args = parser.parse_args(argv)
    folder = args.data / "dam-photos"
    if not (folder / "manifest.csv").is_file():
        print(f"skipped: no photos at {folder} (set --data or IMGTAG_QUALITY_DATA)")
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    photos = read_photos(folder)
    halves = (photos[: len(photos) // 2][: args.photos], photos[len(photos) // 2 :][: args.photos])
    with tempfile.TemporaryDirectory() as scratch:
        cache = args.cache_dir or Path(scratch)
        by_half = []
        for half in halves:
            images, source, kinds = make_set(half)
            by_half.append((starter_embeddings(images, cache), pairs(half, source, kinds)))
    from core.embedding import BYTES

    print(f"embedding: {BYTES} bytes per asset (int8)")
    print(report("embedding", by_half, [len(h) for h in halves], args.precision))
    return 0


if __name__ == "__main__":
    sys.exit(main())
