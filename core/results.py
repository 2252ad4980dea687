"""Result types shared by the tagger, the catalog and the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.imageio import ImageError, ImageInfo


@dataclass(frozen=True)
class TagScore:
    """One tag on one image: its name and a score in [0, 1]."""

    name: str
    score: float


@dataclass
class TagResult:
    """The outcome for one input: tags (best first) and header info, or the error."""

    key: Any
    name: str
    tags: list[TagScore] = field(default_factory=list)
    info: ImageInfo | None = None
    error: ImageError | None = None
    embedding: np.ndarray | None = None  # int8 (core.embedding), when the model makes one

    @property
    def ok(self) -> bool:
        return self.error is None
