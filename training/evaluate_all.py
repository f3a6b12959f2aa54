"""Every held-out figure of the model card, from the exported files, in one run.

    python -m training.evaluate_all --out runs/eval

Uses the same code path as ``rotwatchd eval`` (rotwatchd.evaluation.accuracy.run_cases: exact 4-way
turns, in-memory JPEG re-save at quality 75-95, the LiteRT runtime) on the *test* folders that
training/build_dataset.py links under data/eval/ (sources never trained or tuned on):
  - the default backend (litert-adaptive: every cue, one scene pass, all four turns when that
    is unsure) on test photos, paintings, documents, and PNG vs JPEG q60-95;
  - the same cue set always one pass (litert) and always 4 passes (litert-tta);
  - each variant (f32 / dynamic-range / weight-only / int8), scene network alone, photos and
    documents;
Writes one JSON and one text report per run; each variant is judged at its own calibrated
threshold (its sidecar in bench/models/).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rotwatchd.evaluation.accuracy import accuracy, as_json, report, run_cases, upright_images
from rotwatchd.model.fusion import load_adaptive, load_fused, load_fused_tta, load_scene_only
from rotwatchd.model.sidecar import ModelMeta
from training.export import VARIANTS
from training.sources import ROOT

EVAL = ROOT / "data" / "eval"
VARIANT_DIR = ROOT / "bench" / "models"
SHIPPED = ROOT / "models" / "orientation.tflite"


def _run(name: str, loader: str, model: Path, folder: Path, fmt: str, quality: tuple[int, int],
         out: Path, threshold: float) -> dict[str, object]:
    load = {"adaptive": load_adaptive, "fused": load_fused, "tta": load_fused_tta,
            "scene": load_scene_only}[loader]
    clf = load(model, 1)
    t0 = time.time()
    try:
        cases = run_cases(clf, upright_images(folder), fmt, quality, 1024, seed=0)
    finally:
        clf.close()
    res = as_json(cases, threshold)
    res["seconds"] = round(time.time() - t0, 1)
    (out / f"{name}.json").write_text(json.dumps(res, indent=1))
    (out / f"{name}.txt").write_text(report(cases, threshold) + "\n")
    print(f"{name:40s} cases {len(cases):5d} acc {accuracy(cases):.3f} ({res['seconds']}s)",
          flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "eval")
    p.add_argument("--skip-variants", action="store_true")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    meta = ModelMeta.for_model(SHIPPED)
    thr, tta_thr, ada_thr = (meta.threshold(m) for m in ("single", "tta", "cascade"))
    jq = (75, 95)
    photos = EVAL / "test-photos"
    _run("adaptive-photos", "adaptive", SHIPPED, photos, "jpeg", jq, a.out, ada_thr)
    _run("adaptive-docs", "adaptive", SHIPPED, EVAL / "test-docs", "jpeg", jq, a.out, ada_thr)
    _run("adaptive-paintings", "adaptive", SHIPPED, EVAL / "test-paintings", "jpeg", jq, a.out,
         ada_thr)
    _run("robust-png-photos", "adaptive", SHIPPED, photos, "png", jq, a.out, ada_thr)
    _run("robust-jpeg60-95-photos", "adaptive", SHIPPED, photos, "jpeg", (60, 95), a.out,
         ada_thr)
    _run("val-photos", "adaptive", SHIPPED, EVAL / "val-photos", "jpeg", jq, a.out, ada_thr)
    _run("val-art", "adaptive", SHIPPED, EVAL / "val-art", "jpeg", jq, a.out, ada_thr)
    _run("shipped-photos", "fused", SHIPPED, photos, "jpeg", jq, a.out, thr)
    _run("shipped-scene-only-photos", "scene", SHIPPED, photos, "jpeg", jq, a.out, thr)
    _run("shipped-docs", "fused", SHIPPED, EVAL / "test-docs", "jpeg", jq, a.out, thr)
    _run("tta-photos", "tta", SHIPPED, photos, "jpeg", jq, a.out, tta_thr)
    _run("tta-docs", "tta", SHIPPED, EVAL / "test-docs", "jpeg", jq, a.out, tta_thr)
    if not a.skip_variants:
        for v in VARIANTS:
            model = VARIANT_DIR / f"orientation-{v}.tflite"
            own = ModelMeta.for_model(model).min_confidence
            _run(f"variant-{v}-photos", "scene", model, photos, "jpeg", jq, a.out, own)
            _run(f"variant-{v}-docs", "scene", model, EVAL / "test-docs", "jpeg", jq, a.out, own)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
