"""Is the training input pipeline ever the bottleneck? (``make bench``)

Measured in one run, on 640x480 photo-like JPEGs at the default image size (256):

- **input**: the ``tf.data`` pipeline alone (:func:`pipelines.training.train.input_pipeline`, read,
  decode, resize, augment, batch; no cache, i.e. the first epoch, its slowest), images/s;
- **step**: training steps of the default run (the learned head on the frozen backbone) on
  tensors already in memory, images/s; fine-tuning steps (top 4 blocks) are printed too.

Last line: ``ratio input/step=<input/step>``. Target >= 1.5: the model never waits for data.
No asserts: machines are noisy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench.bench_tagging import make_jpegs  # noqa: E402


def images_per_second(batches, count: int) -> float:
    start = time.perf_counter()
    seen = 0
    for images, _ in batches:
        seen += int(images.shape[0])
    assert seen == count, (seen, count)
    return count / (time.perf_counter() - start)


def step_rate(trainer, images, labels, steps: int) -> float:
    trainer.train_on_batch(images, labels)  # trace and warm up
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_on_batch(images, labels)
    return steps * len(images) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args(argv)

    from core.tf_runtime import import_tensorflow

    import_tensorflow()
    import keras

    from core import model as tagger_model
    from pipelines.training.train import input_pipeline

    tags = 6
    with tempfile.TemporaryDirectory() as tmp:
        files = make_jpegs(Path(tmp) / "images", args.images, (640, 480))
        labels = (np.random.default_rng(0).random((len(files), tags)) < 0.3).astype(np.float32)
        pipeline = input_pipeline(files, labels, args.image_size, args.batch_size, training=True, cache=False)
        images_per_second(pipeline, len(files))  # warm the page cache and trace the map functions
        pipeline = input_pipeline(files, labels, args.image_size, args.batch_size, training=True, cache=False)
        source = images_per_second(pipeline, len(files))

    full, trainer = tagger_model.build(tags, args.image_size)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (args.batch_size, args.image_size, args.image_size, 3)).astype(np.float32)
    batch_labels = labels[: args.batch_size]
    head = step_rate(trainer, images, batch_labels, args.steps)
    tagger_model.unfreeze_top_blocks(full, 4)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
    fine = step_rate(trainer, images, batch_labels, max(2, args.steps // 2))

    print(
        f"input pipeline (read, decode 640x480 JPEG, resize to {args.image_size}, augment, batch): "
        f"{source:.1f} images/s"
    )
    print(f"training steps on in-memory tensors, head on frozen backbone: {head:.1f} images/s")
    print(f"training steps on in-memory tensors, fine-tuning the top 4 blocks: {fine:.1f} images/s")
    print(f"ratio input/step={source / head:.2f} input/finetune_step={source / fine:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
