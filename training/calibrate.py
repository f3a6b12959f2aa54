"""Fit the temperature, the fusion weights and the review thresholds on validation only.

    python -m training.calibrate models/orientation.tflite --val DIR [--val DIR2 ...]

``DIR`` is the realistic validation set: upright images in one folder per kind (people, pets,
indoor, street, landscape, food and objects, documents, screenshots, old photos), or a flat
folder with a ``MANIFEST.json`` list of ``{"file", "kind"}`` rows; files listed in
``models/validation-excluded.txt`` (mislabelled: stored turned although listed as upright)
are skipped; several ``--val`` sets are pooled into one (under 200 images in all, one warning
line on stderr says a 1 % risk target means little there; calibration still runs). Never the
test sources. Each image is scaled to the daemon's model input side, turned 4 ways and JPEG
re-saved ``--draws`` times at random quality 75-95, exactly as ``rotwatchd eval`` does; on each
decoded case the scene network runs on the 4 turns, the text network on its first view and
the 3 other turns of its centre crop (``TextCue.views``), the face cue once (``cue_table``).
From that one table:

1. the softmax temperature of the scene network (minimum negative log-likelihood, one pass);
2. the fusion weights (``fusion.fuse``: exponents of the scene and text probabilities, and the
   text exponent past the gate, where the text network's top probability is at least 0.9, a
   value fixed beforehand), one set for one pass and one for the 4-pass ensemble, each the set
   on a small grid whose fused answers decide the most cases correctly at ``--target-risk``
   (the one-pass set: whose adaptive cascade does);
3. the review thresholds: the lowest confidence at which at most ``--target-risk`` of the
   decided cases are wrong, for one pass (``min_confidence``, where the adaptive backend's
   first pass also skips the text network when the scene and face cues alone reach it), the
   4-pass ensemble (``tta_min_confidence``) and the adaptive cascade
   (``cascade_min_confidence`` with its ``escalate_from``, the highest floor that loses no
   decided case nor a right answer, limited so that at most ``--max-escalated`` (half) of the
   cases pay for the ensemble: the median image stays one pass).

All go into the model's JSON sidecar, which the runtime reads.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from rotwatchd.evaluation.accuracy import Case, resave, risk_coverage, turned, upright_images
from rotwatchd.model.base import CORRECTIONS, ModelError
from rotwatchd.model.fusion import (
    FusionParams,
    _faces_for,
    _text_for,
    escalates,
    fuse,
    skips_text,
)
from rotwatchd.model.network import LITERT
from rotwatchd.model.scene import SceneClassifier, as_probs, belief, preprocess, softmax
from rotwatchd.service.processor import MODEL_INPUT_SIDE
from training.augment import SERVE_SIZE
from training.sources import ROOT

VAL = ROOT / "data" / "validation"
EXCLUDED = ROOT / "models" / "validation-excluded.txt"
WEIGHT_GRID = (0.5, 0.75, 1.0, 1.25)
TEXT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5)
SURE_GRID = (None, 1.0, 1.5, 2.0, 3.0, 4.0)  # text weight past the gate (None: no gate)
TEXT_GATE = 0.9  # fixed beforehand, not searched: "the text network is sure of itself"
#: Fewer pooled validation images than this draw a warning: a 1 % risk target is then a
#: handful of wrong decisions, and one image more or less moves the thresholds.
FEW_IMAGES = 200


def _text_pairs(table: CueTable) -> list[tuple[float, float | None]]:
    """(text weight, text weight past the gate) pairs worth trying for this table."""
    if not table.text.any():
        return [(0.0, None)]
    return [(b, sure) for b in TEXT_GRID for sure in SURE_GRID if sure is None or sure > b]


def _kind(folder: str) -> str:
    """A kind folder's name without its plural: sets name them ``document`` or ``documents``."""
    return folder.removesuffix("s")


def excluded_names() -> set[str]:
    """File names dropped from validation (first word of each non-comment line)."""
    if not EXCLUDED.is_file():
        return set()
    return {line.split()[0] for line in EXCLUDED.read_text().splitlines()
            if line.strip() and not line.startswith("#")}


def validation_images(folder: Path) -> list[tuple[str, Path]]:
    """(kind, path) of every validation image, from kind folders or a MANIFEST.json.

    Raises SystemExit naming the folder when it holds no image (a mistyped ``--val`` would
    otherwise calibrate on the other sets alone, silently)."""
    manifest = folder / "MANIFEST.json"
    skip = excluded_names()
    if manifest.is_file():
        rows = json.loads(manifest.read_text())
        found = [(r["kind"], folder / r["file"]) for r in rows]
    else:
        found = upright_images(folder)
    images = [(k, p) for k, p in found if p.name not in skip]
    if not images:
        raise SystemExit(f"{folder}: no validation images there")
    return images


def few_images_warning(images: int, target_risk: float) -> str | None:
    """One warning line when ``images`` (the pooled validation set's upright images) are
    fewer than FEW_IMAGES, else None."""
    if images >= FEW_IMAGES:
        return None
    return (f"warning: only {images} validation images (fewer than {FEW_IMAGES}): a "
            f"{target_risk:.0%} risk target means little on so few, the thresholds "
            "written are not to be trusted")


@dataclass
class CueTable:
    """Every cue's raw output per validation case (one row per case)."""

    group: np.ndarray  # (N,) kind
    name: np.ndarray  # (N,) file name
    truth: np.ndarray  # (N,) index into CORRECTIONS
    scene_logits: np.ndarray  # (N, 4 turns, 4)
    text: np.ndarray  # (N, 4 turns, 4) probabilities, zeros without a text model
    faces: np.ndarray  # (N, 4) face scores, -1 without face models


def cue_table(model: Path, images: list[tuple[str, Path]], draws: int, seed: int = 3,
              max_side: int = MODEL_INPUT_SIDE) -> CueTable:
    """Run every cue on every case (see the module docstring)."""
    scene = SceneClassifier(model, threads=1)
    faces = _faces_for(model, 1, LITERT)
    text = _text_for(model, 1, LITERT)
    rows: dict[str, list[object]] = {k: [] for k in CueTable.__dataclass_fields__}
    try:
        for draw in range(draws):
            rng = random.Random(seed + draw)
            for group, path in images:
                try:
                    with Image.open(path) as raw:
                        im = ImageOps.exif_transpose(raw).convert("RGB")
                except (OSError, ValueError) as exc:  # a damaged file: say which
                    raise ValueError(f"{path}: {exc}") from exc
                if max(im.size) > max_side:  # as the daemon's load_upright(max_side=...)
                    im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
                for k, corr in enumerate(CORRECTIONS):
                    case = resave(turned(im, corr), "jpeg", rng.randint(75, 95)).convert("RGB")
                    arr = preprocess(case, scene.input_size)
                    rows["scene_logits"].append(np.stack([scene._run(np.rot90(arr, m))
                                                          for m in range(4)]))
                    rows["text"].append(text.views(case, 4) if text is not None
                                        else np.zeros((4, 4)))
                    rows["faces"].append(np.array(faces.scores(case)) if faces is not None
                                         else -np.ones(4))
                    rows["group"].append(group)
                    rows["name"].append(path.name)
                    rows["truth"].append(k)
    finally:
        scene.close()
        for cue in (faces, text):
            if cue is not None:
                cue.close()
    return CueTable(**{k: np.array(v) for k, v in rows.items()})


def fit_temperature(z: np.ndarray, y: np.ndarray) -> float:
    best_t, best_nll = 1.0, float("inf")
    for t in np.exp(np.linspace(np.log(0.3), np.log(5.0), 80)):
        nll = -float(np.mean([np.log(softmax(zi, float(t))[yi] + 1e-12)
                              for zi, yi in zip(z, y, strict=True)]))
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


def fused_cases(table: CueTable, temperature: float, passes: int, scene_weight: float,
                text_weight: float, text_weight_sure: float | None = None,
                skip_text_from: float | None = None) -> list[Case]:
    """What the fused classifier answers on every case for these weights (``fusion.fuse``);
    with ``skip_text_from`` (one pass only), as the adaptive backend's first pass does: a case
    whose scene and face cues alone reach that confidence is fused without the text cue
    (``fusion.skips_text``)."""
    params = FusionParams(scene_weight=scene_weight, text_weight=text_weight,
                          text_gate=TEXT_GATE, text_weight_sure=text_weight_sure)
    out = []
    for i in range(len(table.truth)):
        views = np.stack([softmax(z, temperature) for z in table.scene_logits[i][:passes]])
        scene = belief(views)
        text = belief(table.text[i][:passes]) if table.text[i].any() else None
        faces = as_probs(table.faces[i]) if table.faces[i][0] >= 0 else None
        f = fuse(as_probs(scene), faces, params)
        if text is not None and (skip_text_from is None
                                 or not skips_text(f.confidence, skip_text_from)):
            f = fuse(as_probs(scene), faces, params, as_probs(text))
        out.append(Case(str(table.group[i]), CORRECTIONS[int(table.truth[i])], f.correction,
                        f.confidence, str(table.name[i])))
    return out


def decided_correctly(cases: list[Case], target_risk: float) -> tuple[float, float]:
    """(threshold by :func:`pick_threshold`, share of all cases decided correctly there);
    the share is -1 when no threshold of the grid keeps the risk within ``target_risk``."""
    threshold, rows = pick_threshold(cases, target_risk)
    return threshold, _score_at(rows, threshold, target_risk)


def _score_at(rows: list[dict[str, float]], threshold: float, target_risk: float) -> float:
    """Share decided correctly at ``threshold``; -1 when the risk there exceeds the target
    (:func:`pick_threshold` fell back to a threshold no grid value satisfies)."""
    at = next(r for r in rows if r["threshold"] == threshold)
    return at["decided_correct"] if at["risk"] <= target_risk and at["coverage"] > 0 else -1.0


Weights = tuple[float, float, float | None]  # scene, text, text past the gate


def pick_weights(table: CueTable, temperature: float, passes: int, target_risk: float
                 ) -> tuple[Weights, list[Case]]:
    """(weights, their cases): the grid weights deciding the most validation cases correctly
    at ``target_risk``; ties go to those listed first (lower weights, no gate)."""
    best: tuple[float, Weights, list[Case]] | None = None
    for a in WEIGHT_GRID:
        for b, sure in _text_pairs(table):
            cases = fused_cases(table, temperature, passes, a, b, sure)
            score = decided_correctly(cases, target_risk)[1]
            if best is None or score > best[0]:
                best = (score, (a, b, sure), cases)
    assert best is not None
    return best[1], best[2]


def pick_one_pass_weights(table: CueTable, temperature: float, four: list[Case],
                          target_risk: float, max_escalated: float
                          ) -> tuple[Weights, list[Case]]:
    """(weights, their one-pass cases) for the adaptive default backend: the grid weights whose
    cascade (one pass, the 4-pass ``four`` cases where it escalates) decides the
    most validation cases correctly at ``target_risk``; among equals, the one escalating least.
    The one-pass answer matters twice there: it decides the sure images and picks which
    images pay for the ensemble."""
    best: tuple[tuple[float, float], Weights, list[Case]] | None = None
    for a in WEIGHT_GRID:
        for b, sure in _text_pairs(table):
            one, below = first_pass_cases(table, temperature, (a, b, sure), target_risk)
            floor, threshold, _r = pick_escalation(one, four, below, target_risk, max_escalated)
            cases = cascade(one, four, below, floor)
            score = decided_correctly(cases, target_risk)[1]
            share = sum(escalates(c.confidence, floor, below) for c in one) / len(one)
            key = (score, -share)
            if best is None or key > best[0]:
                best = (key, (a, b, sure), one)
    assert best is not None
    return best[1], best[2]


def first_pass_cases(table: CueTable, temperature: float, w: Weights, target_risk: float
                     ) -> tuple[list[Case], float]:
    """(cases, one-pass threshold) of the adaptive backend's first pass with weights ``w``:
    its threshold is also where it skips the text cue (``fusion.skips_text``), so the two are
    found together: threshold of the cases with the text cue, then of the cases skipping it
    from there, until the threshold stays put (it moves at most once or twice: the skip
    changes hardly any case)."""
    below = pick_threshold(fused_cases(table, temperature, 1, *w), target_risk)[0]
    for _ in range(5):
        one = fused_cases(table, temperature, 1, *w, skip_text_from=below)
        again = pick_threshold(one, target_risk)[0]
        if again == below:
            break
        below = again
    return one, below


def cascade(one: list[Case], four: list[Case], escalate_below: float,
            escalate_from: float = 0.0) -> list[Case]:
    """What ``AdaptiveClassifier`` answers: the one-pass case unless its confidence is in
    [``escalate_from``, ``escalate_below``), then the 4-pass case."""
    return [b if escalates(a.confidence, escalate_from, escalate_below) else a
            for a, b in zip(one, four, strict=True)]


def pick_escalation(one: list[Case], four: list[Case], escalate_below: float,
                    target_risk: float, max_escalated: float = 1.0
                    ) -> tuple[float, float, list[dict[str, float]]]:
    """(escalate_from, cascade threshold, its rows): the highest floor on a 0.05 grid below
    which escalating wins nothing, i.e. whose cascade, at its own threshold, decides as many
    validation cases correctly as escalating every unsure case, *and* answers as many right at
    all (raw accuracy: a picture sent to review is shown the cascade's guess, and the ensemble
    turns many one-pass guesses under 0.4 right without making them sure); each floor's cascade
    gets its own threshold by :func:`pick_threshold`. Floors that would escalate more than
    ``max_escalated`` of the cases are not considered (the lowest allowed one is the start)."""

    def scored(floor: float) -> tuple[tuple[float, int], float, list[dict[str, float]]]:
        cases = cascade(one, four, escalate_below, floor)
        threshold, rows = pick_threshold(cases, target_risk)
        raw = sum(c.truth == c.predicted for c in cases)
        return (_score_at(rows, threshold, target_risk), raw), threshold, rows

    def share(floor: float) -> float:
        return sum(escalates(c.confidence, floor, escalate_below) for c in one) / len(one)

    floors = [round(float(f), 2) for f in np.arange(0.0, escalate_below, 0.05)]
    allowed = [f for f in floors if share(f) <= max_escalated] or [escalate_below]
    chosen = allowed[0]
    (best, best_raw), threshold, rows = scored(chosen)
    for floor in allowed[1:]:
        (right, raw), thr, r = scored(floor)
        if right >= best and raw >= best_raw:
            chosen, threshold, rows = floor, thr, r
    return chosen, threshold, rows


# 0.005 steps, then finer towards 1 where the fused confidences of two networks crowd
THRESHOLD_GRID = ([round(float(t), 3) for t in np.arange(0.3, 0.996, 0.005)]
                  + [round(1.0 - float(e), 5) for e in np.geomspace(4e-3, 1e-5, 16)])


def pick_threshold(cases: list[Case], target_risk: float
                   ) -> tuple[float, list[dict[str, float]]]:
    """Lowest threshold whose risk on these validation cases is at most ``target_risk``."""
    rows = [r.__dict__ for r in risk_coverage(cases, THRESHOLD_GRID)]
    ok = [r for r in rows if r["risk"] <= target_risk and r["coverage"] > 0]
    chosen = ok[0]["threshold"] if ok else 0.99
    return chosen, rows


def share_arg(text: str) -> float:
    """An argparse type: a share of the validation cases, 0..1 (``"0.5"`` -> 0.5). Raises
    argparse.ArgumentTypeError otherwise: ``--max-escalated 50`` meant as a percent would
    silently lift the latency budget."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # NaN too
        raise argparse.ArgumentTypeError(f"{text!r} is not a share between 0 and 1 (0.5 = half)")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model", type=Path)
    p.add_argument("--val", type=Path, action="append",
                   help=f"realistic validation set (default {VAL}); repeat to pool several")
    p.add_argument("--size", type=int, default=SERVE_SIZE)
    p.add_argument("--target-risk", type=share_arg, default=0.01,
                   help="most decided cases that may be wrong, a share (default 0.01 = 1 %%)")
    p.add_argument("--draws", type=int, default=2, help="JPEG re-save draws pooled per image")
    p.add_argument("--max-escalated", type=share_arg, default=0.5,
                   help="most validation cases the adaptive backend may escalate to 4 passes, "
                        "a share (latency budget; default 0.5 = half)")
    p.add_argument("--table", type=Path, default=None,
                   help="cache of the cue table (.npz): read if it exists, else written")
    a = p.parse_args(argv)
    if not a.model.is_file():
        raise SystemExit(f"{a.model}: no such model file")
    sidecar = a.model.with_suffix(".json")
    images = [image for folder in (a.val or [VAL]) for image in validation_images(folder)]
    warning = few_images_warning(len(images), a.target_risk)
    if warning is not None:
        print(warning, file=sys.stderr)
    if a.table is not None and a.table.is_file():
        with np.load(a.table) as z:
            table = CueTable(**{k: z[k] for k in CueTable.__dataclass_fields__})
    else:
        before = sidecar.read_bytes() if sidecar.is_file() else None
        sidecar.write_text(json.dumps({"input_size": a.size, "temperature": 1.0}))
        try:
            table = cue_table(a.model, images, a.draws)
        except BaseException as exc:  # Ctrl-C too: never leave the stub behind
            if before is None:
                sidecar.unlink(missing_ok=True)
            else:
                sidecar.write_bytes(before)
            if isinstance(exc, ModelError | OSError | ValueError):
                raise SystemExit(f"calibration stopped, {sidecar} left as it was: "
                                 f"{exc}") from None
            raise
        if a.table is not None:
            np.savez(a.table, **table.__dict__)
    temp = fit_temperature(table.scene_logits[:, 0], table.truth)
    y = table.truth
    print(f"temperature {temp:.3f} (val cases {len(y)}, one-pass raw acc "
          f"{(table.scene_logits[:, 0].argmax(1) == y).mean():.3f})")
    (w4, t4, s4), four = pick_weights(table, temp, 4, a.target_risk)
    (w1, t1, s1), one = pick_one_pass_weights(table, temp, four, a.target_risk, a.max_escalated)
    threshold, rows = pick_threshold(one, a.target_risk)
    tta_threshold, tta_rows = pick_threshold(four, a.target_risk)
    floor, cascade_threshold, cascade_rows = pick_escalation(
        one, four, threshold, a.target_risk, a.max_escalated)
    meta = {"input_size": a.size, "temperature": round(temp, 4),
            "min_confidence": threshold, "tta_min_confidence": tta_threshold,
            "cascade_min_confidence": cascade_threshold, "escalate_from": floor,
            "scene_weight": w1, "text_weight": t1, "tta_scene_weight": w4,
            "tta_text_weight": t4, "text_gate": TEXT_GATE, "text_weight_sure": s1,
            "tta_text_weight_sure": s4,
            "calibrated_on": f"realistic validation set{'s' if len(a.val or [VAL]) > 1 else ''}: "
                             f"{len(images)} upright images of "
                             f"{len({_kind(k) for k, _ in images})} kinds from public "
                             "repositories",
            "target_risk": a.target_risk, "draws": a.draws}
    sidecar.write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta))
    print("one pass at threshold:", [r for r in rows if r["threshold"] == threshold])
    print("4-pass at its threshold:", [r for r in tta_rows if r["threshold"] == tta_threshold])
    escalated = sum(escalates(c.confidence, floor, threshold) for c in one) / len(one)
    print(f"adaptive (4 passes for {escalated:.1%} of cases), at its threshold:",
          [r for r in cascade_rows if r["threshold"] == cascade_threshold])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
