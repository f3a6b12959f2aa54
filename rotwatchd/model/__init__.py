"""The orientation model behind one small interface.

``load_classifier()`` returns an :class:`OrientationClassifier`; callers only ever use
``predict(image) -> Prediction``. The backends are listed in ``registry``.
"""

from rotwatchd.model.base import (
    CORRECTIONS,
    ModelError,
    OrientationClassifier,
    Prediction,
    default_model_dir,
)
from rotwatchd.model.registry import available_backends, calibrated_threshold, load_classifier

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
