"""Registry of classifier backends (filled in by the model work, issue 5)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rotwatchd.model.base import ModelError, OrientationClassifier

BackendFactory = Callable[[Path | None, int], OrientationClassifier]
_BACKENDS: dict[str, BackendFactory] = {}


def register_backend(name: str, factory: BackendFactory) -> None:
    _BACKENDS[name] = factory


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
