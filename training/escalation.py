"""Which views should the adaptive backend add when one pass is unsure? Validation only.

    python -m training.escalation models/orientation.tflite

Every validation photo is turned 4 ways and JPEG re-saved 3 times (as ``training.calibrate``
does); for each case the network runs on the 4 turns of the decoded image and on the 4 turns of
its mirror image (a left-right flip keeps a photo's up where it was). Each candidate ensemble
is then judged alone (own threshold) and as the adaptive cascade's escalation step (escalation
floor and threshold by ``training.calibrate``'s rules), and the mirror image's single pass is
compared with the image's per source. ``--train-sample N`` makes the same one-pass comparison
on N photo-like *training* pictures (where a memorising network reads the pictures it was
trained on far better than their mirror images). Prints tables; nothing is written.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from rotwatchd.evaluation.accuracy import Case, resave, run_cases, turned, upright_images
from rotwatchd.model.base import CORRECTIONS, Prediction
from rotwatchd.model.fusion import FusedClassifier, escalates, fuse, load_fused
from rotwatchd.model.scene import SceneClassifier, as_probs, preprocess
from training.calibrate import pick_escalation, pick_threshold
from training.sources import ROOT

# the Debian validation photos this experiment was run on (release 6)
VAL_PHOTOS = ROOT / "data" / "eval" / "val-photos"

Views = tuple[np.ndarray, np.ndarray, tuple[float, float, float, float] | None]

# name -> (turns of the image, turns of its mirror image) averaged by the ensemble
CANDIDATES: dict[str, tuple[Sequence[int], Sequence[int]]] = {
    "4 turns (ships)": ((0, 1, 2, 3), ()),
    "8 views: 4 turns + their mirrors": ((0, 1, 2, 3), (0, 1, 2, 3)),
    "mirror image's 4 turns": ((), (0, 1, 2, 3)),
    "image + mirror's 4 turns": ((0,), (0, 1, 2, 3)),
    "turns 0, 90, 270 + mirror": ((0, 1, 3), (0,)),
    "image + its 180 turn": ((0, 2), ()),
    "image + mirror": ((0,), (0,)),
}


class Recorder:
    """Answers with the one-pass fused prediction and keeps every view of every case."""

    def __init__(self, fused: FusedClassifier) -> None:
        self.fused = fused
        self.views: list[Views] = []

    def predict(self, image: Image.Image) -> Prediction:
        scene = self.fused.scene
        arr = preprocess(image, scene.input_size)
        mirror = np.ascontiguousarray(np.fliplr(arr))
        turns = np.stack([scene.view(arr, m) for m in range(4)])
        mirrored = np.stack([scene.view(mirror, m) for m in range(4)])
        faces = self.fused.faces.scores(image) if self.fused.faces is not None else None
        self.views.append((turns, mirrored, faces))
        first = fuse(as_probs(turns[0]), faces, self.fused.params)
        return Prediction(first.correction, first.confidence, first.probabilities)

    def close(self) -> None:
        self.fused.close()


def belief(views: Views, turns: Sequence[int], mirrors: Sequence[int]) -> np.ndarray:
    """Average belief about the original image. View m of the image saying class j says the
    original is turned (j - m) % 4; the mirror image of an image turned c is turned -c, so its
    view m says class (m - c) % 4 for original class c."""
    image, mirrored, _faces = views
    parts = [np.roll(image[m], -m) for m in turns]
    parts += [np.array([mirrored[m][(m - c) % 4] for c in range(4)]) for m in mirrors]
    out: np.ndarray = np.mean(parts, axis=0)
    return out


def ensemble_cases(one: list[Case], views: list[Views], turns: Sequence[int],
                   mirrors: Sequence[int], fused: FusedClassifier) -> list[Case]:
    out = []
    for case, v in zip(one, views, strict=True):
        f = fuse(as_probs(belief(v, turns, mirrors)), v[2], fused.params)
        out.append(Case(case.group, case.truth, f.correction, f.confidence))
    return out


PHOTO_KINDS = ("photo", "categorization", "lang", "landscape", "wallpaper", "screenshot")


def train_mirror_table(model: Path, sample: int, seed: int = 0) -> list[str]:
    """Per kind: one-pass accuracy on training pictures turned and JPEG re-saved, as they are
    and mirrored."""
    rows = [json.loads(line) for line in (ROOT / "data" / "manifest.jsonl").open()]
    chosen = [r for r in rows if r["split"] == "train" and r["kind"] in PHOTO_KINDS]
    random.Random(seed).shuffle(chosen)
    clf = SceneClassifier(model, 1)
    rng = random.Random(seed + 1)
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in chosen[:sample]:
        with Image.open(ROOT / "data" / row["file"]) as raw:
            upright = raw.convert("RGB")
        for truth, correction in enumerate(CORRECTIONS):
            arr = preprocess(resave(turned(upright, correction), "jpeg", rng.randint(75, 95)),
                             clf.input_size)
            plain = clf.view(arr, 0)
            flipped = clf.view(np.ascontiguousarray(np.fliplr(arr)), 0)
            per[row["kind"]][0] += 1
            per[row["kind"]][1] += int(np.argmax(plain)) == truth
            per[row["kind"]][2] += int(np.argmax([flipped[-c % 4] for c in range(4)])) == truth
    clf.close()
    return [f"{kind:30s} {n:6d} {a / n:7.1%} {b / n:7.1%}"
            for kind, (n, a, b) in sorted(per.items())]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model", type=Path)
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--train-sample", type=int, default=0,
                   help="also compare image and mirror image on this many training pictures")
    a = p.parse_args(argv)
    rec = Recorder(load_fused(a.model, 1))
    images = upright_images(VAL_PHOTOS)
    try:
        one = [c for seed in range(3, 3 + a.draws)
               for c in run_cases(rec, images, "jpeg", (75, 95), 1024, seed=seed)]
    finally:
        rec.close()
    single, _rows = pick_threshold(one, 0.01)
    n = len(one)
    print(f"{'escalation ensemble':34s} {'passes':>6s} {'raw':>6s} {'alone thr':>9s} "
          f"{'alone dc':>8s} {'floor':>5s} {'thr':>6s} {'cascade dc':>10s} {'escalated':>9s}")
    for name, (turns, mirrors) in CANDIDATES.items():
        cases = ensemble_cases(one, rec.views, turns, mirrors, rec.fused)
        raw = sum(c.truth == c.predicted for c in cases) / n
        thr, rows = pick_threshold(cases, 0.01)
        alone = next(r for r in rows if r["threshold"] == thr)["decided_correct"]
        floor, cthr, crows = pick_escalation(one, cases, single, 0.01)
        dc = next(r for r in crows if r["threshold"] == cthr)["decided_correct"]
        escalated = sum(escalates(c.confidence, floor, single) for c in one) / n
        extra = len(turns) + len(mirrors) - (1 if 0 in turns else 0)
        print(f"{name:34s} {extra:6d} {raw:6.1%} {thr:9.3f} {alone:8.1%} {floor:5.2f} "
              f"{cthr:6.3f} {dc:10.1%} {escalated:9.1%}")
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for case, (image, mirrored, _faces) in zip(one, rec.views, strict=True):
        truth = CORRECTIONS.index(case.truth)
        per[case.group][0] += 1
        per[case.group][1] += int(np.argmax(image[0])) == truth
        per[case.group][2] += int(np.argmax([mirrored[0][-c % 4] for c in range(4)])) == truth
    print(f"\n{'source (scene net, one pass)':30s} {'cases':>6s} {'image':>7s} {'mirror':>7s}")
    for group, (count, plain, flipped) in sorted(per.items()):
        print(f"{group:30s} {count:6d} {plain / count:7.1%} {flipped / count:7.1%}")
    if a.train_sample:
        print(f"\n{'training pictures, by kind':30s} {'cases':>6s} {'image':>7s} {'mirror':>7s}")
        print("\n".join(train_mirror_table(a.model, a.train_sample)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
