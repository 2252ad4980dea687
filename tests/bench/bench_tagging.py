"""Tagging throughput, measured against baselines in the same run (``make bench``).

On generated 640x480 JPEGs (photos that scikit-image ships, cropped, recoloured and resized,
so every file is distinct) it measures:

(a) the bare model, batched, on pre-decoded tensors: the ceiling;
(b) ``imgtag import`` end to end into a fresh SQLite catalog (read, hash, dedupe, store,
    decode, tag, commit), with the model already loaded: the starter model (the default), and
    the ImageNet-only tagger it replaced (the same backbone without the learned head, the merge
    of both heads' tags and the larger vocabulary);
(c) a naive pipeline: PIL full decode, ``model.predict`` one image at a time, one commit per
    row;
(d) what the similar-images embedding (:mod:`core.embedding`) costs: the same model converted
    with its ``embedding`` output pruned, bare and through ``imgtag import`` (which then stores
    no embedding and checks no near-duplicates), interleaved with the default in two rounds so
    drift hits both alike.

On 12-megapixel JPEGs it compares decoding to the model's input size at reduced size
(libjpeg DCT scaling) against a full decode and resize.

The last line is ``ratio e2e/bare=<b/a> e2e/naive=<b/c> reduced/full_decode_12mp=<x>
starter/imagenet_import=<b/b0> embedding_cost_import=<1 - b/d> embedding_cost_bare=<1 - a/d_bare>``.
Targets: e2e/bare >= 0.8, e2e/naive >= 10, reduced/full >= 3, starter/imagenet_import >= 0.8,
embedding cost <= 0.10. No asserts: machines are noisy.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import skimage.data  # noqa: E402

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field", "retina", "immunohistochemistry")


def make_jpegs(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """Distinct photo-like JPEGs of ``size`` (width, height)."""
    rng = np.random.default_rng(seed)
    sources = [getattr(skimage.data, name)() for name in PHOTOS]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        src = sources[i % len(sources)]
        h, w = src.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = src[y : y + ch, x : x + cw].astype(np.float32) * rng.uniform(0.8, 1.2, size=3)
        image = cv2.resize(np.clip(crop, 0, 255).astype(np.uint8), size, interpolation=cv2.INTER_CUBIC)
        image = cv2.add(image, rng.integers(0, 6, image.shape, dtype=np.uint8))  # camera-like noise
        path = folder / f"img_{i:05d}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def harmonic(rates: list[float]) -> float:
    """The rate over rounds of equal size (images over total time)."""
    return len(rates) / sum(1 / r for r in rates)


def embedding_bytes() -> int:
    from core import embedding

    return embedding.BYTES


def bench_bare(tagger, pixels: np.ndarray, repeats: int = 2) -> float:
    tagger.predict_pixels(pixels[: tagger.batch_size])  # trace once
    start = time.perf_counter()
    for _ in range(repeats):
        tagger.predict_pixels(pixels)
    return rate(len(pixels) * repeats, time.perf_counter() - start)


def setup_catalog(home: Path) -> None:
    os.environ["IMGTAG_HOME"] = str(home)
    os.environ.pop("DATABASE_URL", None)
    from catalog import runtime

    runtime.setup(migrate=True)


def bench_import(tagger, files: list[Path]) -> float:
    from pipelines.tagging.importer import import_files

    start = time.perf_counter()
    summary = import_files(files, tagger)
    seconds = time.perf_counter() - start
    assert summary.imported == len(files), summary.as_dict()
    return rate(len(files), seconds)


def without_embedding(tagger, model):
    """``tagger``'s model converted to LiteRT with only its scores as output: the embedding's
    pooling and projection are pruned by the converter, everything else is the same."""
    from core.runtimes import litert_interpreter, saved_model_predictor, signature_flatbuffer
    from core.tagger import Tagger

    predict = saved_model_predictor(model.path)

    def scores(pixels):
        out = predict(pixels)
        return out[0] if isinstance(out, tuple) else out

    scores.loaded = predict.loaded  # the converter reads the variables from it
    size, batch = model.image_size, tagger.batch_size
    flatbuffer = signature_flatbuffer(scores, batch, size)
    return Tagger(
        litert_interpreter(flatbuffer),
        tagger.labels,
        tagger.model_name,
        tagger.model_version,
        image_size=size,
        batch_size=batch,
        decode_threads=tagger.decode_threads,
    )


def bench_naive(model, tagger, files: list[Path]) -> float:
    """PIL full decode, per-image ``model.predict``, and a commit per asset row."""
    from PIL import Image

    from catalog import services

    start = time.perf_counter()
    for path in files:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            side = model.input_shape[1]
            image = np.asarray(im.convert("RGB").resize((side, side), Image.BILINEAR), dtype=np.float32)
        logits = model.predict(image[None], verbose=0)
        probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        asset, _ = services.ingest(data, path.name)
        services.record_tags(
            asset, tagger.labels.select(probabilities)[0], "naive", "1", parents=tagger.labels.parents
        )
    return rate(len(files), time.perf_counter() - start)


def bench_decode(files: list[Path], size: int) -> tuple[float, float]:
    from core import imageio

    blobs = [p.read_bytes() for p in files]
    start = time.perf_counter()
    for data in blobs:
        rgb, _ = imageio.decode(data, "full.jpg")
        cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    full = rate(len(blobs), time.perf_counter() - start)
    start = time.perf_counter()
    for data in blobs:
        imageio.load_for_model(data, size, "reduced.jpg")
    reduced = rate(len(blobs), time.perf_counter() - start)
    return reduced, full


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=640, help="640x480 images for (a) and (b)")
    parser.add_argument("--naive-images", type=int, default=96, help="images for the naive baseline (c)")
    parser.add_argument("--big-images", type=int, default=16, help="12 MP images for the decode comparison")
    args = parser.parse_args(argv)

    from core import backbone
    from core.runtimes import keras_predictor
    from core.settings import Settings
    from core.tagger import Tagger
    from serving.current import current_model, get_tagger, pretrained_tagger

    settings = Settings.from_env()

    with tempfile.TemporaryDirectory(prefix="imgtag-bench-") as tmp:
        tmp = Path(tmp)
        print(f"generating {args.images} 640x480 and {args.big_images} 4000x3000 JPEGs ...", flush=True)
        small = make_jpegs(tmp / "small", args.images, (640, 480))
        naive_files = make_jpegs(tmp / "naive", args.naive_images, (640, 480), seed=1)
        plain_files = make_jpegs(tmp / "plain", args.images // 2, (640, 480), seed=3)
        big = make_jpegs(tmp / "big", args.big_images, (4000, 3000), seed=2)
        mb = sum(p.stat().st_size for p in big) / len(big) / 1e6

        setup_catalog(tmp / "home")
        tagger = get_tagger(settings)
        imagenet = pretrained_tagger(settings)
        from core import imageio

        size = tagger.image_size
        pixels = np.stack([imageio.load_for_model(p.read_bytes(), size)[0] for p in small])
        bare = bench_bare(tagger, pixels)
        print(
            f"(a) bare model ({settings.runtime}, {backbone.DEFAULT.name} at {size} px), batch {tagger.batch_size}: "
            f"{bare:.1f} images/s",
            flush=True,
        )
        if backbone.DEFAULT is not backbone.LITE0:  # what the previous default backbone costs
            from core.runtimes import litert_predictor

            lite0 = litert_predictor(
                backbone.load_pretrained(image_size=224, which=backbone.LITE0), tagger.batch_size, 224
            )
            small_pixels = np.stack([imageio.load_for_model(p.read_bytes(), 224)[0] for p in small])
            previous = Tagger(
                lite0, imagenet.labels, "lite0", "lite0", image_size=224, batch_size=tagger.batch_size
            )
            print(
                f"    for reference, EfficientNet-Lite0 at 224 px (the default before): "
                f"{bench_bare(previous, small_pixels):.1f} images/s",
                flush=True,
            )
        if settings.runtime != "tensorflow":
            other = Tagger(
                keras_predictor(backbone.load_pretrained(), tagger.batch_size),
                imagenet.labels,
                "tf",
                "tf",
                image_size=size,
                batch_size=tagger.batch_size,
            )
            print(
                f"    for reference, the same model on the tensorflow runtime: "
                f"{bench_bare(other, pixels, repeats=1):.1f} images/s",
                flush=True,
            )
        half = len(small) // 2  # each tagger imports its own files: nothing is a duplicate
        before = bench_import(imagenet, small[half:])
        model = current_model(settings)
        plain = without_embedding(tagger, model) if model.path is not None else None
        quarter = half // 2  # (b) and (d) take turns, two rounds each
        rounds = [(small[:quarter], plain_files[:quarter]), (small[quarter:half], plain_files[quarter:])]
        with_rates, plain_rates = [], []
        for embedded_files, plain_round in rounds:
            with_rates.append(bench_import(tagger, embedded_files))
            if plain is not None:
                plain_rates.append(bench_import(plain, plain_round))
        e2e = harmonic(with_rates)
        print(
            f"(b) imgtag import end to end into SQLite: {e2e:.1f} images/s with the starter model "
            f"({tagger.model_version}), {before:.1f} images/s with the ImageNet-only tagger",
            flush=True,
        )
        costs = ""
        if plain is not None:
            plain_e2e, plain_bare = harmonic(plain_rates), bench_bare(plain, pixels)
            import_cost, bare_cost = 1 - e2e / plain_e2e, 1 - bare / plain_bare
            print(
                f"(d) without the embedding output: import {plain_e2e:.1f} images/s, bare {plain_bare:.1f} "
                f"images/s; the embedding costs {import_cost:.1%} of import and {bare_cost:.1%} of the bare "
                f"model ({embedding_bytes()} bytes an asset)",
                flush=True,
            )
            costs = f" embedding_cost_import={import_cost:.3f} embedding_cost_bare={bare_cost:.3f}"
        naive = bench_naive(backbone.load_pretrained(), imagenet, naive_files)
        print(f"(c) naive (PIL, predict per image, commit per row): {naive:.1f} images/s", flush=True)
        reduced, full = bench_decode(big, size)
        print(
            f"12 MP JPEG ({mb:.1f} MB) to {size} px: reduced decode {reduced:.1f}/s, full decode {full:.1f}/s"
        )
        print(
            f"ratio e2e/bare={e2e / bare:.2f} e2e/naive={e2e / naive:.2f} reduced/full_decode_12mp={reduced / full:.2f} "
            f"starter/imagenet_import={e2e / before:.2f}{costs}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
