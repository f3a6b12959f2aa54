"""The ONNX export's own tools on the real face detector (run where ``[train]`` is installed):
the op-by-op TFLite translation computes what the file computes, and the weight-only int8 and
float16 storage keep the weights they replace."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.paths import REPO_ROOT
from PIL import Image

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from onnx import numpy_helper  # noqa: E402 - only importable with the [train] extra

from rotwatchd.model.faces import SHORT_RANGE, letterbox  # noqa: E402
from training.onnx_export import (  # noqa: E402
    run_onnx,
    run_tflite,
    weight_only_int8,
    weights_float16,
)
from training.tflite_onnx import tflite_to_onnx  # noqa: E402

ROOT = REPO_ROOT
FACE = ROOT / "models" / "faces" / SHORT_RANGE.filename


def _inputs() -> list[np.ndarray]:
    out = []
    for path in sorted((ROOT / "tests" / "fixtures" / "faces").glob("*.jpg")):
        with Image.open(path) as raw:
            out.append(letterbox(raw, SHORT_RANGE.input_size)[None])
    return out


def test_translated_face_detector_gives_the_tflite_outputs() -> None:
    model = tflite_to_onnx(FACE)
    assert [o.name for o in model.graph.output] == ["regressors", "classificators"]
    for x in _inputs():
        for got, want in zip(run_onnx(model, x), run_tflite(FACE, x), strict=True):
            assert got.shape == want.shape
            assert np.abs(got - want).max() < 2e-3


def test_int8_and_float16_storage_keep_the_weights() -> None:
    base = {i.name: numpy_helper.to_array(i) for i in tflite_to_onnx(FACE).graph.initializer}
    q = weight_only_int8(tflite_to_onnx(FACE))
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    dq = [n for n in q.graph.node if n.op_type == "DequantizeLinear"]
    assert dq
    for node in dq:
        w, scale = inits[node.input[0]], inits[node.input[1]]
        assert w.dtype == np.int8 and np.abs(w).max() <= 127
        shape = [1] * w.ndim
        shape[0] = -1
        err = np.abs(w * scale.reshape(shape) - base[node.output[0]])
        assert (err <= scale.reshape(shape) / 2 + 1e-7).all()
    half = weights_float16(tflite_to_onnx(FACE))
    x = _inputs()[0]
    for got, want in zip(run_onnx(half, x), run_tflite(FACE, x), strict=True):
        assert np.abs(got - want).max() < 2e-3
