"""The TFLite runtime behind the :class:`~rotwatchd.model.network.Network` seam:
ai-edge-litert (XNNPACK CPU kernels), else the older tflite-runtime interpreter some
Raspberry Pi images ship. Only imported when a network is opened with ``model.runtime:
litert``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rotwatchd.model.base import ModelError


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as exc:
            raise ModelError("model.runtime litert needs ai-edge-litert or tflite-runtime: "
                             "pip install 'rotwatchd[litert]' (or "
                             "'rotwatchd[tflite-runtime]')") from exc
    return Interpreter


def runtime_name() -> str:
    """Which interpreter runs the models: ``ai-edge-litert`` or ``tflite-runtime``."""
    module = _interpreter_class().__module__
    return "tflite-runtime" if module.startswith("tflite_runtime") else "ai-edge-litert"


class LiteRTNetwork:
    """A ``.tflite`` file on the TFLite interpreter. An int8 input or output (a fully
    quantized model) is quantized and dequantized here, so callers see float32 only.

    Raises ModelError when no interpreter is installed or the file does not load."""

    def __init__(self, path: Path, threads: int, what: str) -> None:
        self.what = what
        try:
            self._interp = _interpreter_class()(model_path=str(path),
                                                num_threads=max(1, threads))
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load {what} {path}: {exc}") from exc
        self._in = self._interp.get_input_details()[0]
        self._outs = self._interp.get_output_details()
        self.input_shape = tuple(int(d) for d in self._in["shape"])
        self.output_shapes = tuple(tuple(int(d) for d in o["shape"]) for o in self._outs)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        if self._in["dtype"] != np.float32:
            scale, zero = self._in["quantization"]
            info = np.iinfo(self._in["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(self._in["dtype"])
        try:
            self._interp.set_tensor(self._in["index"], np.ascontiguousarray(x))
            self._interp.invoke()
            outs = [self._interp.get_tensor(o["index"]) for o in self._outs]
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{self.what} failed: {exc}") from exc
        for i, (y, o) in enumerate(zip(outs, self._outs, strict=True)):
            if o["dtype"] != np.float32:
                scale, zero = o["quantization"]
                outs[i] = (y.astype(np.float32) - zero) * scale
        return [np.asarray(y, dtype=np.float32) for y in outs]

    def close(self) -> None:
        self._interp = None
