"""ONNX Runtime behind the :class:`~rotwatchd.model.network.Network` seam (``model.runtime:
onnxruntime``), with the execution providers of ``model.providers`` (CPU by default; CUDA or
TensorRT on Jetson-class boards where onnxruntime-gpu is installed). onnxruntime is an
optional dependency (``pip install 'rotwatchd[onnx]'``), imported only here.

The shipped ``.onnx`` files hold int8 weights behind ``DequantizeLinear`` nodes (as the
``.tflite`` files do); ``session.disable_quant_qdq`` lets the graph optimiser fold them into
float weights once, when the session loads, instead of dequantizing at every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rotwatchd.model.base import ModelError

INSTALL_HINT = "pip install 'rotwatchd[onnx]'"


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ModelError(f"model.runtime onnxruntime needs the onnxruntime package: "
                         f"{INSTALL_HINT}") from None
    return onnxruntime


def check_providers(providers: tuple[str, ...]) -> None:
    """Raise ModelError naming the first requested provider this onnxruntime lacks."""
    if not providers:
        raise ModelError("model.providers is empty; use e.g. [CPUExecutionProvider]")
    available = _ort().get_available_providers()
    for name in providers:
        if name not in available:
            raise ModelError(f"model.providers: {name} is not available in this onnxruntime "
                             f"(available: {', '.join(available)})")


class OnnxNetwork:
    """An ``.onnx`` file in an ONNX Runtime session with ``threads`` intra-op threads.

    Raises ModelError when onnxruntime or a requested provider is missing, or the file does
    not load."""

    def __init__(self, path: Path, threads: int, what: str,
                 providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> None:
        ort = _ort()
        check_providers(providers)
        self.what = what
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # warnings about unused initializers are not the user's
        opts.add_session_config_entry("session.disable_quant_qdq", "1")
        # with 2+ threads ONNX Runtime's workers spin between ops by default: measured 2-3x the
        # CPU time of LiteRT per image on a busy 2-core machine (``rotwatchd bench``)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(path), opts, providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own exception types, not exported
            raise ModelError(f"cannot load {what} {path}: {exc}") from exc
        inputs = self._session.get_inputs()
        self._input = inputs[0].name
        self.input_shape = tuple(int(d) for d in inputs[0].shape)
        self.output_shapes = tuple(tuple(int(d) for d in o.shape)
                                   for o in self._session.get_outputs())

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        try:
            outs = self._session.run(None, {self._input: np.ascontiguousarray(x, np.float32)})
        except Exception as exc:
            raise ModelError(f"{self.what} failed: {exc}") from exc
        return [np.asarray(y, dtype=np.float32) for y in outs]

    def close(self) -> None:
        self._session = None
