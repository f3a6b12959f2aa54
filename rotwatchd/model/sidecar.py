"""A model's calibration sidecar: the JSON file beside the network that says how to read it.

Every orientation model ships with one (``orientation.json`` next to ``orientation.tflite``,
written by ``training/`` from the validation sources): input size, softmax temperature, the
review thresholds for one pass, the 4-pass ensemble and the adaptive cascade, and the fusion
weights of the scene and text cues. Without it the confidences mean nothing calibrated, so a
model without a sidecar, or with a malformed one, is refused with one :class:`ModelError`
line naming the file, instead of running on made-up defaults. A sidecar may leave keys out
(an older model): those take the defaults below, and the 4-pass and cascade thresholds take
the one-pass one.

Read without numpy or the network, so the config and ``check`` can use the thresholds cheaply.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rotwatchd.model.base import ModelError

#: the shipped scene network's file name in the model folder
MODEL_FILE = "orientation.tflite"


@dataclass(frozen=True)
class ModelMeta:
    """What the runtime must know about a model file besides its graph."""

    input_size: int = 128
    temperature: float = 1.0
    min_confidence: float = 0.5  # recommended review threshold (chosen on validation sources)
    tta_min_confidence: float = 0.5  # the same for the 4-pass ensemble (passes=4)
    # the same for the adaptive cascade (one pass; all four when escalate_from <= the one-pass
    # confidence < min_confidence: below escalate_from the ensemble hardly ever becomes sure)
    cascade_min_confidence: float = 0.5
    escalate_from: float = 0.0
    # fusion exponents of the scene and text probabilities, one pass and 4-pass ensemble
    # (``fusion.fuse``); text 0 = the text cue is not used
    scene_weight: float = 1.0
    text_weight: float = 0.0
    tta_scene_weight: float = 1.0
    tta_text_weight: float = 0.0
    # the text gate (``fusion.FusionParams``): weights where the text network is sure
    text_gate: float = 0.9
    text_weight_sure: float | None = None
    tta_text_weight_sure: float | None = None

    @classmethod
    def for_model(cls, model_path: Path) -> ModelMeta:
        """Read ``<model>.json``, else the shared ``orientation.json`` beside ``model_path``.

        Raises ModelError (one line naming the file) when neither exists, when it is not a
        JSON object, or when a value has the wrong type or lies outside its range
        (probabilities and the gate in [0, 1], temperature and input size above 0, weights
        not negative). Unknown keys are ignored: training tools record more than this reads.
        """
        candidates = (model_path.with_suffix(".json"), model_path.parent / "orientation.json")
        for cand in candidates:
            if cand.is_file():
                return cls.from_json(cand)
        raise ModelError(f"{model_path}: no calibration sidecar ({candidates[0].name} or "
                         "orientation.json beside it): its confidences cannot be trusted")

    @classmethod
    def from_json(cls, path: Path) -> ModelMeta:
        """Parse and check one sidecar file; raises ModelError as :meth:`for_model` says."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: unreadable model sidecar: {exc}") from None
        if not isinstance(raw, dict):
            raise ModelError(f"{path}: model sidecar must be a JSON object")
        values: dict[str, Any] = {}
        for field in fields(cls):
            if field.name in raw:
                values[field.name] = _checked(path, field.name, raw[field.name])
        single = values.get("min_confidence", cls.min_confidence)
        values.setdefault("tta_min_confidence", single)
        values.setdefault("cascade_min_confidence", single)
        return cls(**values)

    def threshold(self, mode: str = "single") -> float:
        """Review threshold for ``mode``: ``single`` (one pass), ``tta`` or ``cascade``."""
        return {"single": self.min_confidence, "tta": self.tta_min_confidence,
                "cascade": self.cascade_min_confidence}[mode]


_PROBABILITIES = frozenset({"min_confidence", "tta_min_confidence", "cascade_min_confidence",
                            "escalate_from", "text_gate"})
_OPTIONAL = frozenset({"text_weight_sure", "tta_text_weight_sure"})


def _checked(path: Path, key: str, value: Any) -> int | float | None:
    """One sidecar value, typed and range-checked; raises ModelError naming ``key``."""
    if value is None and key in _OPTIONAL:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ModelError(f"{path}: model sidecar: {key} must be a number, got {value!r}")
    if key == "input_size":
        if value != int(value) or value < 1:
            raise ModelError(f"{path}: model sidecar: input_size must be a whole number "
                             f"above 0, got {value!r}")
        return int(value)
    if key in _PROBABILITIES and not 0.0 <= value <= 1.0:
        raise ModelError(f"{path}: model sidecar: {key} must lie in [0, 1], got {value!r}")
    if key == "temperature" and value <= 0:
        raise ModelError(f"{path}: model sidecar: temperature must be above 0, got {value!r}")
    if value < 0:
        raise ModelError(f"{path}: model sidecar: {key} must not be negative, got {value!r}")
    return float(value)
