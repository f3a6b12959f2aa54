"""Registry of classifier backends: each loader registers under a name; ``auto`` is the first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rotwatchd.model.base import ModelError, OrientationClassifier, default_model_dir
from rotwatchd.model.network import LITERT, Runtime
from rotwatchd.model.scene import MODEL_FILE, ModelMeta

#: (model path or None for the shipped one, threads, runtime) -> classifier
BackendFactory = Callable[[Path | None, int, Runtime], OrientationClassifier]
_BACKENDS: dict[str, BackendFactory] = {}
_THRESHOLD: dict[str, str] = {}


def register_backend(name: str, factory: BackendFactory, threshold: str = "single") -> None:
    """``threshold``: which calibrated threshold of the model's sidecar the backend's
    confidences are meant for (``ModelMeta.threshold``: single, tta or cascade).
    The first backend registered is the ``auto`` choice."""
    _BACKENDS[name] = factory
    _THRESHOLD[name] = threshold


def resolve(backend: str) -> str:
    """The backend ``auto`` stands for (the first registered); other names unchanged."""
    if backend == "auto":
        if not _BACKENDS:
            raise ModelError("no orientation backend is registered")
        return next(iter(_BACKENDS))
    return backend


def calibrated_threshold(backend: str = "auto", model_path: Path | None = None) -> float:
    """The review threshold calibrated for this model and backend (its JSON sidecar).

    Read without loading the network, so the daemon and ``check`` can use it as the default
    of ``model.min_confidence``.
    """
    path = Path(model_path) if model_path is not None else default_model_dir() / MODEL_FILE
    mode = _THRESHOLD.get(resolve(backend), "single") if _BACKENDS else "single"
    return ModelMeta.for_model(path).threshold(mode)


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def load_classifier(
    backend: str = "auto", model_path: Path | None = None, threads: int = 1,
    runtime: Runtime = LITERT,
) -> OrientationClassifier:
    """Build a classifier whose networks run on ``runtime`` (default: LiteRT).

    Raises ModelError for an unknown backend or runtime, a runtime or execution provider that
    is not installed, or an unloadable model."""
    backend = resolve(backend)
    try:
        factory = _BACKENDS[backend]
    except KeyError:
        raise ModelError(
            f"unknown model backend {backend!r}; available: {', '.join(available_backends())}"
        ) from None
    return factory(model_path, threads, runtime)
