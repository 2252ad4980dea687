"""Drawn non-photos (pipelines.training.synthetic): every kind draws a full picture, the same seed
draws the same pictures, the manifest lists them by kind, and the benchmark's held-out fonts
are not the training ones."""

from __future__ import annotations

import csv
import random

import numpy as np
import pytest

from pipelines.training import synthetic


@pytest.fixture(scope="module")
def fonts():
    return synthetic.Fonts(synthetic.font_files(synthetic.TRAINING_FONTS))


@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_each_kind_draws_a_varied_picture(kind, fonts):
    pictures = [np.asarray(synthetic.draw(kind, random.Random(f"t:{kind}:{k}"), fonts)) for k in range(6)]
    for pixels in pictures:
        height, width, channels = pixels.shape
        assert channels == 3 and min(height, width) >= 200 and pixels.dtype == np.uint8
        assert pixels.std() > 5  # something is drawn, not a blank page
    assert len({p.shape for p in pictures}) > 1 or len({p.tobytes() for p in pictures}) == len(pictures)


def test_the_same_seed_draws_the_same_pictures_and_another_does_not(tmp_path):
    first = synthetic.write(tmp_path / "a", 2, seed=3)
    again = synthetic.write(tmp_path / "b", 2, seed=3)
    other = synthetic.write(tmp_path / "c", 2, seed=4)

    def contents(manifest):
        with manifest.open() as f:
            rows = list(csv.DictReader(f))
        return [(r["tags"], open(r["path"], "rb").read()) for r in rows]

    assert contents(first) == contents(again)
    assert [t for t, _ in contents(first)] == [k for k in synthetic.KINDS for _ in range(2)]
    assert [b for _, b in contents(first)] != [b for _, b in contents(other)]


def test_held_out_fonts_and_chart_styles_are_not_the_training_ones():
    training = {f.name for f in synthetic.font_files(synthetic.TRAINING_FONTS)}
    held_out = {f.name for f in synthetic.font_files(synthetic.HELD_OUT_FONTS)}
    assert training and held_out and not training & held_out
    assert not set(synthetic.TRAINING_CHART_STYLES) & set(synthetic.HELD_OUT_CHART_STYLES)


def test_an_unknown_kind_is_refused(fonts):
    with pytest.raises(ValueError, match="unknown kind 'selfie'"):
        synthetic.draw("selfie", random.Random(0), fonts)
