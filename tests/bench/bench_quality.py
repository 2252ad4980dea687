"""Tag quality on real everyday photos: the ImageNet-only tagger and the starter model side by side.

Data: ``../shared/data/dam-photos`` (COCO 2017 photos with their 80 object labels; or
``--data``); the benchmark skips with a message when it is absent. The photos measured are the
**test split** of that folder, by sha256 as ``imgtag ingest`` splits (whole photos only): the
starter model never trained or calibrated on them.

For each tagger, on the same photos, decoded the way ``imgtag import`` decodes them:

- ``images_with_correct_tag``: share of photos with at least one emitted tag naming a COCO object
  that is in them (COCO names as the tag map calls them: ``tv`` is ``television``);
- ``no_tag``: share of photos with no tag at all;
- ``precision``: of the emitted tags that name a COCO object, the share that are right;
- ``person_ap``: average precision of the ``person`` score (no such tag: not measured);
- ``map_coco``: mean average precision over the COCO objects on at least 5 test photos (a tag
  the tagger lacks scores 0);
- recall of small objects people search for (car, cup, chair, bottle) at the emitted thresholds;
- images/s of the whole tagging path (decode in threads, batched LiteRT model).

It also measures **inference over crops** with the starter model: the whole photo plus four
60% corner crops, each tag scoring ``(whole + max over crops) / 2``, at its cost in images/s.

Last line, for the starter model: ``quality images_with_correct_tag=.. no_tag=.. person_ap=..
map_coco=.. precision=..``. Targets: >= 0.90, <= 0.05, >= 0.90, >= 0.50, >= 0.85.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "dam-photos"
SMALL_OBJECTS = ("car", "cup", "chair", "bottle")
MIN_SUPPORT = 5
GRID = 0.6  # corner crops of 60% of each side


def test_photos(data: Path) -> list[tuple[Path, set[str]]]:
    """The test split's photos and their COCO objects as tag names."""
    from pipelines.training.build_starter import tag_for
    from pipelines.training.dataset import split_for

    out = []
    with (data / "manifest.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            path = data / row["path"]
            if split_for(hashlib.sha256(path.read_bytes()).hexdigest()) == "test":
                out.append((path, {tag_for(n) for n in row["tags"].split(";") if n}))
    return out


def coco_tags() -> list[str]:
    from pipelines.training.build_starter import COCO_TAGS

    names = (
        "person bicycle car motorcycle airplane bus train truck boat;traffic light;fire hydrant;stop sign;"
        "parking meter;bench;bird;cat;dog;horse;sheep;cow;elephant;bear;zebra;giraffe;backpack;umbrella;"
        "handbag;tie;suitcase;frisbee;skis;snowboard;sports ball;kite;baseball bat;baseball glove;skateboard;"
        "surfboard;tennis racket;bottle;wine glass;cup;fork;knife;spoon;bowl;banana;apple;sandwich;orange;"
        "broccoli;carrot;hot dog;pizza;donut;cake;chair;couch;potted plant;bed;dining table;toilet;tv;laptop;"
        "mouse;remote;keyboard;cell phone;microwave;oven;toaster;sink;refrigerator;book;clock;vase;scissors;"
        "teddy bear;hair drier;toothbrush"
    )
    first, rest = names.split(";", 1)
    coco = first.split(" ") + rest.split(";")
    assert len(coco) == 80, len(coco)
    return [COCO_TAGS.get(n, n) for n in coco]


def scores_of(tagger, pixels: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(tags, scores (n, tags), thresholds)`` of a tagger on model-sized pixels."""
    outputs = tagger.predict_pixels(pixels)
    labels = tagger.labels
    scores = labels.scores(outputs) if hasattr(labels, "matrix") else np.asarray(outputs)
    return list(labels.tags), np.asarray(scores), np.asarray(labels.thresholds)


def measure(tags, scores, thresholds, truth: list[set[str]], coco: list[str]) -> dict:
    from sklearn.metrics import average_precision_score

    index = {t: j for j, t in enumerate(tags)}
    emitted = scores >= thresholds[None, :]
    coco_set = set(coco)
    coco_columns = [index[t] for t in coco if t in index]
    correct = judged = 0
    with_correct = 0
    for i, present in enumerate(truth):
        named = [tags[j] for j in coco_columns if emitted[i, j]]
        judged += len(named)
        right = sum(t in present for t in named)
        correct += right
        with_correct += right > 0
    aps = {}
    for tag in coco:
        y = np.array([tag in p for p in truth], np.float32)
        if y.sum() >= MIN_SUPPORT:
            s = scores[:, index[tag]] if tag in index else np.zeros(len(truth))
            aps[tag] = float(average_precision_score(y, s))
    recall = {}
    for tag in SMALL_OBJECTS:
        y = np.array([tag in p for p in truth])
        hits = emitted[:, index[tag]] if tag in index else np.zeros(len(truth), bool)
        recall[tag] = f"{int((hits & y).sum())}/{int(y.sum())}"
    person = None
    if "person" in index:
        person = float(average_precision_score([("person" in p) for p in truth], scores[:, index["person"]]))
    return {
        "images_with_correct_tag": with_correct / len(truth),
        "no_tag": float((~emitted.any(axis=1)).mean()),
        "precision": correct / judged if judged else 0.0,
        "person_ap": person,
        "map_coco": float(np.mean(list(aps.values()))),
        "coco_tags_measured": len(aps),
        "tags_per_photo": float(emitted.sum(axis=1).mean()),
        "coco_tags_emitted": sum(1 for t in coco_set if t in index and emitted[:, index[t]].any()),
        "recall": recall,
        "aps": aps,
    }


def load_pixels(paths: list[Path], size: int = 224) -> np.ndarray:
    from core import imageio

    with ThreadPoolExecutor(2) as pool:
        return np.stack(list(pool.map(lambda p: imageio.load_for_model(p.read_bytes(), size, str(p))[0], paths)))


def grid_pixels(path: Path, size: int = 224) -> np.ndarray:
    """The four corner crops (60% of each side) of a photo, at the model's size."""
    import cv2

    from core import imageio

    rgb, _ = imageio.load_to_fit(path.read_bytes(), 2 * size, str(path))
    h, w = rgb.shape[:2]
    ch, cw = int(h * GRID), int(w * GRID)
    crops = [rgb[y : y + ch, x : x + cw] for y, x in ((0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw))]
    return np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in crops])


def tagging_rate(tagger, paths: list[Path]) -> float:
    """Images per second through the tagger's engine (decode threads, batches), files from disk."""
    list(tagger.tag_images([(str(p), p, p.name) for p in paths[:64]]))  # warm up
    start = time.perf_counter()
    results = list(tagger.tag_images([(str(p), p, p.name) for p in paths]))
    assert all(r.ok for r in results)
    return len(paths) / (time.perf_counter() - start)


def grid_rate(tagger, paths: list[Path]) -> float:
    start = time.perf_counter()
    for chunk in range(0, len(paths), 32):
        batch = paths[chunk : chunk + 32]
        whole = load_pixels(batch)
        crops = np.concatenate([grid_pixels(p) for p in batch])
        tagger.predict_pixels(np.concatenate([whole, crops]))
    return len(paths) / (time.perf_counter() - start)


def row(name: str, m: dict, rate: float) -> str:
    person = "  n/a" if m["person_ap"] is None else f"{m['person_ap']:.3f}"
    recall = " ".join(f"{t} {m['recall'][t]:>5}" for t in SMALL_OBJECTS)
    return (
        f"{name:<28} {m['images_with_correct_tag']:>7.3f} {m['no_tag']:>6.3f} {m['precision']:>9.3f} "
        f"{person:>6} {m['map_coco']:>8.3f} {m['tags_per_photo']:>8.2f} {rate:>8.1f}   {recall}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("IMGTAG_QUALITY_DATA", DEFAULT_DATA)))
    parser.add_argument("--per-tag", action="store_true", help="also print the AP of every COCO tag")
    args = parser.parse_args(argv)
    if not (args.data / "manifest.csv").is_file():
        print(f"skipped: no labelled photos at {args.data} (set --data or IMGTAG_QUALITY_DATA)")
        return 0

    import tempfile

    os.environ.setdefault("IMGTAG_HOME", tempfile.mkdtemp(prefix="imgtag-bench-quality-"))
    from core.runtimes import PRETRAINED_MODEL_NAME, PRETRAINED_MODEL_VERSION
    from core.settings import Settings
    from serving.current import CurrentModel, _cached_tagger, get_tagger

    settings = Settings.from_env()
    photos = test_photos(args.data)
    paths = [p for p, _ in photos]
    truth = [t for _, t in photos]
    coco = coco_tags()
    print(f"{len(photos)} test photos of {args.data} ({sum('person' in t for t in truth)} with people)", flush=True)

    imagenet = _cached_tagger(
        CurrentModel(PRETRAINED_MODEL_NAME, PRETRAINED_MODEL_VERSION),
        settings.batch_size, settings.decode_threads, settings.max_pixels, settings.runtime, settings.cache_dir,
    )
    starter = get_tagger(settings)
    pixels = load_pixels(paths)
    results = {}
    for name, tagger in (("ImageNet tags only (before)", imagenet), (f"starter model ({starter.model_version})", starter)):
        tags, scores, thresholds = scores_of(tagger, pixels)
        results[name] = (measure(tags, scores, thresholds, truth, coco), tagging_rate(tagger, paths))

    # inference over crops: the whole photo and four corner crops, (whole + max crop) / 2
    tags, whole, thresholds = scores_of(starter, pixels)
    crops = np.stack([scores_of(starter, grid_pixels(p))[1].max(axis=0) for p in paths])
    combined = (whole + crops) / 2
    results["starter, whole + 4 crops"] = (measure(tags, combined, thresholds, truth, coco), grid_rate(starter, paths))

    print(
        f"{'tagger':<28} {'correct':>7} {'no_tag':>6} {'precision':>9} {'person':>6} {'map_coco':>8} "
        f"{'tags/img':>8} {'images/s':>8}   recall at the thresholds"
    )
    for name, (m, rate) in results.items():
        print(row(name, m, rate))
    starter_m = next(m for name, (m, _) in results.items() if name.startswith("starter model"))
    if args.per_tag:
        base = results["ImageNet tags only (before)"][0]["aps"]
        for tag, ap in sorted(starter_m["aps"].items(), key=lambda kv: -kv[1]):
            print(f"  {tag:<20} AP {ap:.3f} (ImageNet only {base.get(tag, 0):.3f})")
    print(
        f"COCO tags emitted at least once: {starter_m['coco_tags_emitted']} of 80; "
        f"mAP over the {starter_m['coco_tags_measured']} COCO tags on >= {MIN_SUPPORT} test photos"
    )
    s = starter_m
    print(
        f"quality images_with_correct_tag={s['images_with_correct_tag']:.3f} no_tag={s['no_tag']:.3f} "
        f"person_ap={s['person_ap']:.3f} map_coco={s['map_coco']:.3f} precision={s['precision']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
