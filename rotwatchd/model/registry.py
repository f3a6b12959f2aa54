"""Registry of classifier backends: each loader registers under a name; ``auto`` is the first.

The built-in backends are registered here, in one list (:data:`BUILTIN`), each loading its
networks only when it is asked for a classifier: the names are known (the config's choices,
``check``'s errors) without importing numpy or a runtime. :func:`register_backend` adds others
(a test's probe, a plugin).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rotwatchd.model.base import ModelError, OrientationClassifier, default_model_dir
from rotwatchd.model.network import LITERT, Runtime
from rotwatchd.model.sidecar import MODEL_FILE, ModelMeta

#: (model path or None for the shipped one, threads, runtime) -> classifier
BackendFactory = Callable[[Path | None, int, Runtime], OrientationClassifier]
_BACKENDS: dict[str, BackendFactory] = {}
_THRESHOLD: dict[str, str] = {}


def _from_fusion(name: str) -> BackendFactory:
    """The loader ``name`` of rotwatchd.model.fusion, imported at the first call."""
    def load(model_path: Path | None, threads: int, runtime: Runtime) -> OrientationClassifier:
        from rotwatchd.model import fusion

        factory: BackendFactory = getattr(fusion, name)
        return factory(model_path, threads, runtime)

    return load


#: (name, loader in rotwatchd.model.fusion, sidecar threshold), the first being ``auto``:
#: "litert-adaptive": every cue, 4 passes only when one is unsure; "litert": every cue, always
#: one pass (fixed cost); "litert-scene": the network only; "litert-tta": every cue, always the
#: 4-pass ensemble (servers, where time is cheap). The names predate ONNX Runtime: each runs on
#: either ``model.runtime``.
BUILTIN = (
    ("litert-adaptive", "load_adaptive", "cascade"),
    ("litert", "load_fused", "single"),
    ("litert-scene", "load_scene_only", "single"),
    ("litert-tta", "load_fused_tta", "tta"),
)


def register_backend(name: str, factory: BackendFactory, threshold: str = "single") -> None:
    """``threshold``: which calibrated threshold of the model's sidecar the backend's
    confidences are meant for (``ModelMeta.threshold``: single, tta or cascade).
    The first backend registered is the ``auto`` choice."""
    _BACKENDS[name] = factory
    _THRESHOLD[name] = threshold


for _name, _loader, _threshold in BUILTIN:
    register_backend(_name, _from_fusion(_loader), _threshold)


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
    mode = _THRESHOLD.get(resolve(backend), "single")
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
