"""Side experiment: refit only the scene network's last layer on more pictures, judged on val.

    python -m training.head_refit --val data/validation --manifest data/manifest.jsonl \
        --clothing /path/to/clothing-dataset.git --strengths 0.1,0.03,0.01,0.003

The shipped graph hands out the pooled features its final fully-connected layer reads
(``training/feature_output.py``), so a new 4-way head is cheap to fit: the features of each
picture's 4 turns are computed once (``rotwatchd.model.personal.LabelCues``: each turn JPEG
re-saved, as the daemon meets it), then multinomial logistic regression pulled toward the
shipped head with an L2 strength (``rotwatchd.adapt.fit.fit_head``, the fit on-device
adaptation uses). Pools: the training split of the Debian-built dataset (documents capped at
400 and stamps at 300 so that photos weigh), and clothing photos (CC0) that neither training
nor the adaptation benchmark's simulated user takes (after that user's 900 in its seeded
order, the next ``--clothing-count``).

Each head is judged on the realistic validation set by the adaptive cascade's simulation
(scene with the head, the text cue, no face cue; ``rotwatchd.adapt.fit.cascade_cases``): raw
accuracy, the share decided correctly at the shipped threshold with its wrong share, and the
most that any threshold decides correctly at <= 1 % wrong; raw accuracy per kind. Features are
cached in ``--cache`` (``.npz`` per pool). Validation only: the test set stays untouched.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from rotwatchd.adapt.fit import at_threshold, best_operating, cascade_cases, fit_head
from rotwatchd.adapt.labels import LabelSet
from rotwatchd.evaluation.accuracy import upright_images
from rotwatchd.formats.image import load_upright
from rotwatchd.model.personal import Head, LabelCues, model_path_or_default, shipped_head
from rotwatchd.model.sidecar import ModelMeta
from rotwatchd.service.processor import MODEL_INPUT_SIDE
from training.sources import ROOT
from training.sources_clothing import COMMIT as CLOTHING_COMMIT
from training.sources_clothing import _git

Loader = Callable[[], Image.Image]
CAPS = {"document": 400, "stamp": 300}


def _file(path: Path) -> Loader:
    return lambda: load_upright(path)  # the daemon's reader: EXIF orientation, alpha on white


def manifest_pool(manifest: Path) -> list[tuple[str, Loader]]:
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows = [r for r in rows if r["split"] == "train" and r["package"] != "clothing-dataset"]
    random.Random(3).shuffle(rows)
    seen: dict[str, int] = {}
    pool = []
    for r in rows:
        seen[r["kind"]] = seen.get(r["kind"], 0) + 1
        if seen[r["kind"]] <= CAPS.get(r["kind"], len(rows)):
            pool.append((r["file"], _file(manifest.parent / r["file"])))
    return pool


def clothing_pool(repo: Path, count: int) -> list[tuple[str, Loader]]:
    names = sorted(n for n in _git(repo, "ls-tree", "-r", "--name-only", CLOTHING_COMMIT,
                                   "images").decode().split() if n.lower().endswith(".jpg"))
    trained = set(random.Random(17).sample(names, 450))  # training/sources_clothing.py
    rest = [n for n in names if n not in trained]
    random.Random(5).shuffle(rest)  # the adaptation benchmark's order: it takes the first 900

    def loader(name: str) -> Loader:
        return lambda: ImageOps.exif_transpose(Image.open(io.BytesIO(
            _git(repo, "show", f"{CLOTHING_COMMIT}:{name}")))).convert("RGB")
    return [(n, loader(n)) for n in rest[900:900 + count]]


def features_of(pool: list[tuple[str, Loader]], cues: LabelCues, cache: Path) -> LabelSet:
    """The pool's (N, 4, F) features and (N, 4, 4) text probabilities, cached."""
    if cache.is_file():
        with np.load(cache) as d:
            return LabelSet(tuple(d["sha"]), tuple(d["source"]), d["features"],
                            d["text"] if d["text"].size else None)
    feats, texts = [], []
    for _name, load in pool:
        im = load()
        im.thumbnail((MODEL_INPUT_SIDE, MODEL_INPUT_SIDE), Image.Resampling.BILINEAR)
        f, t = cues(im)
        feats.append(f)
        texts.append(t if t is not None else np.zeros((4, 4)))
    labels = LabelSet(tuple(hashlib.sha256(n.encode()).hexdigest() for n, _ in pool),
                      tuple(n for n, _ in pool), np.stack(feats).astype(np.float32),
                      np.stack(texts))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, sha=np.array(labels.sha256), source=np.array(labels.source),
             features=labels.features, text=labels.text)
    return labels


def report(tag: str, head: Head, val: LabelSet, meta: ModelMeta) -> None:
    cases = cascade_cases(head, val, meta)
    ok = np.array([c.truth == c.predicted for c in cases])
    kinds = np.array([c.group for c in cases])
    shipped = at_threshold(cases, meta.threshold("cascade"))
    best = best_operating(cases, 0.01)
    per_kind = " ".join(f"{k} {ok[kinds == k].mean():.1%}" for k in sorted(set(kinds)))
    print(f"{tag}: raw {ok.mean():.1%}; at the shipped threshold decided correctly "
          f"{shipped.correct / shipped.cases:.1%}, wrong among decided "
          f"{shipped.wrong / max(1, shipped.correct + shipped.wrong):.1%}; best at <= 1 % wrong "
          f"{best.correct / best.cases:.1%} | raw per kind: {per_kind}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--val", type=Path, default=ROOT / "data" / "validation")
    p.add_argument("--manifest", type=Path, default=ROOT / "data" / "manifest.jsonl")
    p.add_argument("--clothing", type=Path, help="bare clone of clothing-dataset")
    p.add_argument("--clothing-count", type=int, default=1500)
    p.add_argument("--strengths", default="0.1,0.03,0.01,0.003")
    p.add_argument("--cache", type=Path, default=ROOT / "cache" / "head-refit")
    a = p.parse_args(argv)
    meta = ModelMeta.for_model(model_path_or_default(None))
    shipped = shipped_head(None, meta.temperature)
    cues = LabelCues(None, 1)
    val_pool = [(f"{kind}/{path.name}", _file(path)) for kind, path in upright_images(a.val)]
    val = features_of(val_pool, cues, a.cache / "validation.npz")
    val = LabelSet(val.sha256, tuple(n.split("/")[0] for n in val.source), val.features,
                   val.text)  # the kind is the case's group
    pools = {"debian": lambda: manifest_pool(a.manifest)}
    if a.clothing is not None:
        pools["clothing"] = lambda: clothing_pool(a.clothing, a.clothing_count)
    sets = {name: features_of(make(), cues, a.cache / f"{name}.npz")
            for name, make in pools.items()}
    cues.close()
    report("shipped head", shipped, val, meta)
    mixes = [[name] for name in sets] + ([list(sets)] if len(sets) > 1 else [])
    for mix in mixes:
        features = np.concatenate([sets[name].features for name in mix])
        for strength in [float(s) for s in a.strengths.split(",")]:
            head = fit_head(features, shipped, strength)
            assert head is not None
            report(f"refit on {'+'.join(mix)} ({len(features)} pictures), strength "
                   f"{strength:g}", head, val, meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
