"""The limits of the training run's parameters, in one place.

Three places take these parameters and must agree on what they accept: the ``imgtag train``,
``evaluate``, ``validate`` and ``gate`` options, :class:`pipelines.training.train.TrainParams`
(which checks them before anything runs), and the training DAG's trigger form
(``dags/training_pipeline.py``, whose ``Param`` schemas come from :meth:`Limit.schema`, so
Airflow refuses a trigger the stages would refuse). ``tests/dags/test_training_dag.py`` checks
that the form and ``TrainParams`` agree.

This module imports nothing but the standard library: the DAG files import it, and Airflow's
stock image parses them without the project's dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass


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
GATE_MARGIN = Limit("gate margin", 0, 1)
GATE_FLOOR = Limit("gate floor", 0, 1)

#: The trigger form's parameter of each limit (``dags/training_pipeline.py``).
TRIGGER_FORM = {
    "epochs": EPOCHS,
    "learning_rate": LEARNING_RATE,
    "batch_size": BATCH_SIZE,
    "image_size": IMAGE_SIZE,
    "fine_tune_blocks": FINE_TUNE_BLOCKS,
    "fine_tune_epochs": FINE_TUNE_EPOCHS,
    "distill_weight": DISTILL_WEIGHT,
    "min_examples_per_tag": MIN_EXAMPLES_PER_TAG,
    "target_precision": TARGET_PRECISION,
    "gate_margin": GATE_MARGIN,
    "gate_floor": GATE_FLOOR,
}
