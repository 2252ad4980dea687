"""Tag quality on photos the tagger never trained or calibrated on, drawn like a real library.

Data: ``../shared/data`` (``--data``): ``dam-photos`` (COCO 2017 photos with their 80 object
labels and boxes) and ``voc-sample`` (PASCAL VOC photos, 20 labelled classes); the benchmark
skips with a message when they are absent. Two held-out splits:

- **old**: the test split of dam-photos (by sha256, as ``imgtag ingest`` splits), whole photos:
  what earlier versions of this benchmark measured; 91% of them show people.
- **library**: at most half of it shows people. Every person-free photo of that test split,
  every VOC photo (the starter never sees VOC), and person-free crops cut with ``boxes.csv``
  around the other objects of the test split's people photos (a crop and its photo share the
  split), then as many photos with people (in sha256 order) as there are person-free pictures.

The starter model trained on the train split and calibrated on the val split only. For each
tagger (the pretrained ImageNet classifier alone, and the shipped default), on each split, as
``imgtag tag`` emits tags (decoded the same way, thresholds and the tag hierarchy applied):

- ``right``: share of pictures with at least one emitted tag naming a labelled object that is
  in them (the 80 COCO names as the tag map calls them: ``tv`` is ``television``);
  ``right_any``: with any emitted tag the labels confirm (``animal`` for a dog counts too);
- ``no_tag``: share of pictures with no tag at all;
- ``precision``: of the emitted tags that name a labelled object, the share that are right
  (on VOC photos only VOC's 20 classes count); ``precision_any``: of every emitted tag the
  labels can refute (:func:`pipelines.training.calibration.refutable`);
- ``person`` recall, and ``person_free``: the share of person-free pictures tagged ``person``;
- ``mean_recall``: recall at the emitted thresholds averaged over the labels on at least 20
  pictures of the split;
- ``retention``: of the pictures where the bare pretrained classifier's top class has
  probability >= 0.5, the share where the tagger emits that class's own tag;
- ``images/s``: the whole tagging path on the old split's photos (decode threads, batches).

Then the same figures for pictures with and without people, and **non-photos**: pages of text,
textures, a logo and drawings that scikit-image ships, pictures drawn with fonts and chart
styles the starter never trained on (:mod:`pipelines.training.synthetic`'s held-out ones),
and screenshots of this project's web pages when Chromium is there: ``object tags`` per
non-photo (any tag but the non-photo ones, :data:`core.vocabulary.NON_PHOTO`) and the share
given a non-photo tag.

Then what the default's scores allow at best on the library split, whatever the thresholds
(:func:`ceilings`): how often its top named tag is right, ``person`` recall with ``person`` on
at most 5% of person-free pictures, and the mean recall at precision 0.9 with thresholds
chosen on the split itself. A target above these needs better scores, not better thresholds.

Last line, for the default tagger on the library split: ``quality right=.. no_tag=..
precision=.. person_recall=.. person_free=.. mean_recall=.. retention=.. images_per_s=..
nonphoto_object_tags=..``. Targets: >= 0.90, <= 0.05, >= 0.90, >= 0.90, <= 0.05, >= 0.50,
>= 0.95, >= 60, <= 0.1.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
VOC20 = frozenset(
    (
        "airplane",
        "bicycle",
        "bird",
        "boat",
        "bottle",
        "bus",
        "car",
        "cat",
        "chair",
        "cow",
        "dining table",
        "dog",
        "horse",
        "motorcycle",
        "person",
        "potted plant",
        "sheep",
        "couch",
        "train",
        "television",
    )
)  # VOC's 20 classes under the tag map's names (voc-sample/manifest.csv already maps them)
MIN_RECALL_SUPPORT = 20
RETENTION_PROBABILITY = 0.5
HELD_OUT_SEED = 7919  # the drawn non-photos: another seed, fonts and chart styles than the build's
HELD_OUT_PER_KIND = 12


@dataclass
class Picture:
    """One held-out picture: where it comes from and what its labels say."""

    name: str
    path: Path
    labels: frozenset[str]
    labelled: frozenset[str]  # the classes its source labels at all (COCO's 80, VOC's 20)
    kind: str  # "photo" (dam-photos), "crop" (a person-free crop), "voc"
    sha: str
    region: tuple | None = None
    _data: bytes | None = field(default=None, repr=False)

    @property
    def people(self) -> bool:
        return "person" in self.labels

    def data(self) -> bytes:
        """The encoded picture (a crop is cut from its photo and stored as a JPEG, quality 95)."""
        if self._data is None:
            raw = self.path.read_bytes()
            if self.region is None:
                self._data = raw
            else:
                import cv2

                from core import imageio
                from pipelines.training.build_starter import cut

                rgb, _ = imageio.decode(raw, str(self.path))
                crop = cv2.cvtColor(cut(rgb, self.region), cv2.COLOR_RGB2BGR)
                self._data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
        return self._data


def held_out(data: Path) -> tuple[list[Picture], list[Picture]]:
    """``(old split, library split)`` (see the module docstring)."""
    from pipelines.training.build_starter import COCO_TAGS, person_free_crops, read_boxes, tag_for
    from pipelines.training.dataset import split_for

    coco80 = frozenset(COCO_TAGS.get(n, n) for n in coco_names())
    photos = data / "dam-photos"
    boxes = read_boxes(photos / "boxes.csv")
    old, crops = [], []
    with (photos / "manifest.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            path = photos / row["path"]
            raw = path.read_bytes()
            sha = hashlib.sha256(raw).hexdigest()
            if split_for(sha) != "test":
                continue
            labels = frozenset(tag_for(n) for n in row["tags"].split(";") if n)
            old.append(Picture(path.stem, path, labels, coco80, "photo", sha))
            if "person" in labels:
                import cv2

                height, width = cv2.imdecode(
                    np.frombuffer(raw, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_2
                ).shape
                for k, (region, tags) in enumerate(
                    person_free_crops(boxes[row["path"]], random.Random(sha + "free"), width * 2, height * 2)
                ):
                    crops.append(
                        Picture(f"{path.stem}-crop{k}", path, frozenset(tags), coco80, "crop", sha, region)
                    )
    voc = []
    voc_dir = data / "voc-sample"
    if (voc_dir / "manifest.csv").is_file():
        with (voc_dir / "manifest.csv").open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                path = voc_dir / row["path"]
                sha = hashlib.sha256(path.read_bytes()).hexdigest()
                labels = frozenset(tag_for(n) for n in row["tags"].split(";") if n)
                voc.append(Picture(path.stem, path, labels, frozenset(VOC20), "voc", sha))
    candidates = old + voc + crops
    free = [p for p in candidates if not p.people]
    people = sorted((p for p in candidates if p.people and p.kind != "crop"), key=lambda p: p.sha)[
        : len(free)
    ]
    return old, free + people


def coco_names() -> list[str]:
    names = (
        "person;bicycle;car;motorcycle;airplane;bus;train;truck;boat;traffic light;fire hydrant;stop sign;"
        "parking meter;bench;bird;cat;dog;horse;sheep;cow;elephant;bear;zebra;giraffe;backpack;umbrella;"
        "handbag;tie;suitcase;frisbee;skis;snowboard;sports ball;kite;baseball bat;baseball glove;skateboard;"
        "surfboard;tennis racket;bottle;wine glass;cup;fork;knife;spoon;bowl;banana;apple;sandwich;orange;"
        "broccoli;carrot;hot dog;pizza;donut;cake;chair;couch;potted plant;bed;dining table;toilet;tv;laptop;"
        "mouse;remote;keyboard;cell phone;microwave;oven;toaster;sink;refrigerator;book;clock;vase;scissors;"
        "teddy bear;hair drier;toothbrush"
    ).split(";")
    assert len(names) == 80, len(names)
    return names


def non_photos(with_screenshots: bool = True) -> list[tuple[str, str, bytes]]:
    """``(name, kind, encoded)`` pictures that are not photos of things, none of them trained on."""
    import cv2
    import skimage.data

    from core.vocabulary import NON_PHOTO
    from pipelines.training import synthetic

    out = []

    def png(rgb) -> bytes:
        rgb = np.asarray(rgb)
        if rgb.dtype == bool:
            rgb = rgb.astype(np.uint8) * 255
        if rgb.dtype != np.uint8:
            rgb = (255 * (rgb - rgb.min()) / (rgb.max() - rgb.min() + 1e-9)).astype(np.uint8)
        if rgb.ndim == 2:
            rgb = np.stack([rgb] * 3, axis=-1)
        if rgb.shape[-1] == 4:  # on white
            alpha = rgb[..., 3:4] / 255.0
            rgb = (rgb[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
        return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()

    shipped = {
        "text": "document",
        "page": "document",
        "brick": "texture",
        "grass": "texture",
        "gravel": "texture",
        "logo": "graphic",
        "horse": "graphic",
        "checkerboard": "graphic",
        "colorwheel": "graphic",
        "binary_blobs": "graphic",
        "shepp_logan_phantom": "graphic",
    }
    for name, kind in shipped.items():
        out.append((f"skimage:{name}", kind, png(getattr(skimage.data, name)())))
    fonts = synthetic.Fonts(synthetic.font_files(synthetic.HELD_OUT_FONTS))
    for kind in NON_PHOTO:
        for k in range(HELD_OUT_PER_KIND):
            rng = random.Random(f"{HELD_OUT_SEED}:{kind}:{k}")
            image = synthetic.draw(kind, rng, fonts, synthetic.HELD_OUT_CHART_STYLES)
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=90)
            out.append((f"drawn:{kind}:{k}", kind, buffer.getvalue()))
    if with_screenshots:
        out.extend(("screenshot:" + name, "screenshot", data) for name, data in project_screenshots())
    return out


def project_screenshots() -> list[tuple[str, bytes]]:
    """Screenshots of this project's own web pages (sign-in, gallery, upload, thresholds, API
    schema) in headless Chromium, at two window sizes; none when Chromium or Playwright is missing."""
    import subprocess
    import tempfile

    chromium = os.environ.get("IMGTAG_CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).is_file():
        print(f"  (no screenshots: no Chromium at {chromium})")
        return []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return []
    import socket

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    home = Path(tempfile.mkdtemp(prefix="imgtag-bench-screens-"))
    env = {**os.environ, "IMGTAG_HOME": str(home), "IMGTAG_DEBUG": "true"}
    env.pop("DATABASE_URL", None)
    imgtag = Path(sys.executable).with_name("imgtag")
    subprocess.run([str(imgtag), "migrate"], env=env, check=True, capture_output=True)
    subprocess.run(
        [str(imgtag), "createuser", "bench", "--password", "a-long-bench-password", "--superuser"],
        env=env,
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [str(imgtag), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    shots = []
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                import urllib.request

                urllib.request.urlopen(base + "/accounts/login/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            for width, height in ((1280, 800), (800, 1000)):
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(base + "/accounts/login/")
                shots.append((f"login-{width}", page.screenshot()))
                page.fill("input[name=username]", "bench")
                page.fill("input[name=password]", "a-long-bench-password")
                page.click("button[type=submit], input[type=submit]")
                for path in ("/", "/upload/", "/thresholds/", "/api/schema/swagger-ui/", "/admin/"):
                    page.goto(base + path)
                    page.wait_for_timeout(300)
                    shots.append((f"{path.strip('/') or 'gallery'}-{width}", page.screenshot()))
                page.close()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    return shots


def named_tags() -> frozenset[str]:
    from pipelines.training.build_starter import COCO_TAGS

    return frozenset(COCO_TAGS.get(n, n) for n in coco_names())


class Judge:
    """Which emitted tags a picture's labels confirm, and which they can refute."""

    def __init__(self, pictures: list[Picture]):
        from core.tagmap import TagMap
        from pipelines.training import calibration

        tagmap = TagMap.load()
        self.parent = tagmap.parent
        labels = set().union(*(p.labelled for p in pictures))
        self.tags = sorted(set(tagmap.tags) | labels | {"people"})
        self.right = calibration.evidence(self.tags, labels, self.parent)
        self.refutable = set(calibration.refutable(self.tags, labels, self.parent, tagmap.class_members()))
        self.named = named_tags()

    def judge(self, picture: Picture, tag: str) -> tuple[bool, bool]:
        """``(confirmed, refutable)`` for one emitted tag on one picture."""
        reached = self.right.get(tag)
        if not reached:
            return False, False
        confirmed = bool(reached & picture.labels)
        checkable = tag in self.refutable and (confirmed or reached <= picture.labelled)
        return confirmed, checkable


def measure(
    pictures: list[Picture], emitted: list[list[str]], judge: Judge, top: list[tuple[str, float]]
) -> dict:
    """The figures of one tagger on one split (see the module docstring)."""
    right = right_any = no_tag = 0
    named_judged = named_right = judged = judged_right = 0
    for picture, tags in zip(pictures, emitted, strict=True):
        no_tag += not tags
        any_named = any_confirmed = False
        for tag in tags:
            confirmed, checkable = judge.judge(picture, tag)
            any_confirmed |= confirmed
            if tag in judge.named and tag in picture.labelled:
                named_judged += 1
                named_right += tag in picture.labels
                any_named |= tag in picture.labels
            if checkable:
                judged += 1
                judged_right += confirmed
        right += any_named
        right_any += any_confirmed
    people = [i for i, p in enumerate(pictures) if p.people]
    free = [i for i, p in enumerate(pictures) if not p.people]
    counts = Counter(label for p in pictures for label in p.labels)
    recalls = {
        label: float(np.mean([label in emitted[i] for i, p in enumerate(pictures) if label in p.labels]))
        for label, n in counts.items()
        if n >= MIN_RECALL_SUPPORT and label in judge.named
    }
    kept = [i for i, (_, probability) in enumerate(top) if probability >= RETENTION_PROBABILITY]
    n = len(pictures)
    return {
        "n": n,
        "right": right / n,
        "right_any": right_any / n,
        "no_tag": no_tag / n,
        "precision": named_right / named_judged if named_judged else float("nan"),
        "precision_any": judged_right / judged if judged else float("nan"),
        "person": float(np.mean(["person" in emitted[i] for i in people])) if people else float("nan"),
        "person_free": float(np.mean(["person" in emitted[i] for i in free])) if free else float("nan"),
        "mean_recall": float(np.mean(list(recalls.values()))) if recalls else float("nan"),
        "recalls": recalls,
        "retention": float(np.mean([top[i][0] in emitted[i] for i in kept])) if kept else float("nan"),
        "retention_n": len(kept),
    }


def tag_all(tagger, blobs: list[bytes]) -> list[list[str]]:
    results = list(tagger.tag_images((i, data, f"{i}.jpg") for i, data in enumerate(blobs)))
    assert all(r.ok for r in results), [str(r.error) for r in results if not r.ok][:3]
    return [[t.name for t in r.tags] for r in results]


def top_classes(pretrained, blobs: list[bytes]) -> list[tuple[str, float]]:
    """The bare classifier's top class (its own tag) and probability for each picture."""
    from core import imageio

    pixels = np.stack([imageio.load_for_model(b, pretrained.image_size, "x")[0] for b in blobs])
    probabilities = pretrained.predict_pixels(pixels)
    own = pretrained.labels.class_tags
    return [
        (own[k], float(row[k])) for row, k in zip(probabilities, probabilities.argmax(axis=1), strict=True)
    ]


def ceilings(pictures: list[Picture], tagger, named: frozenset[str]) -> dict:
    """What the tagger's scores allow at best on this split, whatever the thresholds: the
    share of pictures whose highest-scoring checkable named tag is right (with and without
    people), ``person`` recall when its threshold lets it on no more than 5% of the
    person-free pictures, and the mean recall at precision 0.9 with every label's threshold
    chosen on this split itself (an oracle no calibration can beat)."""
    from core import imageio

    pixels = np.stack([imageio.load_for_model(p.data(), tagger.image_size, "x")[0] for p in pictures])
    scores = tagger.predict_pixels(pixels)
    tags = list(tagger.labels.tags)
    column = {t: i for i, t in enumerate(tags) if t in named}
    top_right = np.array(
        [
            max((t for t in column if t in p.labelled), key=lambda t: row[column[t]]) in p.labels
            for p, row in zip(pictures, scores, strict=True)
        ]
    )
    people = np.array([p.people for p in pictures])
    person = scores[:, tags.index("person")]
    threshold = np.quantile(person[~people], 0.95)
    recalls = []
    for label, n in Counter(label for p in pictures for label in p.labels).items():
        if n < MIN_RECALL_SUPPORT or label not in column:
            continue
        checked = np.array([label in p.labelled for p in pictures])
        truth = np.array([label in p.labels for p in pictures])[checked]
        order = np.argsort(-scores[checked, column[label]])
        hits = np.cumsum(truth[order])
        precise = hits / np.arange(1, len(order) + 1) >= 0.9
        recalls.append(hits[precise].max() / truth.sum() if precise.any() else 0.0)
    return {
        "top_right": float(top_right.mean()),
        "top_right_free": float(top_right[~people].mean()),
        "person_at_5": float(np.mean(person[people] > threshold)),
        "oracle_mean_recall": float(np.mean(recalls)),
    }


def tagging_rate(tagger, paths: list[Path]) -> float:
    """Images per second through the tagger's engine (decode threads, batches), files from disk."""
    list(tagger.tag_images([(str(p), p, p.name) for p in paths[:64]]))  # warm up
    start = time.perf_counter()
    results = list(tagger.tag_images([(str(p), p, p.name) for p in paths]))
    assert all(r.ok for r in results)
    return len(paths) / (time.perf_counter() - start)


FIGURES = (
    "right",
    "right_any",
    "no_tag",
    "precision",
    "precision_any",
    "person",
    "person_free",
    "mean_recall",
    "retention",
)


def row(name: str, m: dict, rate: float | None = None) -> str:
    values = " ".join(f"{m[k]:>8.3f}" for k in FIGURES)
    return f"{name:<40} {m['n']:>5} {values} {'' if rate is None else f'{rate:>8.1f}'}"


def header() -> str:
    return (
        f"{'tagger / split':<40} {'n':>5} " + " ".join(f"{k[:8]:>8}" for k in FIGURES) + f" {'images/s':>8}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("IMGTAG_QUALITY_DATA", DEFAULT_DATA))
    )
    parser.add_argument("--per-tag", action="store_true", help="also print the recall of every common label")
    parser.add_argument("--no-screenshots", action="store_true", help="leave the project's screenshots out")
    args = parser.parse_args(argv)
    if not (args.data / "dam-photos" / "manifest.csv").is_file():
        print(f"skipped: no labelled photos at {args.data}/dam-photos (set --data or IMGTAG_QUALITY_DATA)")
        return 0

    import tempfile

    os.environ.setdefault("IMGTAG_HOME", tempfile.mkdtemp(prefix="imgtag-bench-quality-"))
    from core.settings import Settings
    from core.vocabulary import NON_PHOTO, PICTURE_TAGS
    from serving.current import get_tagger, pretrained_tagger

    settings = Settings.from_env()
    old, library = held_out(args.data)
    kinds = Counter((p.kind, p.people) for p in library)
    print(
        f"old split: {len(old)} test photos of dam-photos ({sum(p.people for p in old)} with people)\n"
        f"library split: {len(library)} pictures, {sum(p.people for p in library)} with people: "
        + ", ".join(
            f"{n} {kind}{' with people' if people else ' without people'}"
            for (kind, people), n in sorted(kinds.items())
        ),
        flush=True,
    )
    pretrained = pretrained_tagger(settings)
    default = get_tagger(settings)
    taggers = (("ImageNet tags only", pretrained), ("default", default))
    print(f"default: the shipped tagger, {default.model_name} {default.model_version}")
    judge = Judge(old + library)
    results: dict[tuple[str, str], dict] = {}
    print(header())
    for split, pictures in (("old", old), ("library", library)):
        blobs = [p.data() for p in pictures]
        top = top_classes(pretrained, blobs)
        for name, tagger in taggers:
            emitted = tag_all(tagger, blobs)
            m = measure(pictures, emitted, judge, top)
            rate = tagging_rate(tagger, [p.path for p in old]) if split == "old" else None
            results[(name, split)] = {**m, "rate": rate, "emitted": emitted}
            print(row(f"{name}, {split}", m, rate), flush=True)
    for name, _ in taggers:
        m = results[(name, "library")]
        for people in (True, False):
            chosen = [i for i, p in enumerate(library) if p.people == people]
            sub = measure(
                [library[i] for i in chosen],
                [m["emitted"][i] for i in chosen],
                judge,
                top_classes(pretrained, [library[i].data() for i in chosen]),
            )
            print(row(f"{name}, library, {'people' if people else 'no people'}", sub), flush=True)
    default_m = results[(taggers[1][0], "library")]
    if args.per_tag:
        for label, recall in sorted(default_m["recalls"].items(), key=lambda kv: -kv[1]):
            before = results[(taggers[0][0], "library")]["recalls"].get(label, 0.0)
            print(f"  {label:<20} recall {recall:.3f} (ImageNet only {before:.3f})")
    print(f"labels on >= {MIN_RECALL_SUPPORT} library pictures: {', '.join(sorted(default_m['recalls']))}")
    c = ceilings(library, default, judge.named)
    print(
        "what the default's scores allow on the library split, whatever the thresholds: "
        f"its top named tag is right on {c['top_right']:.3f} ({c['top_right_free']:.3f} without people); "
        f"person recall {c['person_at_5']:.3f} with person on <= 5% of person-free pictures; "
        f"mean recall at precision 0.9 with each label's threshold chosen on this split {c['oracle_mean_recall']:.3f}"
    )

    pictures = non_photos(with_screenshots=not args.no_screenshots)
    kept = set(NON_PHOTO) | set(PICTURE_TAGS)
    print(
        f"{len(pictures)} non-photos: "
        + ", ".join(f"{n} {k}" for k, n in sorted(Counter(k for _, k, _ in pictures).items()))
    )
    nonphoto = {}
    for name, tagger in taggers:
        emitted = tag_all(tagger, [data for _, _, data in pictures])
        objects = [[t for t in tags if t not in kept] for tags in emitted]
        per_picture = float(np.mean([len(o) for o in objects]))
        said = float(np.mean([any(t in NON_PHOTO for t in tags) for tags in emitted]))
        right_kind = float(
            np.mean([kind in tags for (_, kind, _), tags in zip(pictures, emitted, strict=True)])
        )
        person = sum("person" in tags for tags in emitted)
        nonphoto[name] = per_picture
        print(
            f"{name[:34]:<34} object tags per non-photo {per_picture:.3f}, a non-photo tag on {said:.3f} "
            f"(the right one on {right_kind:.3f}), person on {person}"
        )
        worst = Counter(t for o in objects for t in o).most_common(6)
        if worst:
            print(f"{'':<34} most frequent object tags: " + ", ".join(f"{t} {n}" for t, n in worst))
    d = default_m
    print(
        f"quality right={d['right']:.3f} no_tag={d['no_tag']:.3f} precision={d['precision']:.3f} "
        f"person_recall={d['person']:.3f} person_free={d['person_free']:.3f} mean_recall={d['mean_recall']:.3f} "
        f"retention={d['retention']:.3f} images_per_s={results[(taggers[1][0], 'old')]['rate']:.1f} "
        f"nonphoto_object_tags={nonphoto[taggers[1][0]]:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
