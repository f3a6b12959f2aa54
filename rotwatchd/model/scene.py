"""The scene orientation network, on either runtime (``network.Runtime``).

The model file (``orientation.tflite``, and ``orientation.onnx`` beside it for ONNX Runtime) takes
one NHWC image (float32, or int8 for a fully quantized model) and returns 4 logits, class ``i``
meaning clockwise correction ``CORRECTIONS[i]``. A JSON sidecar next to the model (same stem,
``.json``; :mod:`rotwatchd.model.sidecar`) holds the input size and the softmax temperature fitted
on the validation sources. Preprocessing here must match ``training/augment.py:to_input`` exactly:
RGB, squash-resize to size x size with bilinear filtering, then ``(pixel - 127) / 128``.

``passes=4`` runs the network on the image turned all four ways (exact ``np.rot90`` of the
preprocessed array) and averages what the four views say about the original: the
test-time-augmentation ensemble, ~4x the time for a more accurate, differently calibrated
answer (its own review threshold, ``tta_min_confidence`` in the sidecar). The adaptive
backend (``rotwatchd/model/fusion.py``) runs one pass and adds the other three only for images
the first pass is unsure of; its threshold is ``cascade_min_confidence``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from rotwatchd.model.base import CORRECTIONS, ModelError, Prediction, default_model_dir
from rotwatchd.model.network import LITERT, Runtime
from rotwatchd.model.sidecar import MODEL_FILE, ModelMeta


def preprocess(image: Image.Image, size: int) -> np.ndarray:
    """PIL image -> float32 array (size, size, 3) normalised as in training."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    # reducing_gap keeps big photos fast (box pre-shrink) without changing the result visibly.
    small = rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return (np.asarray(small, dtype=np.float32) - 127.0) / 128.0


def tta_average(view_probs: np.ndarray) -> np.ndarray:
    """Average 4 views' probabilities into one belief about the original image.

    ``view_probs[m]`` are the probabilities for the image turned counter-clockwise m times
    (class ``i`` = "turned i times", i.e. clockwise correction ``CORRECTIONS[i]``). View m
    saying class j says the original is turned ``(j - m) % 4``.
    """
    out: np.ndarray = np.mean([np.roll(view_probs[m], -m) for m in range(4)], axis=0)
    return out


def belief(views: np.ndarray) -> np.ndarray:
    """What ``views`` (one, or the four turns as in :func:`tta_average`) say about the
    original image: the single view's probabilities, or the 4-view average."""
    out: np.ndarray = views[0] if len(views) == 1 else tta_average(views)
    return out


def as_probs(p: np.ndarray) -> tuple[float, float, float, float]:
    """A probability array as the 4-tuple the cues and ``Prediction`` carry."""
    return (float(p[0]), float(p[1]), float(p[2]), float(p[3]))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z -= z.max()
    e = np.exp(z)
    out: np.ndarray = e / e.sum()
    return out


class SceneClassifier:
    """Scene network on ``runtime`` (default: LiteRT, XNNPACK CPU kernels), ``threads``
    threads. ``model_path`` names the network by its ``.tflite`` file (default: the shipped
    one); each runtime loads its own file of that name.

    Raises ModelError when the file is missing or is not a loadable 4-way orientation model.
    """

    def __init__(self, model_path: Path | None = None, threads: int = 1, passes: int = 1,
                 runtime: Runtime = LITERT) -> None:
        if passes not in (1, 4):
            raise ModelError(f"passes must be 1 or 4, got {passes}")
        self.passes = passes
        path = Path(model_path) if model_path is not None else default_model_dir() / MODEL_FILE
        self.path = path
        self.runtime = runtime
        self._net = runtime.open(path, threads, "orientation model")
        self.meta = ModelMeta.for_model(path)
        shape = self._net.input_shape
        outs = self._net.output_shapes
        # the logits first; the shipped .tflite also gives the pooled features (for on-device
        # adaptation, rotwatchd/model/personal.py), which only that reader uses
        if len(shape) != 4 or shape[3] != 3 or len(outs) not in (1, 2) or outs[0][-1] != 4:
            raise ModelError(f"{runtime.file(path)} is not a 4-way NHWC orientation model "
                             f"(input {shape})")
        self.input_size = int(shape[1])
        self.min_confidence = self.meta.threshold("tta" if passes == 4 else "single")

    def logits(self, image: Image.Image) -> np.ndarray:
        """Raw 4 logits of the network for one image (dequantized when the model is int8)."""
        return self._run(preprocess(image, self.input_size))

    def _run(self, arr: np.ndarray) -> np.ndarray:
        return np.asarray(self._net.run(np.ascontiguousarray(arr)[None])[0][0], np.float32)

    def view(self, arr: np.ndarray, turns: int) -> np.ndarray:
        """Calibrated probabilities for a :func:`preprocess`-ed image turned ``turns`` times
        counter-clockwise (exact ``np.rot90``): one network pass."""
        return softmax(self._run(np.rot90(arr, turns)), self.meta.temperature)

    def probabilities(self, image: Image.Image) -> tuple[float, float, float, float]:
        arr = preprocess(image, self.input_size)
        return as_probs(belief(np.stack([self.view(arr, m) for m in range(self.passes)])))

    def predict(self, image: Image.Image) -> Prediction:
        probs = self.probabilities(image)
        best = int(np.argmax(probs))
        return Prediction(CORRECTIONS[best], probs[best], probs, (("scene", probs[best]),))

    def close(self) -> None:
        self._net.close()
