"""The orientation model behind one small interface.

``load_classifier()`` returns an :class:`OrientationClassifier`; callers only ever use
``predict(image) -> Prediction``. Backends register themselves in ``registry``.
"""

from rotwatchd.model.base import (
    CORRECTIONS,
    ModelError,
    OrientationClassifier,
    Prediction,
    default_model_dir,
)
from rotwatchd.model.registry import available_backends, calibrated_threshold, load_classifier

# Importing the backends registers them ("litert" = scene network + face cue, "litert-scene").
from rotwatchd.model import fusion as _fusion  # noqa: E402,F401  isort: skip

__all__ = [
    "CORRECTIONS",
    "ModelError",
    "OrientationClassifier",
    "Prediction",
    "available_backends",
    "calibrated_threshold",
    "default_model_dir",
    "load_classifier",
]
