"""Types shared by every orientation backend.

Convention used everywhere in rotwatchd: ``correction`` is the **clockwise** rotation, in
degrees (0, 90, 180 or 270), that makes the image upright. An upright photo rotated by
``PIL.Image.rotate(90, expand=True)`` (which turns it counter-clockwise) needs correction 90.
Class index ``i`` of a probability vector means correction ``CORRECTIONS[i]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image

CORRECTIONS: tuple[int, int, int, int] = (0, 90, 180, 270)


class ModelError(RuntimeError):
    """The model could not be found, loaded or run."""


@dataclass(frozen=True)
class Prediction:
    """One decision: which clockwise correction makes the image upright, and how sure."""

    correction: int
    confidence: float
    probabilities: tuple[float, float, float, float]
    cues: tuple[tuple[str, float], ...] = ()  # optional per-cue diagnostics (name, value)

    @classmethod
    def from_probabilities(cls, probs: tuple[float, float, float, float]) -> Prediction:
        best = max(range(4), key=lambda i: probs[i])
        return cls(correction=CORRECTIONS[best], confidence=float(probs[best]), probabilities=probs)


class OrientationClassifier(Protocol):
    """Decides the correction for an image that already honours its EXIF orientation."""

    def predict(self, image: Image.Image) -> Prediction: ...

    def close(self) -> None: ...


def default_model_dir() -> Path:
    """Folder holding the shipped models: inside the installed wheel, else the repo's models/."""
    packaged = Path(__file__).resolve().parent.parent / "_models"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent.parent / "models"
