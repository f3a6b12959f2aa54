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
from rotwatchd.model.registry import available_backends, load_classifier

__all__ = [
    "CORRECTIONS",
    "ModelError",
    "OrientationClassifier",
    "Prediction",
    "available_backends",
    "default_model_dir",
    "load_classifier",
]
