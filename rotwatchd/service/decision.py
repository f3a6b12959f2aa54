"""What to do with one image: a pure function of what is known about it. No I/O here.

Rules, in order:

1. a problem found while reading (not an image, corrupt, truncated, too large, empty,
   unreadable) -> ``quarantine``;
2. a correction a person gave for this very content (the review queue) is applied -> ``keep``
   or ``rotate`` with source ``human``: an image settled once is never asked about again;
3. animated images and formats the writer cannot rewrite -> ``review`` (a copy, never a guess);
4. a valid EXIF orientation other than 1 is trusted -> ``rotate`` with source ``exif``; so is
   the file's own orientation that its decoder already applied (TIFF tag, HEIF irot/imir),
   whose pixels then need nothing more (``orientation`` 1);
5. otherwise the model decides -> ``keep`` (correction 0) or ``rotate``; below
   ``min_confidence`` -> ``review``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:  # the model package is imported only where a model runs
    from rotwatchd.model.base import Prediction

Action = Literal["keep", "rotate", "review", "quarantine"]
Source = Literal["exif", "model", "human"]

#: EXIF orientation that applies a pure clockwise correction (EXIF 2.32, tag 0x0112: 6 = the
#: stored picture must be turned 90 degrees clockwise to be upright, 3 = 180, 8 = 270).
ORIENTATION_FOR_CORRECTION: Final = {0: 1, 90: 6, 180: 3, 270: 8}
#: Clockwise correction that an EXIF orientation implies (mirrored ones map to their rotation).
CORRECTION_FOR_ORIENTATION: Final = {1: 0, 2: 0, 3: 180, 4: 180, 5: 90, 6: 90, 7: 270, 8: 270}
#: EXIF orientations whose correction is that rotation followed by a left-right mirror.
MIRRORED: Final = frozenset({2, 4, 5, 7})


@dataclass(frozen=True)
class Facts:
    """What the daemon learned about a file before deciding (all optional but ``problem``)."""

    problem: str | None = None  # ImageProblem.reason, e.g. "corrupt"
    unsupported: str | None = None  # UnsupportedFormat.format, e.g. "JPEG2000"
    exif_orientation: int | None = None
    animated: bool = False
    pixels: int = 0
    prediction: Prediction | None = None
    applied_orientation: int | None = None  # ImageInfo.applied_orientation
    human_correction: int | None = None  # a person's answer for this content (0, 90, 180, 270)


@dataclass(frozen=True)
class Decision:
    """``orientation`` is the EXIF value the writer must apply to the pixels as decoded (1..8);
    ``exif_orientation`` the file's own orientation when it decided (source ``exif``), and
    ``mirror`` whether making it upright also mirrors it left-right (after ``correction``)."""

    action: Action
    reason: str
    source: Source | None = None
    correction: int | None = None
    confidence: float | None = None
    orientation: int = 1
    exif_orientation: int | None = None

    @property
    def mirror(self) -> bool:
        return self.exif_orientation in MIRRORED


def trusted_exif(orientation: int | None) -> bool:
    """A tag we apply without asking the model: valid (1..8) and not plain upright (1)."""
    return orientation is not None and 2 <= orientation <= 8


def needs_model(facts: Facts, max_pixels: int) -> bool:
    """True when the decision depends on a model prediction the caller has not made yet."""
    return (
        facts.problem is None
        and facts.human_correction is None
        and not facts.animated
        and facts.unsupported is None
        and facts.pixels <= max_pixels
        and not trusted_exif(facts.exif_orientation)
        and not trusted_exif(facts.applied_orientation)
    )


def decide(facts: Facts, *, min_confidence: float, max_pixels: int) -> Decision:
    """Map facts to an action. Raises ValueError if the model is needed but no prediction given."""
    if facts.problem is not None:
        return Decision("quarantine", facts.problem)
    if facts.pixels > max_pixels:
        return Decision("quarantine", "too-large")
    if facts.human_correction is not None:
        correction = facts.human_correction
        return Decision(
            "keep" if correction == 0 else "rotate", f"a person said {correction} deg",
            source="human", correction=correction, confidence=1.0,
            orientation=ORIENTATION_FOR_CORRECTION[correction],
        )
    if facts.animated:
        return Decision("review", "animated")
    if facts.unsupported is not None:
        return Decision("review", f"unsupported format {facts.unsupported}")
    if trusted_exif(facts.exif_orientation):
        assert facts.exif_orientation is not None
        return Decision(
            "rotate", f"exif orientation {facts.exif_orientation}", source="exif",
            correction=CORRECTION_FOR_ORIENTATION[facts.exif_orientation], confidence=1.0,
            orientation=facts.exif_orientation, exif_orientation=facts.exif_orientation,
        )
    if trusted_exif(facts.applied_orientation):
        assert facts.applied_orientation is not None
        return Decision(
            "rotate", f"file orientation {facts.applied_orientation} (applied when decoded)",
            source="exif", correction=CORRECTION_FOR_ORIENTATION[facts.applied_orientation],
            confidence=1.0, orientation=1, exif_orientation=facts.applied_orientation,
        )
    prediction = facts.prediction
    if prediction is None:
        raise ValueError("the model must be asked before deciding this file")
    if prediction.confidence < min_confidence:
        return Decision(
            "review", f"confidence {confidence_text(prediction.confidence)} < {min_confidence:g}",
            source="model", correction=prediction.correction, confidence=prediction.confidence,
        )
    action: Action = "keep" if prediction.correction == 0 else "rotate"
    return Decision(
        action, f"model {prediction.correction} deg", source="model",
        correction=prediction.correction, confidence=prediction.confidence,
        orientation=ORIENTATION_FOR_CORRECTION[prediction.correction],
    )


def confidence_text(confidence: float) -> str:
    """``confidence`` (a probability, 0..1) as printed to people: three decimals rounded
    *down* (0.9199 -> ``"0.919"``), so a confidence under a review threshold of up to three
    decimals never reads as equal to or above it. Rounded from the shortest decimal form of
    the float, so 0.29 prints as ``"0.290"``, never ``"0.289"``."""
    return str(Decimal(repr(float(confidence))).quantize(Decimal("0.001"), rounding=ROUND_FLOOR))
