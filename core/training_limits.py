"""The training run's parameters, each declared once: name, type, default, limits and help.

Four places take these parameters and must agree on them: the training DAG's trigger form
(``dags/training_pipeline.py``: its ``Param``s are built from :data:`TUNABLES` by
``dags/imgtag_stage.py``, so Airflow refuses a trigger the stages would refuse), the
``imgtag ingest``, ``validate``, ``train``, ``evaluate``, ``register`` and ``gate`` options
(built by :func:`pipelines.cli.common.option`), the stages' own parameters
(:class:`pipelines.training.train.TrainParams`, which checks them before anything runs, and the
defaults of ``evaluate``, ``validate`` and ``gate``), and the README's parameter table
(:func:`markdown`; ``python -m core.training_limits README.md`` rewrites it).
``tests/dags/test_training_pipeline.py`` checks that the form, the commands and ``TrainParams``
agree, and ``tests/core/test_training_limits.py`` that the README says the same.

This module imports nothing but the standard library: the DAG files import it, and Airflow's
stock image parses them without the project's dependencies.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Limit:
    """The range of one number: ``minimum <= value <= maximum`` (``value > minimum`` with
    ``exclusive_minimum``), and a multiple of ``multiple_of`` when that is set. ``None``: no bound."""

    name: str  # how a message names the parameter, e.g. "image size"
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    multiple_of: int | None = None

    def problem(self, value: float) -> str | None:
        """Why ``value`` is out of range (one line naming the parameter and the range), or None."""
        low, high = self.minimum, self.maximum
        fits = (
            (low is None or (value > low if self.exclusive_minimum else value >= low))
            and (high is None or value <= high)
            and (not self.multiple_of or value % self.multiple_of == 0)
        )
        return None if fits else f"{self.name} must be {self.describe()} (got {value})"

    def describe(self) -> str:
        """The range in words: ``"between 64 and 512, a multiple of 32"``, ``"in (0, 1]"``, ``"at least 1"``."""
        low, high = _shown(self.minimum), _shown(self.maximum)
        if self.exclusive_minimum:
            text = f"in ({low}, {high}]" if high is not None else f"above {low}"
        elif low is not None and high is not None:
            text = f"between {low} and {high}"
        elif low is not None:
            text = f"at least {low}"
        else:
            text = f"at most {high}"
        return text + (f", a multiple of {self.multiple_of}" if self.multiple_of else "")

    def schema(self) -> dict:
        """The JSON-schema keywords of the range, for an Airflow ``Param(..., **limit.schema())``."""
        out: dict = {}
        if self.minimum is not None:
            out["exclusiveMinimum" if self.exclusive_minimum else "minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.multiple_of:
            out["multipleOf"] = self.multiple_of
        return out


def _shown(bound: float | None) -> str | None:
    return None if bound is None else f"{bound:g}"


# ``imgtag train`` and TrainParams
EPOCHS = Limit("epochs", 1, 200)
LEARNING_RATE = Limit("learning rate", 0, 1, exclusive_minimum=True)
BATCH_SIZE = Limit("batch size", 1, 512)
#: The backbone downsamples by 32; the starter model (and so ``--base starter``) is at this size.
IMAGE_SIZE = Limit("image size", 64, 512, multiple_of=32)
DEFAULT_IMAGE_SIZE = 256  # EfficientNet-Lite2's (trained at 260), a multiple of 32
#: The backbone's MBConv blocks (``core.model.NUM_BLOCKS``; a test keeps them equal).
FINE_TUNE_BLOCKS = Limit("fine-tune blocks", 0, 21)
FINE_TUNE_EPOCHS = Limit("fine-tune epochs", 0, 100)
DISTILL_WEIGHT = Limit("distillation weight", 0, 100)

# ``imgtag validate``, ``evaluate`` and ``gate``
MIN_EXAMPLES_PER_TAG = Limit("minimum examples per tag", 1)
TARGET_PRECISION = Limit("target precision", 0, 1, exclusive_minimum=True)
MIN_POSITIVES = Limit("min positives", 1)
GATE_MARGIN = Limit("gate margin", 0, 1)
GATE_FLOOR = Limit("gate floor", 0, 1)
GATE_VERSION = Limit("gate version", 1)

#: What ``base`` builds on, and the metrics the gate may compare (``evaluate`` computes them).
BASES = ("champion", "starter", "none")
GATE_METRICS = ("map", "micro_f1", "macro_f1")


@dataclass(frozen=True)
class Tunable:
    """One parameter of a training run, declared once.

    ``name`` is the trigger form's param and the stages' keyword; ``command`` and ``flag`` the
    ``imgtag`` option that takes it (``"--on/--off"`` for a boolean; no command: the form's
    alone); ``form=False``: the command's alone. ``help`` says what it does, for the form and
    the command; ``form_hint`` and ``cli_hint`` add how each takes it.
    """

    name: str
    default: Any
    type: str | tuple[str, ...]  # JSON-schema type: "integer", "number", "boolean", "string", "array"
    section: str  # the trigger form's section, a key of SECTIONS
    title: str  # the form's label
    help: str
    limit: Limit | None = None
    choices: tuple[str, ...] = ()
    command: str | None = None
    flag: str = ""
    form: bool = True
    form_hint: str = ""
    cli_hint: str = ""
    #: The command's default where it differs on purpose from the form's (say why where it is set).
    cli_default: Any = ...

    @property
    def command_default(self) -> Any:
        """The default of the ``imgtag`` option: the form's, unless declared otherwise."""
        return self.default if self.cli_default is ... else self.cli_default

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is out of its limits or not one of its choices (one line), or None."""
        if self.limit is not None:
            return self.limit.problem(value)
        if self.choices and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)} (got {value!r})"
        return None

    def accepts(self) -> str:
        """The values it takes, in words: ``"between 1 and 200"``, ``"map, micro_f1 or macro_f1"``."""
        if self.limit is not None:
            return self.limit.describe()
        if self.choices:
            return f"{', '.join(self.choices[:-1])} or {self.choices[-1]}"
        return ""

    def described(self, hint: str = "") -> str:
        """The help with ``hint`` and the values it takes: the form's description, the option's help."""
        accepts = self.accepts()
        if self.choices and accepts:
            accepts = f"one of {accepts}"
        accepts = f"{accepts[:1].upper()}{accepts[1:]}." if accepts else ""
        return " ".join(part for part in (self.help, hint, accepts) if part)

    def schema(self) -> dict:
        """The keywords of its Airflow ``Param(default, **schema)``: JSON schema, title, description, section."""
        out: dict = {"type": list(self.type) if isinstance(self.type, tuple) else self.type}
        if self.type == "array":
            out["items"] = {"type": "string"}
        if self.limit is not None:
            out.update(self.limit.schema())
        if self.choices:
            out["enum"] = list(self.choices)
        return {
            **out,
            "title": self.title,
            "description": self.described(self.form_hint),
            "section": self.section,
        }


#: The trigger form's sections, in order, with what each holds.
SECTIONS = {
    "Data": "Where the labelled images come from, and what validation asks of them.",
    "Training": "How the model is trained, and what it is built on.",
    "Evaluation": "How each tag's threshold is chosen, and what the registered model emits.",
    "Gate": "When the challenger replaces the champion, or which registered version to gate instead of training.",
}
_CLUSTER = "on the filesystem the stages see (this machine, or the shared /data volume in a cluster)"

#: Every parameter, in the form's order (grouped by section).
TUNABLES = (
    Tunable(
        "folders",
        [],
        "array",
        "Data",
        "Labelled folders",
        "Folder-per-tag trees of labelled images (<DIR>/<tag>/.../<image>: the first-level folder "
        f"names the tag), {_CLUSTER}.",
        command="ingest",
        flag="--folder",
        form_hint="One absolute path per line.",
        cli_hint="Repeatable; one value may also list several folders separated by commas.",
    ),
    Tunable(
        "manifests",
        [],
        "array",
        "Data",
        "Manifests",
        "CSV manifests with a 'path,tags' header (tags separated by ';') or JSON lines "
        '({"path": ..., "tags": [...]}) of labelled images, paths relative to the manifest\'s folder, '
        f"{_CLUSTER}.",
        command="ingest",
        flag="--manifest",
        form_hint="One absolute path per line.",
        cli_hint="Repeatable; commas separate several.",
    ),
    Tunable(
        "use_catalog",
        True,
        "boolean",
        "Data",
        "Use the catalog",
        "Add the catalog's human-reviewed tags (every asset with a tag a person accepted or added) to "
        "the labelled images.",
        command="ingest",
        flag="--catalog/--no-catalog",
        cli_default=False,  # a command typed at a terminal reads the catalog's database only when asked
    ),
    Tunable(
        "min_examples_per_tag",
        10,
        "integer",
        "Data",
        "Minimum examples per tag",
        "Validation fails when a tag labels fewer images than this over the whole dataset (unless rare "
        "tags are dropped).",
        limit=MIN_EXAMPLES_PER_TAG,
        command="validate",
        flag="--min-examples",
    ),
    Tunable(
        "drop_rare_tags",
        False,
        "boolean",
        "Data",
        "Drop rare tags",
        "Take the tags with fewer images than the minimum off the dataset and list them in the "
        "validation report, instead of failing the run (the long tail of a library exported as it is; "
        "an image left without a tag stays, as a negative).",
        command="validate",
        flag="--drop-rare-tags/--keep-rare-tags",
    ),
    Tunable(
        "epochs",
        8,
        "integer",
        "Training",
        "Epochs",
        "Epochs of training the learned head on the frozen backbone.",
        limit=EPOCHS,
        command="train",
        flag="--epochs",
    ),
    Tunable(
        "learning_rate",
        0.001,
        "number",
        "Training",
        "Learning rate",
        "Adam learning rate of the head training (fine-tuning uses a tenth of it).",
        limit=LEARNING_RATE,
        command="train",
        flag="--learning-rate",
    ),
    Tunable(
        "batch_size",
        32,
        "integer",
        "Training",
        "Batch size",
        "Images per training step.",
        limit=BATCH_SIZE,
        command="train",
        flag="--batch-size",
    ),
    Tunable(
        "image_size",
        DEFAULT_IMAGE_SIZE,
        "integer",
        "Training",
        "Image size",
        f"Input side in pixels; the starter model's is {DEFAULT_IMAGE_SIZE} (building on it needs that "
        "size), smaller is faster.",
        limit=IMAGE_SIZE,
        command="train",
        flag="--image-size",
    ),
    Tunable(
        "fine_tune_blocks",
        0,
        "integer",
        "Training",
        "Fine-tuned blocks",
        "After the head, fine-tune this many top blocks of the backbone (0: none).",
        limit=FINE_TUNE_BLOCKS,
        command="train",
        flag="--fine-tune-blocks",
    ),
    Tunable(
        "fine_tune_epochs",
        0,
        "integer",
        "Training",
        "Fine-tuning epochs",
        "Epochs of fine-tuning the top blocks, at a tenth of the learning rate (0: none).",
        limit=FINE_TUNE_EPOCHS,
        command="train",
        flag="--fine-tune-epochs",
    ),
    Tunable(
        "distill_weight",
        1.0,
        "number",
        "Training",
        "Distillation weight",
        "While fine-tuning, hold the ImageNet head to its pretrained outputs with this weight, so the "
        "general tags survive (learning without forgetting; 0: let it drift).",
        limit=DISTILL_WEIGHT,
        command="train",
        flag="--distill-weight",
    ),
    Tunable(
        "seed",
        0,
        "integer",
        "Training",
        "Random seed",
        "Random seed (shuffling, augmentation, head initialisation).",
        command="train",
        flag="--seed",
        form=False,
    ),
    Tunable(
        "base",
        "champion",
        "string",
        "Training",
        "Build on",
        "champion: the served champion (the starter model until a first promotion): begin from its "
        "learned head and keep every tag of it these images do not label, as it is (train at its image "
        "size; the starter's is the default image size); starter: the shipped starter model; none: only "
        "these images' tags (the gate refuses a model that drops the champion's tags unless the "
        "vocabulary is replaced).",
        choices=BASES,
        command="train",
        flag="--base",
    ),
    Tunable(
        "target_precision",
        0.9,
        "number",
        "Evaluation",
        "Target precision",
        "Each tag's threshold is the lowest score reaching this precision on validation; a tag that "
        "cannot reach it is turned off (listed with the reason in thresholds.json).",
        limit=TARGET_PRECISION,
        command="evaluate",
        flag="--target-precision",
    ),
    Tunable(
        "min_positives",
        5,
        "integer",
        "Evaluation",
        "Minimum positives per tag",
        "Right validation images a tag needs before its own calibration counts fully; with fewer, its "
        "family's (the tags above and beside it) decides.",
        limit=MIN_POSITIVES,
        command="evaluate",
        flag="--min-positives",
        form=False,
    ),
    Tunable(
        "learned_only",
        False,
        "boolean",
        "Evaluation",
        "Learned tags only",
        "Export only the learned tags, without the general ImageNet-derived tags beside them.",
        command="register",
        flag="--learned-only/--with-general",
    ),
    Tunable(
        "gate_metric",
        "map",
        "string",
        "Gate",
        "Gate metric",
        "The test-split metric on which the challenger must beat the champion.",
        choices=GATE_METRICS,
        command="gate",
        flag="--metric",
    ),
    Tunable(
        "gate_margin",
        0.01,
        "number",
        "Gate",
        "Gate margin",
        "How much better than the champion's the challenger's metric must be.",
        limit=GATE_MARGIN,
        command="gate",
        flag="--margin",
    ),
    Tunable(
        "gate_floor",
        0.5,
        "number",
        "Gate",
        "Gate floor",
        "The least metric the challenger must reach when there is no champion to compare with (with "
        "one, the comparison alone decides).",
        limit=GATE_FLOOR,
        command="gate",
        flag="--floor",
    ),
    Tunable(
        "replace_vocabulary",
        False,
        "boolean",
        "Gate",
        "Replace the vocabulary",
        "Let a challenger pass that cannot emit tags the champion emits: it replaces the champion's "
        "vocabulary, and those tags are no longer given. Off, the gate refuses it and lists them.",
        command="gate",
        flag="--replace-vocabulary/--keep-vocabulary",
    ),
    Tunable(
        "gate_version",
        None,
        ("null", "integer"),
        "Gate",
        "Gate an existing version",
        "A registered model version to gate against the champion (and promote if it passes) without "
        "training: ingest to register are skipped, and it is scored on the dataset it was trained on. "
        "Empty: train a new one.",
        limit=GATE_VERSION,
    ),
)
TUNABLE = {t.name: t for t in TUNABLES}

#: The trigger form's parameter of each limit (``dags/training_pipeline.py``).
TRIGGER_FORM = {t.name: t.limit for t in TUNABLES if t.form and t.limit is not None}


def default(name: str) -> Any:
    """The declared default of the parameter ``name`` (a ``KeyError`` for a name not declared)."""
    return TUNABLE[name].default


def of(command: str) -> list[Tunable]:
    """The parameters the ``imgtag <command>`` takes, in the form's order."""
    return [t for t in TUNABLES if t.command == command]


# ---------------------------------------------------------------- the README's table

START, END = (
    "<!-- parameters: start (python -m core.training_limits README.md) -->",
    "<!-- parameters: end -->",
)


def _shown_default(value: Any) -> str:
    if value is None or value == []:
        return "empty"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"`{value}`"


def _values(t: Tunable) -> str:
    accepts = t.accepts() or {"boolean": "on or off", "array": "paths"}.get(t.type, "")
    return f"empty, or {accepts}" if isinstance(t.type, tuple) and "null" in t.type else accepts


def markdown() -> str:
    """The parameter table, one per section: each parameter's form name, command option, default,
    values and help (what the README shows between :data:`START` and :data:`END`)."""
    lines = []
    for section, about in SECTIONS.items():
        lines += [
            f"**{section}**: {about}",
            "",
            "| Form | `imgtag` option | Default | Values | What it does |",
            "|---|---|---|---|---|",
        ]
        for t in (t for t in TUNABLES if t.section == section):
            form = f"*{t.title}* (`{t.name}`)" if t.form else "(command only)"
            option = f"`{t.command} {t.flag}`" if t.command else "(form only)"
            cli = "" if t.command_default == t.default else f" (command: {_shown_default(t.command_default)})"
            lines.append(
                f"| {form} | {option} | {_shown_default(t.default)}{cli} | {_values(t)} | "
                f"{t.help.replace('|', '/').replace('<', '&lt;')} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def readme_block(text: str) -> str | None:
    """The generated part of a README's ``text`` (between the markers), or None without them."""
    found = re.search(f"{re.escape(START)}\n(.*?){re.escape(END)}", text, re.DOTALL)
    return found.group(1) if found else None


def write_readme(path: Path) -> None:
    """Rewrite the parameter table between the markers of the README at ``path``."""
    text = path.read_text(encoding="utf-8")
    if readme_block(text) is None:
        raise SystemExit(f"{path}: no {START} ... {END} markers")
    block = f"{START}\n{markdown()}{END}"
    path.write_text(
        re.sub(f"{re.escape(START)}.*?{re.escape(END)}", lambda _: block, text, flags=re.DOTALL),
        encoding="utf-8",
    )


if __name__ == "__main__":
    write_readme(Path(sys.argv[1] if len(sys.argv) > 1 else "README.md"))
