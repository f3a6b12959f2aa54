"""Fusion of the orientation cues into one correction and one confidence.

Cues: the scene network's calibrated probabilities (always), the text network's probabilities
(``rotwatchd/model/text.py``, when its model is installed) and the face cue's best face score
per candidate correction (when face models are installed). Fusion is log-linear: the scene
and text log-probabilities are weighted (``scene_weight``, ``text_weight``: a weighted
product of experts, so where the two networks disagree the fused confidence drops) with
weights chosen on the realistic validation photos by ``training/calibrate.py`` and read from
the model's sidecar; a weight below 1 also tempers a network that is over-confident on
pictures unlike its training data. A gate gives the text network its own, larger weight where
it is sure of itself (top probability at least ``text_gate``): there it is reading text, while
on pictures without text its answer is weak evidence. The face cue
votes for its best correction with a log-evidence that grows with its best score, in the bands
the face cue's own measurements support (faces helper, .coord/faces-ready: below 0.7 it is
noise, 0.7-0.8 a tie-breaker, 0.8-0.9 ~97 % right, >= 0.9 no error seen). Where the cues
contradict each other (a strong face and a sure scene network pointing different ways) the
confidence is capped below any sensible review threshold, so the image goes to review instead
of being turned wrongly.

``AdaptiveClassifier`` (backend ``litert-adaptive``, the default) spends the 4-pass ensemble's
time only where it can change the outcome: one scene pass and the face cue; if their fused
confidence is below the one-pass review threshold but not hopelessly low (``escalate_from``),
the network also runs on the other three turns of the same preprocessed image and the
ensemble's belief is fused instead. Its review threshold (``cascade_min_confidence``) and
``escalate_from`` are calibrated on validation photos for the cascade as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
from PIL import Image

from rotwatchd.model.base import CORRECTIONS, ModelError, Prediction, default_model_dir
from rotwatchd.model.network import LITERT, Runtime
from rotwatchd.model.scene import SceneClassifier, as_probs, belief, preprocess, tta_average
from rotwatchd.model.sidecar import ModelMeta
from rotwatchd.model.text import TEXT_MODEL, TextCrops, TextCue

Probs = tuple[float, float, float, float]
C = TypeVar("C")


class FaceScores(Protocol):
    def scores(self, image: Image.Image) -> Probs: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class FusionParams:
    # (lowest best face score, log-evidence added to the face's best correction), ascending
    face_bands: tuple[tuple[float, float], ...] = ((0.7, 1.0), (0.8, 3.0), (0.9, 6.0))
    face_strong: float = 0.8  # from here a contradiction with a sure scene means review
    scene_sure: float = 0.6  # scene probability at which a contradiction counts as one
    disagreement_cap: float = 0.35  # confidence ceiling when scene and faces contradict
    scene_weight: float = 1.0  # exponent of the scene probabilities in the product
    text_weight: float = 0.0  # exponent of the text probabilities (0: text cue unused)
    # the gate: from this top text probability on, the text network reads real text (on
    # pictures without text it is rarely that sure) and gets text_weight_sure instead
    text_gate: float = 0.9
    text_weight_sure: float | None = None  # None: the same as text_weight (no gate)

    def text_exponent(self, text: Probs) -> float:
        """The weight of the text probabilities for this text belief (the gate)."""
        if self.text_weight_sure is not None and max(text) >= self.text_gate:
            return self.text_weight_sure
        return self.text_weight

    def face_evidence(self, best: float) -> float:
        weight = 0.0
        for lowest, evidence in self.face_bands:
            if best >= lowest:
                weight = evidence
        return weight


@dataclass(frozen=True)
class Fused:
    probabilities: Probs
    confidence: float
    correction: int
    face_used: bool
    disagreement: bool


def _log_probs(p: Probs) -> np.ndarray:
    a = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1.0)
    out: np.ndarray = np.log(a / a.sum())
    return out


def _normalised(logp: np.ndarray) -> np.ndarray:
    p = np.exp(logp - logp.max())
    out: np.ndarray = p / p.sum()
    return out


def fuse(scene: Probs, faces: Probs | None, params: FusionParams = FusionParams(),
         text: Probs | None = None) -> Fused:
    """Combine scene probabilities with per-correction face scores (or None: no face cue) and
    the text network's probabilities (or None: no text cue).

    Pure function. Returns fused probabilities, the chosen correction and its confidence.
    With ``scene_weight`` 1 and no text cue, the scene probabilities pass unchanged.
    """
    s = np.clip(np.asarray(scene, dtype=np.float64), 1e-6, 1.0)
    logp = params.scene_weight * _log_probs(scene)
    if text is not None:
        logp = logp + params.text_exponent(text) * _log_probs(text)
    evidence = params.face_evidence(max(faces)) if faces is not None else 0.0
    if faces is None or evidence <= 0.0:
        p = _normalised(logp)
        best = int(np.argmax(p))
        return Fused(as_probs(p), float(p[best]), CORRECTIONS[best], False, False)
    face_best = int(np.argmax(faces))
    logp[face_best] += evidence
    p = _normalised(logp)
    best = int(np.argmax(p))
    scene_best = int(np.argmax(s))
    disagree = (scene_best != face_best and max(faces) >= params.face_strong
                and float(s[scene_best] / s.sum()) >= params.scene_sure)
    conf = float(p[best])
    if disagree:
        conf = min(conf, params.disagreement_cap)
    return Fused(as_probs(p), conf, CORRECTIONS[best], True, disagree)


class TextScores(Protocol):
    def view(self, arr: np.ndarray, turns: int) -> np.ndarray: ...

    def first_view(self, image: Image.Image | TextCrops) -> np.ndarray: ...

    def views(self, image: Image.Image, passes: int | None = None) -> np.ndarray: ...

    def close(self) -> None: ...


def weights(meta: ModelMeta, passes: int, base: FusionParams = FusionParams()) -> FusionParams:
    """The fusion weights calibrated for ``passes`` (1, or 4 for the ensemble) in the sidecar."""
    if passes == 4:
        return replace(base, scene_weight=meta.tta_scene_weight, text_weight=meta.tta_text_weight,
                       text_gate=meta.text_gate, text_weight_sure=meta.tta_text_weight_sure)
    return replace(base, scene_weight=meta.scene_weight, text_weight=meta.text_weight,
                   text_gate=meta.text_gate, text_weight_sure=meta.text_weight_sure)


class FusedClassifier:
    """Scene network + text and face cues behind the ``OrientationClassifier`` interface.

    The text cue runs as many passes as the scene network (1, or 4 for ``litert-tta``); its
    weight in the fusion comes from the scene model's sidecar for that number of passes.
    """

    def __init__(self, scene: SceneClassifier, faces: FaceScores | None,
                 params: FusionParams = FusionParams(), text: TextScores | None = None) -> None:
        self.scene = scene
        self.faces = faces
        self.text = text
        self.meta = scene.meta
        self.params = weights(scene.meta, scene.passes, params)
        self.min_confidence = scene.min_confidence

    def predict(self, image: Image.Image) -> Prediction:
        scene = self.scene.probabilities(image)
        faces = self.faces.scores(image) if self.faces is not None else None
        text = (as_probs(belief(self.text.views(image, self.scene.passes)))
                if self.text is not None else None)
        return self._prediction(scene, faces, text, fuse(scene, faces, self.params, text))

    def _prediction(self, scene: Probs, faces: Probs | None, text: Probs | None, fused: Fused,
                    *extra: tuple[str, float]) -> Prediction:
        cues: list[tuple[str, float]] = [("scene", max(scene))]
        if faces is not None:
            cues.append(("face", max(faces)))
            cues.append(("face_correction", float(CORRECTIONS[int(np.argmax(faces))])))
        if text is not None:
            cues.append(("text", max(text)))
            cues.append(("text_correction", float(CORRECTIONS[int(np.argmax(text))])))
        if fused.disagreement:
            cues.append(("disagreement", 1.0))
        cues.extend(extra)
        return Prediction(fused.correction, fused.confidence, fused.probabilities, tuple(cues))

    def close(self) -> None:
        self.scene.close()
        for cue in (self.faces, self.text):
            if cue is not None:
                cue.close()


def escalates(confidence: float, escalate_from: float, escalate_below: float) -> bool:
    """The adaptive backend's rule: does a one-pass confidence get the 4-pass ensemble?
    (Pure; ``training.calibrate`` simulates the cascade with the same rule.)"""
    return escalate_from <= confidence < escalate_below


def skips_text(confidence: float, escalate_below: float) -> bool:
    """The adaptive backend's shortcut: the scene network and the face cue alone are sure
    (their fused one-pass confidence reaches the one-pass review threshold), so the text
    network is not run. (Pure; ``training.calibrate`` simulates it. On the pooled validation
    sets of release 8.1 the rule skipped the text network for 19 % of the cases and changed
    no decision: a text network sure of another answer on a picture the scene network is sure
    of hardly ever occurs.)"""
    return confidence >= escalate_below


class AdaptiveClassifier(FusedClassifier):
    """One pass of each network + faces; the other three turns only when that is not sure.

    ``escalate_below`` is the one-pass review threshold (the sidecar's ``min_confidence``): an
    image whose scene network and faces alone reach it costs one scene pass (no text network,
    :func:`skips_text`); one the one-pass backend would turn anyway costs one pass of each
    network; one it would send to review gets the 4-pass ensemble of the scene and text
    networks (fused with the 4-pass weights),
    unless its one-pass confidence is below ``escalate_from`` (the sidecar's; from there the
    ensemble hardly ever becomes sure), and then it goes to review after one pass. The
    ``passes`` cue says which happened. ``skip_text_from`` is where the first pass skips the
    text network: ``escalate_below``, or a stricter review threshold in use
    (:func:`with_review_threshold`), so that no picture the text network could lift over that
    threshold goes to review without it.
    """

    def __init__(self, scene: SceneClassifier, faces: FaceScores | None,
                 params: FusionParams = FusionParams(), text: TextScores | None = None) -> None:
        if scene.passes != 1:
            raise ModelError("the adaptive backend needs the one-pass scene classifier")
        super().__init__(scene, faces, params, text)
        self.params_tta = weights(scene.meta, 4, params)
        self.escalate_below = scene.meta.min_confidence
        self.skip_text_from = self.escalate_below
        self.escalate_from = scene.meta.escalate_from
        self.min_confidence = scene.meta.threshold("cascade")

    def predict(self, image: Image.Image) -> Prediction:
        arr = preprocess(image, self.scene.input_size)
        first = self.scene.view(arr, 0)
        one_pass = as_probs(first)
        faces = self.faces.scores(image) if self.faces is not None else None
        fused = fuse(one_pass, faces, self.params)
        if skips_text(fused.confidence, self.skip_text_from):
            return self._prediction(one_pass, faces, None, fused, ("passes", 1.0))
        crops = TextCrops(image)
        text_first = self.text.first_view(crops) if self.text is not None else None
        text = as_probs(text_first) if text_first is not None else None
        if text is not None:
            fused = fuse(one_pass, faces, self.params, text)
        if not escalates(fused.confidence, self.escalate_from, self.escalate_below):
            return self._prediction(one_pass, faces, text, fused, ("passes", 1.0))
        views = np.stack([first, *(self.scene.view(arr, m) for m in (1, 2, 3))])
        scene = as_probs(tta_average(views))
        if self.text is not None and text_first is not None:
            text = as_probs(tta_average(np.stack(
                [text_first, *(self.text.view(crops.centre, m) for m in (1, 2, 3))])))
        return self._prediction(scene, faces, text, fuse(scene, faces, self.params_tta, text),
                                ("passes", 4.0))


def with_review_threshold(classifier: C, min_confidence: float | None) -> C:
    """``classifier``, told the review threshold in use (``model.min_confidence``; None: the
    calibrated one): an adaptive one then skips the text network only from the stricter of
    that threshold and its one-pass threshold (a picture the scene network and faces put just
    under a stricter threshold may be lifted over it by the text network). Other classifiers
    are returned unchanged."""
    if isinstance(classifier, AdaptiveClassifier) and min_confidence is not None:
        classifier.skip_text_from = max(classifier.escalate_below, min_confidence)
    return classifier


def _cue_dir(model_path: Path | None) -> Path:
    return Path(model_path).parent if model_path else default_model_dir()


def _faces_for(model_path: Path | None, threads: int, runtime: Runtime) -> FaceScores | None:
    face_dir = _cue_dir(model_path) / "faces"
    if face_dir.is_dir():
        try:
            from rotwatchd.model.faces import FaceCue

            return FaceCue(face_dir, threads=threads, runtime=runtime)
        except ModelError:
            return None
    return None


def _text_for(model_path: Path | None, threads: int, runtime: Runtime) -> TextCue | None:
    """The text cue when ``<model dir>/text/text.tflite`` (``.onnx`` for ONNX Runtime) exists
    and loads, else None."""
    path = _cue_dir(model_path) / TEXT_MODEL
    return TextCue(path, threads, runtime=runtime) if runtime.file(path).is_file() else None


def load_fused(model_path: Path | None, threads: int, runtime: Runtime = LITERT,
               passes: int = 1) -> FusedClassifier:
    """Scene model plus the text and face cues found next to it (``text/``, ``faces/``).

    Raises ModelError when the scene model (or a present text model) is unusable; a missing
    cue model only removes that cue (the weights for the others stay as calibrated).
    """
    scene = SceneClassifier(model_path, threads, passes, runtime)
    return FusedClassifier(scene, _faces_for(model_path, threads, runtime),
                           text=_text_for(model_path, threads, runtime))


def load_adaptive(model_path: Path | None, threads: int,
                  runtime: Runtime = LITERT) -> AdaptiveClassifier:
    """Every cue; the 4-pass ensembles only for images one pass is unsure of."""
    scene = SceneClassifier(model_path, threads, runtime=runtime)
    return AdaptiveClassifier(scene, _faces_for(model_path, threads, runtime),
                              text=_text_for(model_path, threads, runtime))


def load_scene_only(model_path: Path | None, threads: int,
                    runtime: Runtime = LITERT) -> SceneClassifier:
    return SceneClassifier(model_path, threads, runtime=runtime)


def load_fused_tta(model_path: Path | None, threads: int,
                   runtime: Runtime = LITERT) -> FusedClassifier:
    """Every cue, the scene and text networks run on all 4 turns (~4x the time)."""
    return load_fused(model_path, threads, runtime, passes=4)


__all__ = ["AdaptiveClassifier", "FusedClassifier", "FusionParams", "escalates", "fuse",
           "skips_text", "with_review_threshold",
           "load_adaptive", "load_fused", "load_fused_tta", "load_scene_only"]
