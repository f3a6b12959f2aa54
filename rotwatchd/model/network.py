"""The one seam between the classifiers and the ML runtimes: run this network on this array.

Every network (scene, text, face detectors) ships as a ``.tflite`` file and, for ONNX Runtime,
as an ``.onnx`` file of the same name beside it, taking the same input and giving the same
outputs. Preprocessing, ensembles and fusion (``scene.py``, ``text.py``, ``faces.py``,
``fusion.py``) only ever call :meth:`Network.run`, so both runtimes share every line of them.
A :class:`Runtime` names the runtime (``model.runtime``) and, for ONNX Runtime, its execution
providers (``model.providers``); the runtime packages are imported only when a network opens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from rotwatchd.model.base import ModelError

if TYPE_CHECKING:  # numpy is the networks' business: naming a runtime needs none
    import numpy as np

#: model.runtime values: the TFLite interpreter (ai-edge-litert, else tflite-runtime), or ONNX
#: Runtime
RUNTIMES = ("litert", "onnxruntime")
DEFAULT_PROVIDERS = ("CPUExecutionProvider",)
_SUFFIX = {"litert": ".tflite", "onnxruntime": ".onnx"}


class Network(Protocol):
    """One loaded network with a single input. Not thread-safe: one per worker."""

    input_shape: tuple[int, ...]
    output_shapes: tuple[tuple[int, ...], ...]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Outputs (float32, batch dimension kept, in the file's order) for the input ``x``
        (float32, shaped as ``input_shape``). Raises ModelError when the runtime fails."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Runtime:
    """Which runtime opens the networks; ``providers`` matter to ONNX Runtime only."""

    name: str = "litert"
    providers: tuple[str, ...] = DEFAULT_PROVIDERS

    def file(self, path: Path) -> Path:
        """The file this runtime loads for the network named by ``path`` (its ``.tflite`` or
        ``.onnx`` name: the suffix is swapped; another suffix is kept)."""
        if path.suffix in _SUFFIX.values() and self.name in _SUFFIX:
            return path.with_suffix(_SUFFIX[self.name])
        return path

    def open(self, path: Path, threads: int, what: str) -> Network:
        """Load ``self.file(path)`` with ``threads`` threads; ``what`` names it in errors.

        Raises ModelError for an unknown runtime, a runtime or provider that is not
        installed, a missing file or one the runtime cannot load."""
        file = self.file(path)
        if self.name not in _SUFFIX:
            raise ModelError(f"unknown model runtime {self.name!r}; choose from "
                             f"{', '.join(RUNTIMES)}")
        if not file.is_file():
            raise ModelError(f"{what} not found: {file}")
        if self.name == "onnxruntime":
            from rotwatchd.model.onnx_runtime import OnnxNetwork

            return OnnxNetwork(file, threads, what, self.providers)
        from rotwatchd.model.litert import LiteRTNetwork

        return LiteRTNetwork(file, threads, what)


#: the default runtime: the TFLite interpreter
LITERT = Runtime()
