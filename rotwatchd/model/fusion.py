"""Fusion of the orientation cues into one correction and one confidence.

Cues: the scene network's calibrated probabilities (always) and the face cue's best face score
per candidate correction (when face models are installed). Fusion is log-linear: the face cue
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

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from rotwatchd.model.base import CORRECTIONS, ModelError, Prediction, default_model_dir
from rotwatchd.model.litert import LiteRTClassifier, as_probs, preprocess, tta_average

Probs = tuple[float, float, float, float]


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


def fuse(scene: Probs, faces: Probs | None, params: FusionParams = FusionParams()) -> Fused:
    """Combine scene probabilities with per-correction face scores (or None: no face cue).

    Pure function. Returns fused probabilities, the chosen correction and its confidence.
    """
    s = np.clip(np.asarray(scene, dtype=np.float64), 1e-6, 1.0)
    evidence = params.face_evidence(max(faces)) if faces is not None else 0.0
    if faces is None or evidence <= 0.0:
        p = s / s.sum()
        best = int(np.argmax(p))
        return Fused(as_probs(p), float(p[best]), CORRECTIONS[best], False, False)
    face_best = int(np.argmax(faces))
    logp = np.log(s / s.sum())
    logp[face_best] += evidence
    p = np.exp(logp - logp.max())
    p /= p.sum()
    best = int(np.argmax(p))
    scene_best = int(np.argmax(s))
    disagree = (scene_best != face_best and max(faces) >= params.face_strong
                and float(s[scene_best] / s.sum()) >= params.scene_sure)
    conf = float(p[best])
    if disagree:
        conf = min(conf, params.disagreement_cap)
    return Fused(as_probs(p), conf, CORRECTIONS[best], True, disagree)


class FusedClassifier:
    """Scene network + face cue behind the ``OrientationClassifier`` interface."""

    def __init__(self, scene: LiteRTClassifier, faces: FaceScores | None,
                 params: FusionParams = FusionParams()) -> None:
        self.scene = scene
        self.faces = faces
        self.params = params
        self.meta = scene.meta
        self.min_confidence = scene.min_confidence

    def predict(self, image: Image.Image) -> Prediction:
        scene = self.scene.probabilities(image)
        faces = self.faces.scores(image) if self.faces is not None else None
        return self._prediction(scene, faces, fuse(scene, faces, self.params))

    def _prediction(self, scene: Probs, faces: Probs | None, fused: Fused,
                    *extra: tuple[str, float]) -> Prediction:
        cues: list[tuple[str, float]] = [("scene", max(scene))]
        if faces is not None:
            cues.append(("face", max(faces)))
            cues.append(("face_correction", float(CORRECTIONS[int(np.argmax(faces))])))
        if fused.disagreement:
            cues.append(("disagreement", 1.0))
        cues.extend(extra)
        return Prediction(fused.correction, fused.confidence, fused.probabilities, tuple(cues))

    def close(self) -> None:
        self.scene.close()
        if self.faces is not None:
            self.faces.close()


def escalates(confidence: float, escalate_from: float, escalate_below: float) -> bool:
    """The adaptive backend's rule: does a one-pass confidence get the 4-pass ensemble?
    (Pure; ``training.calibrate`` simulates the cascade with the same rule.)"""
    return escalate_from <= confidence < escalate_below


class AdaptiveClassifier(FusedClassifier):
    """One scene pass + faces; the other three turns only when that is not sure enough.

    ``escalate_below`` is the one-pass review threshold (the sidecar's ``min_confidence``): an
    image the one-pass backend would turn anyway costs one pass; one it would send to review
    gets the 4-pass ensemble, unless its one-pass confidence is below ``escalate_from`` (the
    sidecar's; on validation photos the ensemble did not decide one more photo correctly from
    there), and then it goes to review after one pass. The ``passes`` cue says which happened.
    """

    def __init__(self, scene: LiteRTClassifier, faces: FaceScores | None,
                 params: FusionParams = FusionParams()) -> None:
        if scene.passes != 1:
            raise ModelError("the adaptive backend needs the one-pass scene classifier")
        super().__init__(scene, faces, params)
        self.escalate_below = scene.meta.min_confidence
        self.escalate_from = scene.meta.escalate_from
        self.min_confidence = scene.meta.threshold("cascade")

    def predict(self, image: Image.Image) -> Prediction:
        arr = preprocess(image, self.scene.input_size)
        first = self.scene.view(arr, 0)
        one_pass = as_probs(first)
        faces = self.faces.scores(image) if self.faces is not None else None
        fused = fuse(one_pass, faces, self.params)
        if not escalates(fused.confidence, self.escalate_from, self.escalate_below):
            return self._prediction(one_pass, faces, fused, ("passes", 1.0))
        views = np.stack([first, *(self.scene.view(arr, m) for m in (1, 2, 3))])
        scene = as_probs(tta_average(views))
        return self._prediction(scene, faces, fuse(scene, faces, self.params), ("passes", 4.0))


def _faces_for(model_path: Path | None, threads: int) -> FaceScores | None:
    face_dir = (Path(model_path).parent if model_path else default_model_dir()) / "faces"
    if face_dir.is_dir():
        try:
            from rotwatchd.model.faces import FaceCue

            return FaceCue(face_dir, threads=threads)
        except ModelError:
            return None
    return None


def load_fused(model_path: Path | None, threads: int, passes: int = 1) -> FusedClassifier:
    """Scene model plus the face cue when ``<model dir>/faces`` holds its detectors.

    Raises ModelError when the scene model is unusable; a missing face model only removes
    that cue (the scene network alone still answers, with its own calibrated confidence).
    """
    scene = LiteRTClassifier(model_path, threads, passes)
    return FusedClassifier(scene, _faces_for(model_path, threads))


def load_adaptive(model_path: Path | None, threads: int) -> AdaptiveClassifier:
    """Every cue; the 4-pass ensemble only for images one pass is unsure of."""
    scene = LiteRTClassifier(model_path, threads)
    return AdaptiveClassifier(scene, _faces_for(model_path, threads))


def load_scene_only(model_path: Path | None, threads: int) -> LiteRTClassifier:
    return LiteRTClassifier(model_path, threads)


def load_fused_tta(model_path: Path | None, threads: int) -> FusedClassifier:
    """Every cue, the scene network run on all 4 turns (~4x its time, more accurate)."""
    return load_fused(model_path, threads, passes=4)


__all__ = ["AdaptiveClassifier", "FusedClassifier", "FusionParams", "escalates", "fuse",
           "load_adaptive", "load_fused", "load_fused_tta", "load_scene_only"]


def _register() -> None:
    from rotwatchd.model.registry import register_backend

    # "litert-adaptive" (first registered -> the "auto" choice): every cue, 4 passes only when
    # one is unsure; "litert": every cue, always one pass (fixed cost); "litert-scene": network
    # only; "litert-tta": every cue, always the 4-pass ensemble (servers, where time is cheap).
    register_backend("litert-adaptive", load_adaptive, threshold="cascade")
    register_backend("litert", load_fused)
    register_backend("litert-scene", load_scene_only)
    register_backend("litert-tta", load_fused_tta, threshold="tta")


_register()
