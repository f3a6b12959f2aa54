"""Paired latency of two model setups on the same pictures (not a test: prints a table).

    python bench/bench_paired.py --images data/realistic-test --old-model OLD/orientation.tflite \\
        [--old-centre-crop] [--new-model NEW/orientation.tflite]

This machine's speed moves by tens of percent between runs, so two unpaired ``rotwatchd
bench`` runs compare spells as much as models. Here both setups (the adaptive default backend,
one thread, every cue found next to each scene model) decide the same decoded picture one after
the other, alternating which goes first, in one process; pin it to one core (``taskset -c 1``).
The pictures are ``rotwatchd bench --images``'s: every upright picture of the folder, capped at
the daemon's 384 px, turned 4 ways and re-saved as JPEG.

``--old-centre-crop`` gives the old setup the text network's first view of releases up to 8.3:
the centre crop for every picture (``TextCrops.centre``), not both ends of an elongated one;
with it, a copy of release 8.3's model folder as ``--old-model`` times that release as it
shipped.

Prints, per setup: p50, p95 and mean milliseconds per picture, the share escalated to 4
passes, the share that ran the text network, and the p50 of the escalated pictures alone.
"""

from __future__ import annotations

import argparse
import time
import types
from pathlib import Path

import numpy as np
from PIL import Image

from rotwatchd.evaluation.speed import _encoded, decode
from rotwatchd.model import load_classifier
from rotwatchd.model.fusion import AdaptiveClassifier
from rotwatchd.model.text import TextCrops, TextCue


def _centre_first_view(self: TextCue, image: Image.Image | TextCrops) -> np.ndarray:
    crops = image if isinstance(image, TextCrops) else TextCrops(image)
    return self.view(crops.centre, 0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--old-model", type=Path, required=True)
    p.add_argument("--new-model", type=Path, default=None, help="default: the shipped model")
    p.add_argument("--old-centre-crop", action="store_true")
    a = p.parse_args(argv)
    items = _encoded(a.images)
    setups = {"old": load_classifier("litert-adaptive", a.old_model, 1),
              "new": load_classifier("litert-adaptive", a.new_model, 1)}
    old = setups["old"]
    if a.old_centre_crop and isinstance(old, AdaptiveClassifier) and old.text is not None:
        text = old.text
        text.first_view = types.MethodType(_centre_first_view, text)  # type: ignore[method-assign]
    times: dict[str, list[float]] = {k: [] for k in setups}
    work: dict[str, list[tuple[bool, bool]]] = {k: [] for k in setups}
    for item in items[:3]:  # warm-up
        for clf in setups.values():
            clf.predict(decode(item))
    for k, item in enumerate(items):
        image = decode(item)
        for name in (("old", "new") if k % 2 else ("new", "old")):
            start = time.perf_counter()
            cues = dict(setups[name].predict(image).cues)
            times[name].append((time.perf_counter() - start) * 1000)
            work[name].append((cues.get("passes") == 4.0, "text" in cues))
    print(f"{len(items)} pictures from {a.images}, paired")
    print(f"{'setup':5s} {'p50 ms':>7s} {'p95 ms':>7s} {'mean ms':>8s} {'4-pass':>7s} "
          f"{'text':>6s} {'4-pass p50 ms':>14s}")
    for name in setups:
        t = np.array(times[name])
        escalated = np.array([e for e, _ in work[name]])
        ran_text = np.mean([r for _, r in work[name]])
        esc_p50 = float(np.percentile(t[escalated], 50)) if escalated.any() else float("nan")
        print(f"{name:5s} {np.percentile(t, 50):7.1f} {np.percentile(t, 95):7.1f} "
              f"{t.mean():8.1f} {escalated.mean():7.1%} {ran_text:6.1%} {esc_p50:14.1f}")
    for clf in setups.values():
        clf.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
