"""The gate's comparison of a challenger with the champion (pipelines.training.gate): on the
tags either model can be checked on, and the per-tag changes it reports."""

from __future__ import annotations

import numpy as np

from core.vocabulary import Vocabulary
from pipelines.training import dataset as ds
from pipelines.training.gate import Scored, compare_on, per_tag_changes


def test_the_comparison_covers_every_checkable_tag_of_either_model(tmp_path):
    """A tag one model lacks scores 0 for it (and is never emitted): the champion's ``person``
    counts against a challenger that cannot tag people."""
    examples = [
        ds.Example(f"{i:064x}", f"images/{i}.jpg", tags, "test")
        for i, tags in enumerate([("cat", "person"), ("person",), ("cat",), ("dog",)])
    ]
    data = ds.write(tmp_path / "dataset", examples)
    tags = ("cat", "dog")
    challenger = Scored(
        "2",
        Vocabulary(tags, np.array([0.5, 0.5]), ("learned",) * 2, {}),
        np.array([[0.9, 0.1], [0.1, 0.1], [0.8, 0.2], [0.1, 0.9]], np.float32),
    )
    champion = Scored(
        "1",
        Vocabulary(("cat", "person"), np.array([0.5, 0.5]), ("learned",) * 2, {}),
        np.array([[0.9, 0.9], [0.1, 0.8], [0.8, 0.1], [0.1, 0.1]], np.float32),
    )
    compared, y, (mine, theirs) = compare_on([challenger, champion], data)
    assert compared == ["cat", "dog", "person"]  # the labels check all three
    assert y[:, compared.index("person")].tolist() == [1, 1, 0, 0]
    assert mine["per_tag"]["person"]["precision"] == 0.0 and theirs["per_tag"]["person"]["recall"] == 1.0
    assert mine["per_tag"]["dog"]["recall"] == 1.0 and theirs["per_tag"]["dog"]["recall"] == 0.0
    assert champion.emitted_tags - challenger.emitted_tags == {"person"}


def test_per_tag_changes_list_gains_first_and_leave_out_tags_without_a_positive():
    def per_tag(**aps):
        return {"per_tag": {t: {"ap": ap, "support": 0 if ap is None else 3} for t, ap in aps.items()}}

    rows = per_tag_changes(
        per_tag(cat=0.9, dog=0.4, owl=None, red=0.8), per_tag(cat=0.5, dog=0.6, owl=None, red=0.0)
    )
    assert [(r["tag"], r["change"]) for r in rows] == [("red", 0.8), ("cat", 0.4), ("dog", -0.2)]
    assert rows[0] == {"tag": "red", "support": 3, "challenger_ap": 0.8, "champion_ap": 0.0, "change": 0.8}
    alone = per_tag_changes(per_tag(cat=0.9), None)
    assert alone == [{"tag": "cat", "support": 3, "challenger_ap": 0.9, "champion_ap": None, "change": None}]
