"""Registry of classifier backends (filled in by the model work, issue 5)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rotwatchd.model.base import ModelError, OrientationClassifier, default_model_dir
from rotwatchd.model.litert import MODEL_FILE, ModelMeta

BackendFactory = Callable[[Path | None, int], OrientationClassifier]
_BACKENDS: dict[str, BackendFactory] = {}
_PASSES: dict[str, int] = {}


def register_backend(name: str, factory: BackendFactory, passes: int = 1) -> None:
    """``passes``: network passes per image (4 = test-time ensemble with its own threshold)."""
    _BACKENDS[name] = factory
    _PASSES[name] = passes


def calibrated_threshold(backend: str = "auto", model_path: Path | None = None) -> float:
    """The review threshold calibrated for this model and backend (its JSON sidecar).

    Read without loading the network, so the daemon and ``check`` can use it as the default
    of ``model.min_confidence``.
    """
    path = Path(model_path) if model_path is not None else default_model_dir() / MODEL_FILE
    return ModelMeta.for_model(path).threshold(_PASSES.get(backend, 1))


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def load_classifier(
    backend: str = "auto", model_path: Path | None = None, threads: int = 1
) -> OrientationClassifier:
    """Build a classifier. Raises ModelError for an unknown backend or an unloadable model."""
    if backend == "auto":
        if not _BACKENDS:
            raise ModelError("no orientation backend is installed (need ai-edge-litert)")
        backend = next(iter(_BACKENDS))
    try:
        factory = _BACKENDS[backend]
    except KeyError:
        raise ModelError(
            f"unknown model backend {backend!r}; available: {', '.join(available_backends())}"
        ) from None
    return factory(model_path, threads)
