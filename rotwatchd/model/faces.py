"""Face orientation cue: MediaPipe BlazeFace detectors run on the four candidate rotations.

A face detector trained on upright faces fires far more strongly on the rotation that makes
a portrait upright than on the other three, so "best face score per rotation" is a cheap,
pretrained orientation cue. The detectors are plain ``.tflite`` files extracted from the
``mediapipe`` wheel at build time (``training/fetch_face_models.py``); this module never
imports mediapipe. Pre-processing (letterbox without stretching, pixels scaled to [-1, 1])
and the SSD anchor layout follow MediaPipe's face-detection graphs, so the raw outputs decode
into the same boxes, keypoints and scores MediaPipe would report.

Measured figures (precision per score threshold, cost per image) and how to reproduce them:
``bench/bench_faces.py``. Not thread-safe: use one FaceCue per worker thread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from rotwatchd.model.base import CORRECTIONS, ModelError, default_model_dir
from rotwatchd.model.network import LITERT, Runtime

FloatArray = npt.NDArray[np.float32]
RAW_SCORE_CLIP = 100.0  # MediaPipe clips logits before the sigmoid (score_clipping_thresh)


@dataclass(frozen=True)
class DetectorSpec:
    """How one BlazeFace-family model is fed and how its SSD anchors are laid out."""

    name: str
    filename: str
    input_size: int
    strides: tuple[int, ...]
    # Anchors per cell for each distinct stride run, derived like MediaPipe's
    # SsdAnchorsCalculator with aspect_ratios=[1.0]: every layer adds one anchor, plus one
    # interpolated-scale anchor when interpolated_scale_aspect_ratio > 0.
    interpolated_anchor: bool
    num_keypoints: int
    face_keypoints: bool  # keypoints are eyes/nose/mouth, so face_tilt() applies


# Anchor options from MediaPipe's face_detection_short_range / full_range and pose_detection
# graphs (min/max scale do not matter: fixed_anchor_size makes every anchor 1x1).
SHORT_RANGE = DetectorSpec(
    "short", "face_detection_short_range.tflite", 128, (8, 16, 16, 16), True, 6, True
)
FULL_RANGE = DetectorSpec(
    "full", "face_detection_full_range_sparse.tflite", 192, (4,), False, 6, True
)
POSE = DetectorSpec("pose", "pose_detection.tflite", 224, (8, 16, 32, 32, 32), True, 4, False)
DETECTORS: dict[str, DetectorSpec] = {d.name: d for d in (SHORT_RANGE, FULL_RANGE, POSE)}


def ssd_anchor_centres(spec: DetectorSpec) -> FloatArray:
    """Anchor centres (x, y), normalised to [0, 1], in the order the model emits its boxes.

    Consecutive layers that share a stride share one feature map; each contributes anchors per
    cell (two when the interpolated-scale anchor is enabled), all at the same centre.
    """
    centres: list[FloatArray] = []
    layer = 0
    while layer < len(spec.strides):
        stride = spec.strides[layer]
        per_cell = 0
        while layer < len(spec.strides) and spec.strides[layer] == stride:
            per_cell += 2 if spec.interpolated_anchor else 1
            layer += 1
        cells = math.ceil(spec.input_size / stride)
        grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        xy = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(xy, per_cell, axis=0))
    return np.concatenate(centres, axis=0).astype(np.float32)


@dataclass(frozen=True)
class Detection:
    """One decoded detection in the letterboxed square's normalised coordinates."""

    score: float
    box: tuple[float, float, float, float]  # x_centre, y_centre, width, height
    keypoints: tuple[tuple[float, float], ...]
    tilt: float | None  # degrees from upright, from the keypoints (None for pose)


def decode(
    spec: DetectorSpec, anchors: FloatArray, regressors: FloatArray, logits: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Decode raw SSD outputs into (scores[N], boxes[N, 4 + 2K]) in normalised coordinates.

    ``regressors`` is ``[N, 4 + 2K]`` (x, y, w, h, then keypoint x, y pairs, in input pixels
    relative to the anchor centre), ``logits`` is ``[N]`` or ``[N, 1]``.
    """
    scale = float(spec.input_size)
    out = regressors.astype(np.float32) / scale
    out[:, 0:2] += anchors
    for k in range(spec.num_keypoints):
        out[:, 4 + 2 * k : 6 + 2 * k] += anchors
    return _sigmoid(logits.reshape(-1)), out


def face_tilt(boxes: FloatArray) -> FloatArray:
    """Degrees each decoded face is turned from upright, judged from its keypoints.

    BlazeFace's keypoints follow the real eyes and mouth even when the box fires on a
    sideways face, so a detection can say "this face is upright" (near 0), "lying on its
    side" (near +-90) or, less reliably, "upside down". Uses the mouth-to-eyes vector and
    the eye line turned by 90 degrees, averaged. Positive means the face's top leans right
    (clockwise). Keypoint order (MediaPipe): right eye, left eye, nose tip, mouth, ...
    """
    right_eye, left_eye, mouth = boxes[:, 4:6], boxes[:, 6:8], boxes[:, 10:12]
    up = (right_eye + left_eye) / 2 - mouth
    eyes = left_eye - right_eye
    eyes_up = np.stack([eyes[:, 1], -eyes[:, 0]], axis=1)  # eye line turned 90 deg CCW

    def unit(v: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
        norm = np.maximum(np.hypot(v[:, 0], v[:, 1]), 1e-9)[:, np.newaxis]
        return np.asarray(v / norm, dtype=np.float64)

    both = unit(up) + unit(eyes_up)
    # Image y grows downwards: "up" is -y, so the tilt is atan2(x, -y).
    return np.degrees(np.arctan2(both[:, 0], -both[:, 1])).astype(np.float32)


def best_upright_score(
    spec: DetectorSpec,
    anchors: FloatArray,
    regressors: FloatArray,
    logits: FloatArray,
    max_tilt: float | None,
    region: npt.NDArray[np.intp] | None = None,
    parts: int = 1,
) -> FloatArray:
    """Best detection score among faces tilted at most ``max_tilt`` degrees (any face when
    None), judged by their keypoints (see :func:`face_tilt`). With ``region`` ([N] ids in
    ``range(parts)``, the tile each anchor lies in) returns one score per tile, else one."""
    best = np.zeros(parts, dtype=np.float32)
    candidates = np.flatnonzero(logits.reshape(-1) > -2.0)  # score > 0.12: cheap pre-filter
    if candidates.size == 0:
        return best
    scores, boxes = decode(spec, anchors[candidates], regressors[candidates], logits[candidates])
    keep = np.ones(candidates.size, dtype=bool)
    if max_tilt is not None and spec.face_keypoints:
        keep = np.abs(face_tilt(boxes)) <= max_tilt
    ids: npt.NDArray[np.intp] = (
        region[candidates] if region is not None else np.zeros(candidates.size, np.intp)
    )
    np.maximum.at(best, ids[keep], scores[keep])
    return best


def letterbox(image: Image.Image, size: int, height: int | None = None) -> FloatArray:
    """Fit ``image`` into a ``size`` wide, ``height`` (default ``size``) high box without
    stretching, pad with black, and scale pixels to [-1, 1] as the BlazeFace graphs do.
    Returns a ``[height, size, 3]`` float32 array."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    box_w, box_h = size, size if height is None else height
    w, h = rgb.size
    scale = min(box_w / w, box_h / h)
    nw, nh = max(1, min(box_w, round(w * scale))), max(1, min(box_h, round(h * scale)))
    # reducing_gap makes large downscales cheap (box-reduce first) without visible aliasing.
    small = rgb.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=2.0)
    canvas = np.zeros((box_h, box_w, 3), dtype=np.float32)
    top, left = (box_h - nh) // 2, (box_w - nw) // 2
    canvas[top : top + nh, left : left + nw] = np.asarray(small, dtype=np.float32)
    canvas *= 1.0 / 127.5
    canvas -= 1.0
    # Padding becomes -1 (black), matching MediaPipe's zero-filled letterbox.
    return canvas


def rotate_clockwise(square: FloatArray, correction: int) -> FloatArray:
    """Turn an HWC array clockwise by ``correction`` degrees (exact, no resampling)."""
    # np.rot90 with positive k turns counter-clockwise, so clockwise c is k = -c/90.
    return np.ascontiguousarray(np.rot90(square, k=-(correction // 90), axes=(0, 1)))


class _Detector:
    """One loaded model with its anchors; runs one letterboxed square at a time."""

    def __init__(self, spec: DetectorSpec, path: Path, threads: int, runtime: Runtime) -> None:
        if not runtime.file(path).is_file():
            raise ModelError(
                f"face model {runtime.file(path)} is missing; run `python "
                "training/fetch_face_models.py` to extract it from the mediapipe wheel"
                + (" and `python -m training.onnx_export` to convert it"
                   if runtime.name == "onnxruntime" else "")
            )
        self._net = runtime.open(path, threads, "face model")
        self.spec = spec
        self.anchors = ssd_anchor_centres(spec)
        shapes = self._net.output_shapes
        # The regressor output is the wide one ([.., N, 4+2K]), the score output is [.., N, 1].
        order = sorted(range(len(shapes)), key=lambda i: shapes[i][-1], reverse=True)
        self._reg_index, self._score_index = order[0], order[1]
        n_out = shapes[self._reg_index][-2]
        if n_out != len(self.anchors):
            raise ModelError(
                f"{path.name}: model emits {n_out} boxes but the {spec.name} anchor layout "
                f"has {len(self.anchors)}; wrong model file?"
            )

    def run(self, square: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Raw (regressors[N, C], logits[N]) for one ``[S, S, 3]`` input."""
        # One run per input: resizing the batch dimension is no faster on one thread, and
        # the short-range graph then interleaves its outputs by layer, not by batch item.
        outs = self._net.run(square[np.newaxis])
        reg = np.asarray(outs[self._reg_index], dtype=np.float32)
        logits = np.asarray(outs[self._score_index], dtype=np.float32)
        return reg[0], logits.reshape(-1)

    def close(self) -> None:
        self._net.close()


class FaceCue:
    """Scores each candidate correction by how strongly an upright face appears after it.

    ``FaceCue(model_dir=None, detectors=("short",), threads=1, layout="pairs",
    max_tilt=35.0)`` loads the named detectors (``"short"``, ``"full"``, ``"pose"``) from
    ``model_dir`` (default: ``default_model_dir() / "faces"``) on ``runtime`` (default: the
    LiteRT interpreter, XNNPACK, falling back to tflite-runtime; or ONNX Runtime, which loads
    the ``.onnx`` file of the same name).

    ``layout="separate"`` letterboxes the image into the detector's square and runs it once
    per rotation (4 runs). ``layout="pairs"`` packs two rotations into one input, turned
    so their long sides lie along the square's edge (0 over 180, then 90 beside 270), so
    2 runs cover all 4 rotations at about 3/4 of the resolution for a 3:2 photo.
    Detections whose keypoints say the face is tilted more than ``max_tilt`` degrees do not
    count (None: every detection counts). With several detectors, their scores are averaged:
    agreement between them is what makes a face score trustworthy.

    Raises :class:`ModelError` if a model file is missing or cannot be loaded, or a
    detector name or layout is unknown.
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        detectors: Sequence[str] = ("short",),
        threads: int = 1,
        layout: str = "pairs",
        max_tilt: float | None = 35.0,
        runtime: Runtime = LITERT,
    ) -> None:
        folder = model_dir if model_dir is not None else default_model_dir() / "faces"
        unknown = [d for d in detectors if d not in DETECTORS]
        if unknown or not detectors:
            raise ModelError(
                f"unknown face detector(s) {unknown or list(detectors)}; "
                f"choose from {sorted(DETECTORS)}"
            )
        if layout not in ("separate", "pairs"):
            raise ModelError(f"unknown face cue layout {layout!r}; use 'separate' or 'pairs'")
        self.layout = layout
        self.max_tilt = max_tilt
        self._detectors = [
            _Detector(DETECTORS[name], folder / DETECTORS[name].filename, threads, runtime)
            for name in detectors
        ]

    @property
    def detector_names(self) -> tuple[str, ...]:
        return tuple(d.spec.name for d in self._detectors)

    def scores(self, image: Image.Image) -> tuple[float, float, float, float]:
        """Face score in [0, 1] for each correction in ``CORRECTIONS``.

        Entry ``i`` is the best score of an upright-looking face found in ``image`` after
        turning it clockwise by ``CORRECTIONS[i]`` degrees (averaged over the detectors).
        A clear face scores near 1 at the right correction; no face gives values near 0.
        Raises :class:`ModelError` if the interpreter fails.
        """
        total = np.zeros(4, dtype=np.float32)
        for det in self._detectors:
            if self.layout == "pairs":
                total += self._pair_scores(det, image)
            else:
                total += self._separate_scores(det, image)
        mean = total / len(self._detectors)
        return (float(mean[0]), float(mean[1]), float(mean[2]), float(mean[3]))

    def _separate_scores(self, det: _Detector, image: Image.Image) -> FloatArray:
        square = letterbox(image, det.spec.input_size)
        best = np.empty(4, dtype=np.float32)
        for i, correction in enumerate(CORRECTIONS):
            reg, logits = det.run(rotate_clockwise(square, correction))
            best[i] = best_upright_score(det.spec, det.anchors, reg, logits, self.max_tilt)[0]
        return best

    def _pair_scores(self, det: _Detector, image: Image.Image) -> FloatArray:
        size = det.spec.input_size
        half = size // 2
        width, height = image.size
        # One half-square tile, as wide as the square when the photo is landscape; its
        # 0/180 turns are as wide as the square and its 90/270 turns as tall.
        tile = letterbox(image, size, half) if width >= height else letterbox(image, half, size)
        best = np.empty(4, dtype=np.float32)
        for first, second in ((0, 2), (1, 3)):
            a = rotate_clockwise(tile, CORRECTIONS[first])
            b = rotate_clockwise(tile, CORRECTIONS[second])
            stacked = a.shape[1] == size  # wide tiles go one above the other
            square = np.concatenate([a, b], axis=0 if stacked else 1)
            # An anchor belongs to the tile holding its centre (faces rarely straddle).
            axis = 1 if stacked else 0
            region = (det.anchors[:, axis] >= 0.5).astype(np.intp)
            reg, logits = det.run(square)
            pair = best_upright_score(
                det.spec, det.anchors, reg, logits, self.max_tilt, region, parts=2
            )
            best[first], best[second] = pair[0], pair[1]
        return best

    def detect(
        self, image: Image.Image, correction: int = 0, min_score: float = 0.5
    ) -> list[Detection]:
        """Detections (not suppressed, best first) in ``image`` turned clockwise by
        ``correction``, in the letterboxed square's normalised coordinates; for diagnostics.
        Raises ValueError for a correction outside ``CORRECTIONS``."""
        if correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction}")
        found: list[Detection] = []
        for det in self._detectors:
            square = rotate_clockwise(letterbox(image, det.spec.input_size), correction)
            reg, logits = det.run(square)
            scores, boxes = decode(det.spec, det.anchors, reg, logits)
            for j in np.flatnonzero(scores >= min_score):
                row = boxes[j]
                kps = tuple(
                    (float(row[4 + 2 * k]), float(row[5 + 2 * k]))
                    for k in range(det.spec.num_keypoints)
                )
                box = (float(row[0]), float(row[1]), float(row[2]), float(row[3]))
                tilt = float(face_tilt(row[np.newaxis])[0]) if det.spec.face_keypoints else None
                found.append(Detection(float(scores[j]), box, kps, tilt))
        return sorted(found, key=lambda d: d.score, reverse=True)

    def close(self) -> None:
        """Release the networks (they hold the model buffers)."""
        for det in self._detectors:
            det.close()
        self._detectors = []


def _sigmoid(logits: FloatArray) -> FloatArray:
    # float64: exp(100) overflows float32, and MediaPipe's clip is at +-100.
    clipped = np.clip(logits.astype(np.float64), -RAW_SCORE_CLIP, RAW_SCORE_CLIP)
    return (1.0 / (1.0 + np.exp(-clipped))).astype(np.float32)
