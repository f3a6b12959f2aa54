"""A personal head on the scene network: the last layer learned on the user's own photos.

The shipped scene graph has two outputs (``training/feature_output.py``): the logits and the
pooled features that its final fully-connected layer reads. The shipped head itself (that
layer's weights, dequantized) lies next to the model as ``<stem>-head.npz``. A :class:`Head` is
such a layer with the softmax temperature folded in, so ``Head.probabilities(features)`` of
the shipped head is what ``SceneClassifier.view`` returns.

:class:`FeatureScene` is the scene classifier that also hands out the features, and runs a
personal head instead of the shipped one when given one: same pass, same cost (the features
are computed for the logits anyway). :class:`PersonalClassifier` is the adaptive backend
(``litert-adaptive``: scene, text and face cues, 4 passes only when one is unsure) on that
scene, where the personal head only decides what the shipped head would send to review. Its
confidences are reported on the shipped model's scale: the personal head's own review
threshold, calibrated on the user's held-out labels (``rotwatchd/adapt/fit.py``), is mapped onto
the shipped threshold by a monotone piecewise-linear map, so the daemon's decision rule and
``model.min_confidence`` keep their meaning. The personal head only speaks for photos inside its
:class:`Support`, the region of feature space its labels cover: the guardrail judged it on the
user's own kind of photo only, so it cannot vouch for any other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rotwatchd.model.base import ModelError, Prediction, default_model_dir
from rotwatchd.model.fusion import AdaptiveClassifier, _faces_for, _text_for
from rotwatchd.model.network import LITERT, Runtime
from rotwatchd.model.scene import SceneClassifier, preprocess
from rotwatchd.model.sidecar import MODEL_FILE, ModelMeta

HEAD_SUFFIX = "-head.npz"


@dataclass(frozen=True)
class Head:
    """A 4-way linear layer on the pooled features: ``weight`` (4, F), ``bias`` (4), both
    divided by the softmax temperature already."""

    weight: np.ndarray
    bias: np.ndarray

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(..., F) features -> (..., 4) logits (float64)."""
        out: np.ndarray = np.asarray(features, dtype=np.float64) @ self.weight.T.astype(
            np.float64) + self.bias
        return out

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(..., F) features -> (..., 4) probabilities, class i = turned i times."""
        z = self.logits(features)
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
        return out


def unit_rows(features: np.ndarray) -> np.ndarray:
    """(..., F) features -> the same, each row scaled to unit L2 norm (float32; an all-zero
    row stays zero)."""
    x = np.asarray(features, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    out: np.ndarray = x / np.maximum(norm, 1e-12)
    return out


def support_rows(features: np.ndarray) -> np.ndarray:
    """(..., F) non-negative pooled features -> (..., F) float32 rows where the support
    measures: the element-wise square root (the Hellinger map, as RootSIFT: R. Arandjelovic and
    A. Zisserman, "Three things everyone should know to improve object retrieval", CVPR 2012),
    scaled to unit L2 norm. Without the root a few large activations, shared by most
    pictures, dominate the cosine: a support of hand photos then held 36 % of screenshots'
    views, with it 10 %."""
    return unit_rows(np.sqrt(np.maximum(np.asarray(features, dtype=np.float32), 0.0)))


@dataclass(frozen=True)
class Support:
    """Where a personal head's labels lie in feature space: ``centroids`` (k, F) float32 of
    unit length (spherical k-means over the labels' pooled features, every turn, mapped by
    :func:`support_rows`) and ``radius``, a cosine distance. A view's distance is 1 - the
    largest cosine similarity of its :func:`support_rows` to a centroid (0 on a centroid; at
    most 1, the features being non-negative); a photo's is the largest of its 4 turns' (the
    support holds every turn, so all four of a photo like the labels lie in it), and the photo
    lies inside when that is at most ``radius``. How the radius is set:
    ``rotwatchd/adapt/fit.py`` (``fit_support``). Memory: k x F float32."""

    centroids: np.ndarray
    radius: float

    def distance(self, features: np.ndarray) -> np.ndarray:
        """(..., F) features of views -> (...,) cosine distance to the nearest centroid
        (float64)."""
        sims = support_rows(features) @ self.centroids.T
        out: np.ndarray = 1.0 - np.max(sims, axis=-1).astype(np.float64)
        return out

    def photo_distance(self, turns: np.ndarray) -> np.ndarray:
        """(..., 4, F) features of photos' 4 turns (any order) -> (...,) the photos'
        distances: the largest of their turns'."""
        out: np.ndarray = self.distance(turns).max(axis=-1)
        return out

    def contains(self, turns: np.ndarray) -> np.ndarray:
        """(..., 4, F) features of photos' 4 turns -> (...,) bool: inside the support."""
        out: np.ndarray = self.photo_distance(turns) <= self.radius
        return out


@dataclass(frozen=True)
class PersonalHead:
    """A head fitted on one user's labels, and the review threshold it was calibrated for
    (``threshold``) next to the shipped backend's (``shipped_threshold``). ``model_digest``
    names the scene model it belongs to; ``support`` is where it may decide (elsewhere the
    shipped head's answer stands); ``figures`` are what the guardrail measured."""

    head: Head
    threshold: float
    shipped_threshold: float
    model_digest: str
    support: Support
    figures: dict[str, Any] = field(default_factory=dict)

    def on_shipped_scale(self, confidence: float) -> float:
        """The confidence mapped so that ``threshold`` lands on ``shipped_threshold``
        (monotone, piecewise linear, 0 -> 0 and 1 -> 1)."""
        own, shipped = self.threshold, self.shipped_threshold
        if confidence < own:
            return confidence * shipped / own if own > 0 else shipped
        if own >= 1.0:
            return 1.0
        return shipped + (confidence - own) * (1.0 - shipped) / (1.0 - own)


def model_path_or_default(model_path: Path | None) -> Path:
    return Path(model_path) if model_path is not None else default_model_dir() / MODEL_FILE


def model_digest(model_path: Path | None) -> str:
    """SHA-256 of the scene model file: a personal head is only valid for that model."""
    return hashlib.sha256(model_path_or_default(model_path).read_bytes()).hexdigest()


def shipped_head(model_path: Path | None, temperature: float) -> Head:
    """The shipped head (``<model stem>-head.npz``) with ``temperature`` folded in.

    Raises ModelError when the file is missing or unreadable."""
    path = model_path_or_default(model_path)
    head_path = path.with_name(path.stem + HEAD_SUFFIX)
    try:
        with np.load(head_path) as data:
            if "weight_q" in data:  # int8 with a scale a class, as the graph holds them
                weight = data["weight_q"].astype(np.float32) * data["scale"][:, None]
            else:
                weight = data["weight"]
            bias = data["bias"]
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"the scene model's head {head_path} cannot be read ({exc}); "
                         "on-device adaptation needs it (training/feature_output.py)") from None
    return Head((weight / temperature).astype(np.float32),
                (bias / temperature).astype(np.float64))


class FeatureScene(SceneClassifier):
    """The one-pass scene classifier that also returns the pooled features of each pass and,
    with ``head``, computes its probabilities with that head instead of the shipped one.

    Raises ModelError when the model file has no features output (an older model, or a
    runtime whose file lacks it: the ``.onnx`` export has the logits only)."""

    def __init__(self, model_path: Path | None = None, threads: int = 1,
                 head: Head | None = None, runtime: Runtime = LITERT) -> None:
        super().__init__(model_path, threads, runtime=runtime)
        found = [i for i, shape in enumerate(self._net.output_shapes)
                 if i > 0 and len(shape) == 2 and shape[-1] > 4]
        if not found:
            raise ModelError(f"{runtime.file(self.path)} has no features output: on-device "
                             "adaptation needs a model edited by training/feature_output.py")
        self._features_output = found[0]
        self.head = head
        #: features per turn of the image being decided, when the caller asks for them to be
        #: kept (None: not kept): two heads on one image cost the passes once
        self.memo: dict[int, np.ndarray] | None = None

    def features(self, arr: np.ndarray, turns: int) -> np.ndarray:
        """Pooled features (F,) of a :func:`preprocess`-ed image turned ``turns`` times
        counter-clockwise: one network pass."""
        outputs = self._net.run(np.ascontiguousarray(np.rot90(arr, turns))[None])
        return np.array(outputs[self._features_output][0], dtype=np.float32)

    def turn_features(self, image: Image.Image) -> np.ndarray:
        """(4, F): the features of ``image`` turned 0, 1, 2, 3 times counter-clockwise (for
        an upright image, view m is an example of class m)."""
        arr = preprocess(image, self.input_size)
        return np.stack([self.features(arr, m) for m in range(4)])

    def view(self, arr: np.ndarray, turns: int) -> np.ndarray:
        if self.head is None:
            return super().view(arr, turns)
        if self.memo is None:
            features = self.features(arr, turns)
        elif turns in self.memo:
            features = self.memo[turns]
        else:
            features = self.memo[turns] = self.features(arr, turns)
        out: np.ndarray = self.head.probabilities(features)
        return out


class PersonalClassifier(AdaptiveClassifier):
    """The adaptive backend where the personal head only speaks for images the shipped head
    would send to review and that lie inside its support: the shipped cascade decides first,
    and what it is sure of (at least ``shipped_threshold``) it decides exactly as without
    adaptation; an unsure image whose 4 turns lie outside ``personal.support`` keeps the
    shipped answer too, so pictures unlike the user's labels lose nothing. The turns' features
    are those the shipped cascade computed: all 4 when it escalated, else the other 3 are
    computed here (3 passes, only for an image the shipped head is unsure of; the personal
    cascade then reuses them). Inside, the cascade runs again with the personal head on
    the same features (no extra network pass), its confidence mapped onto the shipped scale
    (:meth:`PersonalHead.on_shipped_scale`). The ``personal`` cue says which head decided;
    the ``support`` cue is the image's distance to the support over its radius (> 1: outside),
    on the images the shipped head is unsure of."""

    def __init__(self, scene: FeatureScene, personal: PersonalHead, shipped: Head,
                 **cues: Any) -> None:
        super().__init__(scene, cues.get("faces"), text=cues.get("text"))
        self.feature_scene = scene
        self.personal = personal
        self.shipped = shipped

    def predict(self, image: Image.Image) -> Prediction:
        scene = self.feature_scene
        scene.memo = {}
        try:
            scene.head = self.shipped
            first = super().predict(image)
            if first.confidence >= self.personal.shipped_threshold:
                return replace(first, cues=(*first.cues, ("personal", 0.0)))
            memo = scene.memo
            if len(memo) < 4:
                arr = preprocess(image, scene.input_size)
                for m in range(4):
                    if m not in memo:
                        memo[m] = scene.features(arr, m)
            support = self.personal.support
            turns = np.stack([memo[m] for m in range(4)])
            where = float(support.photo_distance(turns)) / max(support.radius, 1e-12)
            if where > 1.0:
                return replace(first, cues=(*first.cues, ("personal", 0.0), ("support", where)))
            scene.head = self.personal.head
            second = super().predict(image)
        finally:
            scene.memo = None
        return replace(second, confidence=self.personal.on_shipped_scale(second.confidence),
                       cues=(*second.cues, ("personal", 1.0), ("support", where)))


def calibration_mismatch(personal: PersonalHead, meta: ModelMeta) -> str | None:
    """Why ``personal`` does not fit the scene model's sidecar ``meta``: it was fitted for
    another adaptive review threshold (``shipped_threshold`` against the sidecar's
    ``cascade_min_confidence``: a sidecar of another release, with other fusion weights, on
    which its guardrail was never measured, and onto whose threshold its confidences would be
    mapped wrongly), or None when they agree."""
    now = meta.threshold("cascade")
    if abs(personal.shipped_threshold - now) > 1e-9:
        return (f"fitted for another calibration of the scene model: review threshold "
                f"{personal.shipped_threshold:g}, now {now:g}")
    return None


def load_personal(model_path: Path | None, threads: int, personal: PersonalHead,
                  runtime: Runtime = LITERT) -> PersonalClassifier:
    """Every cue, as ``litert-adaptive``, with ``personal``'s scene head.

    Raises ModelError when the head was fitted for another scene model or another sidecar
    calibration (:func:`calibration_mismatch`) or its weights are not of the scene model's
    shape, or as the backend."""
    if personal.model_digest != model_digest(model_path):
        raise ModelError("the personal head was fitted for another scene model")
    scene = FeatureScene(model_path, threads, runtime=runtime)
    why = calibration_mismatch(personal, scene.meta)
    if why is not None:
        scene.close()
        raise ModelError(f"the personal head was {why}")
    shipped = shipped_head(model_path, scene.meta.temperature)
    if personal.head.weight.shape != shipped.weight.shape:
        raise ModelError(f"the personal head's weights are {personal.head.weight.shape}, "
                         f"the scene model's {shipped.weight.shape}")
    return PersonalClassifier(scene, personal, shipped,
                              faces=_faces_for(model_path, threads, runtime),
                              text=_text_for(model_path, threads, runtime))


def personal_bytes(personal: PersonalHead) -> bytes:
    """The ``.npz`` bytes of ``personal`` (written atomically by the caller)."""
    import io
    import json

    buf = io.BytesIO()
    np.savez(buf, weight=personal.head.weight, bias=personal.head.bias,
             centroids=personal.support.centroids.astype(np.float32),
             radius=np.float64(personal.support.radius),
             meta=np.frombuffer(json.dumps({
                 "threshold": personal.threshold, "shipped_threshold": personal.shipped_threshold,
                 "model_digest": personal.model_digest, "figures": personal.figures,
             }).encode(), dtype=np.uint8))
    return buf.getvalue()


def read_personal(path: Path) -> PersonalHead | None:
    """The personal head stored at ``path``, or None when there is none, it is unreadable
    (truncated, corrupt, not an ``.npz`` of :func:`personal_bytes`' shapes), or it was saved
    without a support (before the support gate existed: it must not decide ungated). The
    shipped head is used then, until the next fit writes a gated head. Never raises."""
    import io
    import json
    import zipfile
    import zlib

    try:
        raw = path.read_bytes()  # np.load of a damaged file would leave its handle open
        with np.load(io.BytesIO(raw)) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            head = Head(data["weight"].astype(np.float32), data["bias"].astype(np.float64))
            centroids = data["centroids"].astype(np.float32)
            radius = float(data["radius"])
        threshold = float(meta["threshold"])
        shipped_threshold = float(meta["shipped_threshold"])
        digest = str(meta["model_digest"])
        figures = dict(meta.get("figures", {}))
    except (OSError, KeyError, ValueError, TypeError, AttributeError, IndexError, EOFError,
            zipfile.BadZipFile, zlib.error):
        # np.load of a truncated or empty file raises BadZipFile or EOFError, a bare .npy
        # gives an array (no context manager), meta of another shape TypeError/KeyError
        return None
    if head.weight.ndim != 2 or head.bias.shape != (head.weight.shape[0],):
        return None
    if centroids.ndim != 2 or centroids.shape[1] != head.weight.shape[1] or not len(centroids):
        return None
    return PersonalHead(head, threshold, shipped_threshold, digest, Support(centroids, radius),
                        figures)


class LabelCues:
    """What the label store keeps of an upright photo: the scene network's pooled features
    and the text network's probabilities (None without a text model) of its four turns.

    Each turn is made as an untagged photo would reach the daemon: the picture turned by an
    exact transpose and re-saved as JPEG (``quality``), then read again; not a turn of the
    same decoded pixels, whose JPEG block grid would turn with them (a trace the network can
    read, which would make the held-out figures flatter than what the daemon meets).
    The text probabilities of each turn are the network's first view of it
    (``TextCue.first_view``); an escalation at run time reads its 3 extra turns from the
    centre crop instead, a difference the adaptation's simulated 4-pass answers ignore.
    8 network passes (12 for an elongated picture) and 4 JPEG round trips (~0.1 s at 384 px):
    run only while idle."""

    def __init__(self, model_path: Path | None = None, threads: int = 1,
                 quality: int = 90) -> None:
        self.scene = FeatureScene(model_path, threads)
        self.text = _text_for(model_path, threads, LITERT)
        self.quality = quality

    def __call__(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
        features, text = [], []
        for transpose in _TURNS:
            view = _jpeg_round_trip(image.transpose(transpose) if transpose is not None
                                    else image, self.quality)
            features.append(self.scene.features(preprocess(view, self.scene.input_size), 0))
            if self.text is not None:
                text.append(self.text.first_view(view))
        return np.stack(features), (np.stack(text) if self.text is not None else None)

    def close(self) -> None:
        self.scene.close()
        if self.text is not None:
            self.text.close()


# view m: the upright picture turned counter-clockwise m times (class m, np.rot90(arr, m))
_TURNS = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
          Image.Transpose.ROTATE_270)


def _jpeg_round_trip(image: Image.Image, quality: int) -> Image.Image:
    import io

    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out
