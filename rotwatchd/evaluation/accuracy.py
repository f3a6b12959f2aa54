"""``rotwatchd eval DIR``: how good is the model on *your* upright photos?

Every image under DIR is taken as upright (its EXIF orientation applied first), turned 4 ways
with exact pixel transposes, re-encoded as JPEG (or PNG) in memory exactly as a camera or an
editor would store it, decoded again and classified. Prints accuracy, the 4x4 confusion matrix
(rows: true correction, columns: predicted) and a risk-coverage table: for each confidence
threshold, the share of cases decided and the error rate among them. With subfolders (one per
kind or source, e.g. ``people/``, ``documents/``), one row per folder gives its accuracy and,
at the review threshold, the share decided, wrong among decided and decided correctly. The
images that fail most (wrong while decided first, then wrong at all) are listed by name, so
you can see where it fails on your photos. Nothing is written to disk.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from rotwatchd.model.base import CORRECTIONS, ModelError, OrientationClassifier
from rotwatchd.service.processor import MODEL_INPUT_SIDE

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99)
# Transpose that turns an upright image so that it needs the given clockwise correction.
_TURN = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
         270: Image.Transpose.ROTATE_270}


@dataclass(frozen=True)
class Case:
    """One classified case: which folder, the true and predicted correction, confidence."""

    group: str
    truth: int
    predicted: int
    confidence: float
    name: str = ""  # the image's path relative to the evaluated folder


@dataclass(frozen=True)
class RiskRow:
    threshold: float
    coverage: float  # share of all cases decided (confidence >= threshold)
    risk: float  # share of decided cases that are wrong
    decided_correct: float  # share of all cases decided correctly


def accuracy(cases: Sequence[Case]) -> float:
    return sum(c.truth == c.predicted for c in cases) / len(cases) if cases else 0.0


def confusion(cases: Sequence[Case]) -> list[list[int]]:
    """4x4 counts; row = true correction, column = predicted correction (CORRECTIONS order)."""
    m = [[0] * 4 for _ in range(4)]
    for c in cases:
        m[CORRECTIONS.index(c.truth)][CORRECTIONS.index(c.predicted)] += 1
    return m


def risk_coverage(cases: Sequence[Case], thresholds: Sequence[float] = THRESHOLDS
                  ) -> list[RiskRow]:
    """One row per threshold: the cases with confidence >= it are decided. Sorted once, so a
    long threshold grid over thousands of cases stays cheap (calibration searches with it)."""
    conf = np.array([c.confidence for c in cases], dtype=np.float64)
    wrong = np.array([c.truth != c.predicted for c in cases], dtype=np.int64)
    order = np.argsort(conf, kind="stable")
    conf, wrong = conf[order], wrong[order]
    wrong_from = np.concatenate([np.cumsum(wrong[::-1])[::-1], [0]])  # wrong among i..end
    n = max(1, len(cases))
    rows = []
    for t in thresholds:
        first = int(np.searchsorted(conf, t, side="left"))
        decided, bad = len(conf) - first, int(wrong_from[first])
        rows.append(RiskRow(t, decided / n, bad / decided if decided else 0.0,
                            (decided - bad) / n))
    return rows


def turned(image: Image.Image, correction: int) -> Image.Image:
    """The upright image stored so that it needs ``correction`` (exact, lossless transpose)."""
    return image.transpose(_TURN[correction]) if correction else image


def resave(image: Image.Image, fmt: str, quality: int) -> Image.Image:
    """Encode and decode in memory, as a saved file would be read back."""
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, "PNG", compress_level=1)
    else:
        image.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out


def upright_images(folder: Path) -> list[tuple[str, Path]]:
    """(group, path) for each image; group is the first subfolder below DIR, or '.'."""
    found = []
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            rel = p.relative_to(folder)
            found.append((rel.parts[0] if len(rel.parts) > 1 else ".", p))
    return found


def run_cases(classifier: OrientationClassifier, images: list[tuple[str, Path]], fmt: str,
              quality: tuple[int, int], max_side: int, seed: int = 0,
              root: Path | None = None,
              skipped: list[tuple[Path, str]] | None = None) -> list[Case]:
    """Classify every image turned 4 ways and re-saved; ``root`` names cases relative to it.

    An image that cannot be decoded raises OSError or ValueError, unless ``skipped`` is given:
    then it is left out and ``(path, reason)`` appended there."""
    rng = random.Random(seed)
    cases = []
    for group, path in images:
        name = str(path.relative_to(root)) if root is not None else path.name
        try:
            with Image.open(path) as raw:
                im = ImageOps.exif_transpose(raw).convert("RGB")
        except (OSError, ValueError) as exc:
            if skipped is None:
                raise
            skipped.append((path, str(exc) or type(exc).__name__))
            continue
        if max(im.size) > max_side:  # like the daemon's load_upright(max_side=...)
            im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        for truth in CORRECTIONS:
            stored = resave(turned(im, truth), fmt, rng.randint(*quality))
            pred = classifier.predict(stored)
            cases.append(Case(group, truth, pred.correction, pred.confidence, name))
    return cases


@dataclass(frozen=True)
class ImageFailure:
    """How one image fared over its 4 turns: wrong while decided, wrong at all."""

    name: str
    group: str
    wrong_decided: int
    wrong: int
    worst_confidence: float  # highest confidence among its wrong answers


def worst_images(cases: Sequence[Case], threshold: float, limit: int = 10
                 ) -> list[ImageFailure]:
    """Images with any wrong answer, most harmful first: wrong while decided (above
    ``threshold``), then wrong at all, then the most confident wrong answer."""
    by_name: dict[str, list[Case]] = {}
    for c in cases:
        by_name.setdefault(c.name, []).append(c)
    out = []
    for name, own in by_name.items():
        wrong = [c for c in own if c.truth != c.predicted]
        if wrong:
            out.append(ImageFailure(name, own[0].group,
                                    sum(c.confidence >= threshold for c in wrong), len(wrong),
                                    max(c.confidence for c in wrong)))
    out.sort(key=lambda f: (-f.wrong_decided, -f.wrong, -f.worst_confidence, f.name))
    return out[:limit]


def group_rows(cases: Sequence[Case], threshold: float) -> list[tuple[str, int, float, RiskRow]]:
    """(group, cases, accuracy, risk-coverage at ``threshold``) per group, sorted by name."""
    rows = []
    for g in sorted({c.group for c in cases}):
        sub = [c for c in cases if c.group == g]
        rows.append((g, len(sub), accuracy(sub), risk_coverage(sub, [threshold])[0]))
    return rows


def report(cases: Sequence[Case], shipped_threshold: float | None, worst: int = 10) -> str:
    lines = [f"cases: {len(cases)}   accuracy (threshold 0): {accuracy(cases):.1%}", ""]
    at = shipped_threshold or 0.0
    if len({c.group for c in cases}) > 1:
        lines.append(f"{'kind or source':24s} {'cases':>6s} {'accuracy':>9s} {'decided':>8s} "
                     f"{'wrong among decided':>20s} {'decided correctly':>18s}"
                     f"   (at threshold {at:.3f})")
        for g, n, acc, r in group_rows(cases, at):
            lines.append(f"{g:24s} {n:6d} {acc:9.1%} {r.coverage:8.1%} {r.risk:20.1%} "
                         f"{r.decided_correct:18.1%}")
        lines.append("")
    lines.append("confusion (rows: true correction, columns: predicted)")
    lines.append("        " + "".join(f"{c:>7d}" for c in CORRECTIONS))
    for c, row in zip(CORRECTIONS, confusion(cases), strict=True):
        lines.append(f"{c:>7d} " + "".join(f"{v:7d}" for v in row))
    lines.append("")
    thresholds = sorted(set(THRESHOLDS) | ({shipped_threshold} if shipped_threshold else set()))
    lines.append(f"{'threshold':>9s} {'decided':>8s} {'wrong among decided':>20s} "
                 f"{'decided correctly':>18s}")
    for r in risk_coverage(cases, thresholds):
        mark = "  <- shipped default" if r.threshold == shipped_threshold else ""
        lines.append(f"{r.threshold:9.3f} {r.coverage:8.1%} {r.risk:20.1%} "
                     f"{r.decided_correct:18.1%}{mark}")
    failures = worst_images(cases, at, worst)
    if failures:
        lines.append("")
        lines.append(f"images that fail most (of 4 turns: wrong while decided at {at:.3f}, "
                     "wrong at all; highest confidence of a wrong answer)")
        for f in failures:
            lines.append(f"  {f.wrong_decided}/4 {f.wrong}/4 {f.worst_confidence:6.3f}  "
                         f"{f.name}")
    return "\n".join(lines)


def as_json(cases: Sequence[Case], shipped_threshold: float | None) -> dict[str, object]:
    groups = sorted({c.group for c in cases})
    thresholds = sorted(set(THRESHOLDS) | ({shipped_threshold} if shipped_threshold else set()))
    return {
        "cases": len(cases), "accuracy": accuracy(cases), "confusion": confusion(cases),
        "per_group": {g: {"cases": sum(c.group == g for c in cases),
                          "accuracy": accuracy([c for c in cases if c.group == g]),
                          "risk_coverage": [r.__dict__ for r in risk_coverage(
                              [c for c in cases if c.group == g], thresholds)]}
                      for g in groups},
        "risk_coverage": [r.__dict__ for r in risk_coverage(cases, thresholds)],
        "shipped_threshold": shipped_threshold,
        "worst_images": [f.__dict__ for f in worst_images(cases, shipped_threshold or 0.0)],
    }


def _parse_quality(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    q = (int(lo), int(hi or lo))
    if not 1 <= q[0] <= q[1] <= 100:
        raise argparse.ArgumentTypeError(f"quality must be N or LO-HI within 1..100, got {text}")
    return q


def main(argv: list[str]) -> int:
    """Entry point of ``rotwatchd eval``; returns the process exit code."""
    p = argparse.ArgumentParser(prog="rotwatchd eval", description=__doc__.split("\n")[0])
    p.add_argument("folder", type=Path, help="folder of upright images (subfolders = sources)")
    p.add_argument("--model", type=Path, default=None, help="scene .tflite (default: shipped)")
    p.add_argument("--backend", default="auto", help="classifier backend (default: auto)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--format", choices=("jpeg", "png"), default="jpeg")
    p.add_argument("--quality", type=_parse_quality, default=(75, 95),
                   help="JPEG quality N or LO-HI")
    p.add_argument("--max-side", type=int, default=MODEL_INPUT_SIDE,
                   help="longer side the image is scaled to first, as the daemon does "
                        f"(default {MODEL_INPUT_SIDE})")
    p.add_argument("--threshold", type=float, default=None,
                   help="threshold to mark (default: the review threshold of the backend "
                        "that ran, as the daemon uses it)")
    p.add_argument("--worst", type=int, default=10, help="how many failing images to list")
    p.add_argument("--json", action="store_true", help="print machine-readable results")
    a = p.parse_args(argv)
    if not a.folder.is_dir():
        print(f"rotwatchd eval: not a folder: {a.folder}", file=sys.stderr)
        return 2
    images = upright_images(a.folder)
    if not images:
        print(f"rotwatchd eval: no images in {a.folder}", file=sys.stderr)
        return 2
    from rotwatchd.model import load_classifier

    try:
        clf = load_classifier(a.backend, a.model, a.threads)
    except ModelError as exc:
        print(f"rotwatchd eval: {exc}", file=sys.stderr)
        return 1
    skipped: list[tuple[Path, str]] = []
    try:
        cases = run_cases(clf, images, a.format, a.quality, a.max_side, root=a.folder,
                          skipped=skipped)
    finally:
        clf.close()
    for path, reason in skipped:
        print(f"rotwatchd eval: skipped {path}: cannot be decoded ({reason})", file=sys.stderr)
    if not cases:
        print(f"rotwatchd eval: no readable images in {a.folder}", file=sys.stderr)
        return 2
    threshold = a.threshold
    if threshold is None:
        threshold = getattr(clf, "min_confidence", None)
    print(json.dumps(as_json(cases, threshold), indent=1) if a.json
          else report(cases, threshold, a.worst))
    return 0
