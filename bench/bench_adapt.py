"""Benchmark on-device adaptation on simulated users (rotwatchd.adapt.fit).

Each simulated user is a library of pictures from one source: the first ``--labels`` of it
(seeded order) are the photos whose EXIF orientation told the daemon how they stand (stored as
the daemon's upright output: re-saved JPEG q90 at the model's input side, 384 px), and the
next ``--judge`` are the user's later, untagged photos: each turned 4 ways and re-saved as JPEG
(q80-95) exactly as ``rotwatchd eval`` does, then decided by the real default backend (scene,
text and face cues, adaptive cascade) before and after adaptation, each at its threshold:
the shipped calibrated one before, the personal head's recalibrated one after (the daemon's
rule). A library unlike the labels (``--unlike``: the realistic validation set) is judged with
every user's head too: it must lose nothing beyond noise.

Users (sources kept apart from the realistic validation and test sets):
  clothing     CC0 phone photos of clothes (github alexeygrigorev/clothing-dataset 7ed86a9c),
               only the ones never used in training
  signs        phone photos of hands showing sign-language digits: 2,062 photos of 218
               students' hands (github ardamavi/Sign-Language-Digits-Dataset
               4b09433e, Dataset/<digit>/*.JPG, Apache-2.0; all 100x100 px but 3 of 3024 px
               whose EXIF Orientation tag is applied); never used in training or evaluation
  xrays        a clinic's chest X-rays (front views of children, pneumonia or normal): 5,840
               radiographs of Kermany, Zhang and Goldbaum's set (Mendeley Data
               10.17632/rscbjbr9sj.2, CC-BY-4.0) as resized to 224x224 grey JPEG in github
               waliatushar/ai-pneumonia-detection 362d6d1b, dataset/{train,test}/*/*.jpeg (the
               repository adds no licence of its own); never used in training or evaluation
  knees        an orthopaedic practice's knee X-rays (front views of one knee joint each): 8,260
               radiographs of Chen's Knee Osteoarthritis Severity Grading Dataset (Mendeley
               Data 10.17632/56rmx5bjcr.1, CC-BY-4.0; from the Osteoarthritis Initiative) as
               224x224 grey PNG in github Rohan-145/KneeOA_Analysis 614e752c,
               {train,val,test}/<grade>/*.png (the repository adds no licence of its own);
               never used in training or evaluation
  documents    the Debian-built dataset's synthetic documents, test and validation splits
  screenshots  games-thumbnails (training split: the network saw these)
  stamps       tuxpaint-stamps-default (training split: the network saw these)

Reproduce (from the repo root, one core for the fit; ~3-5 min a user on 2 shared cores):
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python bench/bench_adapt.py \
      --data /path/to/data --clothing /path/to/clothing-dataset.git \
      --signs /path/to/Sign-Language-Digits-Dataset.git \
      --xrays /path/to/ai-pneumonia-detection.git --knees /path/to/KneeOA_Analysis.git
(``--users signs,screenshots`` runs only those users.)
``--personal-thresholds 0.7,0.9,0.99`` also reads each accepted head's judged passes again
as if its own threshold were each of those (report only: how a floor under the threshold the
guardrail chose would trade the user's gain against the unlike library's errors).
``--strengths 0.001,0.01,0.1`` also prints the guardrail's held-out figures per strength
(how the default was chosen); ``--report-test`` adds the project's independent test set
(report only). ``--resplit 200,10`` judges no later photos: it splits each user's *labels*
10 times into 200 first photos and the rest as later ones, decided by the guardrail's cascade
simulation (no face cue), once per ``--confidences`` level of the threshold rule's bound: how
a setting can be compared without looking at the part of a user that judges it.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rotwatchd.adapt.fit import (  # noqa: E402
    FitSettings,
    adapt,
    at_threshold,
    cascade_cases,
    fallback_cases,
)
from rotwatchd.adapt.labels import LabelSet  # noqa: E402
from rotwatchd.evaluation.accuracy import Case, accuracy, risk_coverage, run_cases  # noqa: E402
from rotwatchd.model.base import Prediction  # noqa: E402
from rotwatchd.model.fusion import load_adaptive  # noqa: E402
from rotwatchd.model.personal import (  # noqa: E402
    Head,
    LabelCues,
    PersonalClassifier,
    PersonalHead,
    load_personal,
    model_digest,
    model_path_or_default,
    shipped_head,
)
from rotwatchd.model.sidecar import ModelMeta
from rotwatchd.service.processor import MODEL_INPUT_SIDE  # noqa: E402

CLOTHING_COMMIT = "7ed86a9c"
SIGNS_COMMIT = "4b09433e"
XRAYS_COMMIT = "362d6d1b"
KNEES_COMMIT = "614e752c"
Loader = Callable[[], Image.Image]


def _rgb(im: Image.Image) -> Image.Image:
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        flat = Image.new("RGB", im.size, (255, 255, 255))
        flat.paste(im, mask=im.split()[3])
        return flat
    return im.convert("RGB")


def _file(path: Path) -> Loader:
    def load() -> Image.Image:
        with Image.open(path) as im:
            return _rgb(im)
    return load


def git_images(repo: Path, commit: str, folders: tuple[str, ...], suffix: str
               ) -> list[tuple[str, Loader]]:
    """(path, loader) of every file under ``folders`` ending in ``suffix`` (any case) at
    ``commit`` in the bare clone ``repo``, sorted by path; each loader decodes one picture
    upright (EXIF applied) as RGB. Raises CalledProcessError where the clone lacks the commit."""
    def git(*args: str) -> bytes:
        return subprocess.run(["git", "--git-dir", str(repo), *args], check=True,
                              capture_output=True).stdout

    names = sorted(n for n in git("ls-tree", "-r", "--name-only", commit, *folders)
                   .decode().split("\n") if n.lower().endswith(suffix))

    def loader(name: str) -> Loader:
        return lambda: _rgb(Image.open(io.BytesIO(git("show", f"{commit}:{name}"))))
    return [(n, loader(n)) for n in names]


def clothing(repo: Path) -> list[tuple[str, Loader]]:
    """The clothing photos (``images/*.jpg``) never used in training."""
    items = git_images(repo, CLOTHING_COMMIT, ("images",), ".jpg")
    trained = set(random.Random(17).sample([n for n, _ in items], 450))  # sources_clothing
    return [(n, load) for n, load in items if n not in trained]


def signs(repo: Path) -> list[tuple[str, Loader]]:
    """Every photo of the sign-language digits dataset (``Dataset/<digit>/*.JPG``)."""
    return git_images(repo, SIGNS_COMMIT, ("Dataset",), ".jpg")


def xrays(repo: Path) -> list[tuple[str, Loader]]:
    """Every chest X-ray (``dataset/<split>/<class>/*.jpeg``, 224x224 grey JPEG)."""
    return git_images(repo, XRAYS_COMMIT, ("dataset",), ".jpeg")


def knees(repo: Path) -> list[tuple[str, Loader]]:
    """Every knee X-ray (``{train,val,test}/<grade>/*.png``, 224x224 grey PNG)."""
    return git_images(repo, KNEES_COMMIT, ("train", "val", "test"), ".png")


def manifest_source(data: Path, package: str, splits: tuple[str, ...]) -> list[tuple[str, Loader]]:
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    return [(r["file"], _file(data / r["file"])) for r in rows
            if r["package"] == package and r["split"] in splits]


def folder_source(folder: Path) -> list[tuple[str, Path]]:
    return [(p.parent.name if p.parent != folder else ".", p) for p in sorted(folder.rglob("*"))
            if p.suffix.lower() in (".jpg", ".jpeg", ".png")]


SENSOR = (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)
UNDO = {Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
        Image.Transpose.ROTATE_180: Image.Transpose.ROTATE_180,
        Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90}


def as_stored(im: Image.Image, turn: Image.Transpose, quality: int = 90) -> Image.Image:
    """The upright output the daemon writes for an EXIF-tagged camera photo (at most 384 px):
    the camera saved the picture as its sensor saw it (``turn``, JPEG) with an Orientation
    tag, and the daemon turned it back losslessly."""
    im = im.copy()
    im.thumbnail((MODEL_INPUT_SIDE, MODEL_INPUT_SIDE), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.transpose(turn).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as sensor:
        return sensor.transpose(UNDO[turn])


def label_set(items: list[tuple[str, Loader]], cues: LabelCues, cache: Path) -> LabelSet:
    if cache.is_file():
        with np.load(cache) as d:
            text = d["text"] if d["text"].size else None
            return LabelSet(tuple(d["sha"]), tuple(d["source"]), d["features"], text)
    shas, feats, texts = [], [], []
    rng = random.Random(11)
    for name, load in items:
        features, text = cues(as_stored(load(), rng.choice(SENSOR)))
        shas.append(hashlib.sha256(name.encode()).hexdigest())
        feats.append(features)
        texts.append(text)
    known = [t for t in texts if t is not None]
    text_arr = np.stack(known) if len(known) == len(texts) else None
    labels = LabelSet(tuple(shas), ("exif",) * len(shas), np.stack(feats).astype(np.float16)
                      .astype(np.float32), text_arr)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, sha=np.array(labels.sha256), source=np.array(labels.source),
             features=labels.features, text=text_arr if text_arr is not None else np.zeros(0))
    return labels


def judged(classifier: object, items: Sequence[tuple[str, Path | Loader]],
           tmp: Path) -> list[Case]:
    """Cases of ``items`` turned 4 ways and re-saved (rotwatchd.evaluation.accuracy.run_cases)."""
    paths: list[tuple[str, Path]] = []
    for i, (_name, what) in enumerate(items):
        if isinstance(what, Path):
            paths.append((".", what))
        else:
            p = tmp / f"{i:05d}.png"
            if not p.exists():
                what().save(p, compress_level=1)
            paths.append((".", p))
    return run_cases(classifier, paths, "jpeg", (80, 95), MODEL_INPUT_SIDE, seed=1)  # type: ignore[arg-type]


def resplit(labels: LabelSet, shipped: Head, meta: ModelMeta, settings: FitSettings,
            first: int, splits: int) -> str:
    """The labels alone as a user's first and later photos: ``splits`` seeded random splits
    into ``first`` labelled photos and the rest as later ones, each turned 4 ways and decided
    by the guardrail's cascade simulation before and after adaptation (the personal head only
    where the guardrail accepted it, at its threshold). One line of totals over the splits."""
    threshold = meta.threshold("cascade")
    n, used, cases, before, after, wrong = len(labels), 0, 0, 0, 0, 0
    for seed in range(splits):
        taken = np.zeros(n, dtype=bool)
        taken[np.random.default_rng(seed).permutation(n)[:first]] = True
        adapted = adapt(labels.subset(taken), shipped, meta, settings)
        later = labels.subset(~taken)
        shipped_cases = cascade_cases(shipped, later, meta)
        base = op = at_threshold(shipped_cases, threshold)
        if adapted.verdict.accepted and adapted.head is not None:
            used += 1
            assert adapted.support is not None
            inside = np.repeat(adapted.support.contains(later.features), 4).tolist()
            op = at_threshold(fallback_cases(cascade_cases(adapted.head, later, meta),
                                             shipped_cases, threshold, inside),
                              adapted.threshold)
        cases, before, after, wrong = (cases + op.cases, before + base.correct,
                                       after + op.correct, wrong + op.wrong)
    return (f"in use {used}/{splits} splits; {cases} later cases decided correctly "
            f"{before / cases:.1%} -> {after / cases:.1%}, wrong among decided {wrong} of "
            f"{after + wrong} ({wrong / max(1, after + wrong):.2%})")


class Recorded:
    """``classifier`` (a personal one) that keeps, for every case it decides, the personal
    head's own confidence (on its own scale, before mapping onto the shipped one), or None
    where the shipped head was sure and decided alone: so the judged passes can be read again
    at other personal thresholds (``--personal-thresholds``) without deciding anything twice."""

    def __init__(self, classifier: PersonalClassifier) -> None:
        self.classifier = classifier
        self.own: list[float | None] = []
        self.gated = 0  # cases the shipped head was unsure of, outside the support

    def predict(self, image: Image.Image) -> Prediction:
        pred = self.classifier.predict(image)
        cues = dict(pred.cues)
        self.gated += cues.get("support", 0.0) > 1.0
        if cues.get("support", 0.0) > 1.0:  # unsure, outside the support: never decided
            self.own.append(-1.0)
        elif cues.get("personal") == 1.0:
            head, c = self.classifier.personal, pred.confidence
            own, shipped = head.threshold, head.shipped_threshold
            self.own.append(c * own / shipped if c < shipped
                            else own + (c - shipped) * (1.0 - own) / (1.0 - shipped))
        else:
            self.own.append(None)
        return pred


def at_personal(cases: list[Case], own: list[float | None], threshold: float) -> list[Case]:
    """``cases`` as decided with the personal head at ``threshold`` on its own scale (report
    only): confidence 1 where the shipped head decided or the personal one reached it, else 0."""
    return [replace(c, confidence=1.0 if o is None or o >= threshold else 0.0)
            for c, o in zip(cases, own, strict=True)]


def figures(cases: list[Case], threshold: float) -> tuple[float, float, float]:
    row = risk_coverage(cases, [threshold])[0]
    return row.decided_correct, row.risk, accuracy(cases)


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=root / "data")
    parser.add_argument("--clothing", type=Path, help="bare clone of clothing-dataset")
    parser.add_argument("--signs", type=Path,
                        help="bare clone of ardamavi/Sign-Language-Digits-Dataset")
    parser.add_argument("--xrays", type=Path,
                        help="bare clone of waliatushar/ai-pneumonia-detection")
    parser.add_argument("--knees", type=Path, help="bare clone of Rohan-145/KneeOA_Analysis")
    parser.add_argument("--users",
                        default="clothing,signs,xrays,knees,documents,screenshots,stamps",
                        help="comma-separated users to run (default: all)")
    parser.add_argument("--labels", type=int, default=300)
    parser.add_argument("--judge", type=int, default=150)
    parser.add_argument("--strengths", default="")
    parser.add_argument("--personal-thresholds", default="",
                        help="also print each accepted head's figures at these thresholds of "
                        "its own (report only: the guardrail's threshold is what is used)")
    parser.add_argument("--resplit", default="", help="FIRST,SPLITS: labels only, no judging")
    parser.add_argument("--confidences", default="0.95", help="levels of the bound (--resplit)")
    parser.add_argument("--unlike", type=Path, default=root / "data" / "validation",
                        help="the realistic validation set (skipped where it is absent)")
    parser.add_argument("--report-test", action="store_true")
    parser.add_argument("--cache", type=Path, default=root / "cache" / "adapt")
    args = parser.parse_args(argv)

    sources: dict[str, Callable[[], list[tuple[str, Loader]]]] = {
        "clothing": lambda: clothing(args.clothing),
        "signs": lambda: signs(args.signs),
        "xrays": lambda: xrays(args.xrays),
        "knees": lambda: knees(args.knees),
        "documents": lambda: manifest_source(args.data, "synthetic-documents", ("test", "val")),
        "screenshots": lambda: manifest_source(args.data, "games-thumbnails", ("train",)),
        "stamps": lambda: manifest_source(args.data, "tuxpaint-stamps-default", ("train",)),
    }
    users = args.users.split(",")
    unknown = [u for u in users if u not in sources]
    if unknown:
        parser.error(f"--users: no user {', '.join(unknown)} (known: {', '.join(sources)})")
    clones = {"clothing": args.clothing, "signs": args.signs, "xrays": args.xrays,
              "knees": args.knees}
    for user in users:
        clone = clones.get(user, Path("."))
        if clone is None or not clone.is_dir():
            parser.error(f"user {user} needs --{user} DIR, its bare clone "
                         f"({'not given' if clone is None else f'no folder {clone}'})")
    meta = ModelMeta.for_model(model_path_or_default(None))
    shipped = shipped_head(None, meta.temperature)
    threshold = meta.threshold("cascade")
    settings = FitSettings()
    cues = LabelCues(None, 1)
    before_cls = load_adaptive(None, 1)
    unlike = folder_source(args.unlike) if args.unlike.is_dir() and not args.resplit else []
    unlike_before = judged(before_cls, unlike, args.cache) if unlike else []
    test = folder_source(args.data / "realistic-test") if args.report_test else []
    test_before = judged(before_cls, test, args.cache) if test else []
    print(f"shipped threshold {threshold}; unlike library {len(unlike)} images "
          f"({args.unlike}); fit strength {settings.strength}, iterations "
          f"{settings.iterations}, {settings.folds} folds")
    rows = []
    for user in users:
        items = sources[user]()
        random.Random(5).shuffle(items)
        labelled, later = items[:args.labels], items[args.labels:args.labels + args.judge]
        labels = label_set(labelled, cues, args.cache / f"{user}-{args.labels}.npz")
        if args.resplit:
            first, splits = (int(v) for v in args.resplit.split(","))
            for level in [float(c) for c in args.confidences.split(",")]:
                line = resplit(labels, shipped, meta, replace(settings, confidence=level),
                               first, splits)
                print(f"{user}: {first} of {len(labels)} labels first, bound at {level:.0%}: "
                      f"{line}", flush=True)
            continue
        for strength in [float(s) for s in args.strengths.split(",") if s]:
            a = adapt(labels, shipped, meta, replace(settings, strength=strength))
            print(f"  {user} strength {strength:g}: {a.verdict.reason}")
        t0 = time.process_time()
        adapted = adapt(labels, shipped, meta, settings)
        fit_cpu = time.process_time() - t0
        print(f"{user}: {len(labels)} labels, fit {fit_cpu:.1f} s CPU; {adapted.verdict.reason}")
        tmp = args.cache / f"judge-{user}"
        tmp.mkdir(parents=True, exist_ok=True)
        before = judged(before_cls, later, tmp)
        row = [user, len(labels), len(later), *figures(before, threshold)]
        if adapted.verdict.accepted and adapted.head is not None:
            assert adapted.support is not None
            personal = PersonalHead(adapted.head, adapted.threshold, threshold,
                                    model_digest(None), adapted.support,
                                    adapted.verdict.figures())
            after_cls = Recorded(load_personal(None, 1, personal))
            after = judged(after_cls, later, tmp)
            print(f"  {user} later photos: {after_cls.gated} of {len(after)} cases unsure and "
                  "outside the support (the shipped head's answer stands)")
            row += [*figures(after, threshold)]
            read_again = [("later", after, before, list(after_cls.own))]
            for name, lib, base in (("unlike", unlike, unlike_before),
                                    ("test", test, test_before)):
                if lib:
                    after_cls.own.clear()
                    after_cls.gated = 0
                    cases = judged(after_cls, lib, args.cache)
                    read_again.append((name, cases, base, list(after_cls.own)))
                    print(f"  {user} head on {name} library: decided correctly "
                          f"{figures(base, threshold)[0]:.1%} -> {figures(cases, threshold)[0]:.1%}"
                          f", wrong among decided {figures(base, threshold)[1]:.1%} -> "
                          f"{figures(cases, threshold)[1]:.1%} ({after_cls.gated} of "
                          f"{len(cases)} cases unsure and outside the support)")
            for level in [float(t) for t in args.personal_thresholds.split(",") if t]:
                parts = []
                for name, cases, base, own in read_again:
                    correct, wrong, _ = figures(at_personal(cases, own, level), 0.5)
                    parts.append(f"{name} {figures(base, threshold)[0]:.1%} -> {correct:.1%} "
                                 f"correct, {wrong:.2%} wrong")
                line = "; ".join(parts)
                print(f"  {user} head at personal threshold {level:g} (guardrail's "
                      f"{adapted.threshold:g}; report only): {line}")
        else:
            row += [*figures(before, threshold)]
        row.append(fit_cpu)
        rows.append(row)
        print("  " + " ".join(str(round(v, 4)) if isinstance(v, float) else str(v) for v in row),
              flush=True)
    print()
    print(f"{'user':12s} {'labels':>6s} {'judged':>6s} {'correct before':>14s} "
          f"{'wrong before':>12s} {'correct after':>13s} {'wrong after':>11s} {'gain':>6s} "
          f"{'fit s':>6s}")
    for user, n, j, cb, rb, _ab, ca, ra, _aa, fit in rows:
        print(f"{user:12s} {n:6d} {j:6d} {cb:14.1%} {rb:12.1%} {ca:13.1%} {ra:11.1%} "
              f"{(ca - cb) * 100:+6.1f} {fit:6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
