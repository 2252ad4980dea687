"""The training parameters' one declaration (core.training_limits): the README's table says what
it declares, and each declaration is complete enough to build a form field and an option."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core import training_limits as limits

REPO = Path(__file__).resolve().parents[2]


def test_the_readme_table_is_generated_from_the_declarations():
    block = limits.readme_block((REPO / "README.md").read_text(encoding="utf-8"))
    assert block is not None, f"README.md has lost its {limits.START} ... {limits.END} markers"
    assert block == limits.markdown(), (
        "README.md's parameter table is stale: python -m core.training_limits README.md"
    )


def test_the_table_shows_each_parameter_with_its_option_default_and_values():
    table = limits.markdown()
    assert "| *Epochs* (`epochs`) | `train --epochs` | `8` | between 1 and 200 |" in table
    assert (
        "| *Use the catalog* (`use_catalog`) | `ingest --catalog/--no-catalog` | on (command: off) |" in table
    )
    assert "| (command only) | `evaluate --min-positives` | `5` | at least 1 |" in table
    assert "| *Gate metric* (`gate_metric`) | `gate --metric` | `map` | map, micro_f1 or macro_f1 |" in table
    assert (
        table.index("**Data**")
        < table.index("**Training**")
        < table.index("**Evaluation**")
        < table.index("**Gate**")
    )


def test_writing_the_readme_replaces_only_the_table(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n\n{limits.START}\nold table\n{limits.END}\n\nafter\n")
    subprocess.run([sys.executable, "-m", "core.training_limits", str(readme)], cwd=REPO, check=True)
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n\n") and text.endswith(f"{limits.END}\n\nafter\n")
    assert limits.readme_block(text) == limits.markdown() and "old table" not in text


def test_every_parameter_is_declared_completely():
    assert len(limits.TUNABLE) == len(limits.TUNABLES)  # one declaration per name
    assert {t.section for t in limits.TUNABLES} == set(limits.SECTIONS)
    for t in limits.TUNABLES:
        assert t.title and t.help.endswith("."), t.name
        assert t.form or t.command, f"{t.name}: neither in the form nor an option"
        assert bool(t.command) == bool(t.flag), t.name
        assert ("/" in t.flag) == (t.type == "boolean") or not t.command, (
            f"{t.name}: a boolean's flag is --on/--off"
        )
        if t.limit is not None and t.default is not None:
            assert t.limit.problem(t.default) is None, f"{t.name}: default out of its limits"
        if t.choices:
            assert t.default in t.choices, t.name


def test_a_declaration_gives_the_form_its_schema_and_says_its_limits():
    schema = limits.TUNABLE["image_size"].schema()
    assert schema == {
        "type": "integer",
        "minimum": 64,
        "maximum": 512,
        "multipleOf": 32,
        "title": "Image size",
        "description": "Input side in pixels; the starter model's is 256 (building on it needs that size), "
        "smaller is faster. Between 64 and 512, a multiple of 32.",
        "section": "Training",
    }
    assert limits.TUNABLE["gate_metric"].schema()["enum"] == ["map", "micro_f1", "macro_f1"]
    assert limits.TUNABLE["folders"].schema()["items"] == {"type": "string"}
    assert limits.TUNABLE["gate_version"].schema()["type"] == ["null", "integer"]
    assert (
        limits.TUNABLE["base"].problem("imagenet")
        == "base must be one of champion, starter, none (got 'imagenet')"
    )
