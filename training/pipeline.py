"""Rebuild the dataset and the shipped model from nothing, in one command.

    .venv-train/bin/python -m training.pipeline --clothing REPO --val DIR --val DIR2
    # ~6 h 30 min on a 2-core x86 CPU

Steps (each is also its own module): build_dataset (apt-get download + dpkg-deb -x of the
source packages, ~5 min) -> train stage 1 (fixed wall-clock budget, --minutes, default 75)
-> train stage 2 (--distill-minutes, default 88: starts from stage 1 and distils stage 1's
4-rotation test-time-augmentation ensemble into the single-pass network) -> train stage 3
(--stage3-minutes, default 68: the same recipe from stage 2, stage 2 as the teacher) ->
average the weights of stage 3's second-half epoch checkpoints (training.average) -> train
stage 6 (--stage6-minutes, default 55: from the stage 3 average, which is also the teacher,
with left-right mirroring of photos and composites and a lower learning rate) -> average its
second half -> add 450 CC0 phone photos of clothes to the training split
(training.sources_clothing, ``--clothing``: a bare clone of the dataset) -> train stage 7
(--stage7-minutes, default 48: stage 6's recipe from the stage 6 average, with the new photos)
-> average its second half -> the released weights: the element-wise mean of the stage 6 and
stage 7 averages (a "model soup" of a fine-tuned network and its further fine-tuned self,
after Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022: on the pooled
realistic validation sets it decided more correctly than either, or a 3:1 mean) -> export the
text network
(training.text_export) -> release
(export f32 / dynamic-range / weight-only int8 / int8 at the serving input size, 160 px, though
training runs at 112-128 px: training.augment.SERVE_SIZE; calibrate temperature and the
one-pass, 4-pass and adaptive thresholds on
validation sources, install models/orientation.tflite + .json, fixture reference) ->
onnx_export (the same three networks as .onnx files for ONNX Runtime, each checked against
PyTorch or its source and the .tflite file) -> evaluate_all (held-out tables in runs/eval/).
``--val`` is a realistic validation set (images and MANIFEST.json, or a folder per kind) that
calibration uses; give it twice to pool the first set and the second
(``python -m training.realistic_val --mirror DIR --out data/realistic-val``). Needs the
``[train]`` extra and Debian's apt-get/dpkg-deb.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training import (
    average,
    build_dataset,
    evaluate_all,
    export,
    onnx_export,
    release,
    sources_clothing,
    text_export,
    train,
)
from training.sources import ROOT

# stage 2: more photos in the mix (documents were already at 99 %), full size from the start
STAGE2 = ["--distill", "0.5", "--mix", "0.55,0.25,0.2", "--sizes", "0:128"]
# stage 6: the network had memorised its training photos chirality included; mirror them
STAGE6 = [*STAGE2, "--mirror", "0.5", "--lr-backbone", "5e-5", "--lr-head", "5e-4"]


def _second_half(run: Path) -> list[str]:
    """The epoch checkpoints of the second half of a run (around one basin of the cosine)."""
    epochs = sorted(run.glob("epoch*.pt"))
    return [str(e) for e in epochs[len(epochs) // 2:]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--minutes", type=float, default=75)
    p.add_argument("--distill-minutes", type=float, default=88)
    p.add_argument("--stage3-minutes", type=float, default=68)
    p.add_argument("--stage6-minutes", type=float, default=55)
    p.add_argument("--stage7-minutes", type=float, default=48)
    p.add_argument("--clothing", type=Path, required=True,
                   help="bare clone of github alexeygrigorev/clothing-dataset")
    p.add_argument("--val", type=Path, action="append",
                   help="realistic validation set for calibration (default data/validation); "
                        "repeat to pool several")
    p.add_argument("--variant", choices=export.VARIANTS, default="wi8")
    a = p.parse_args(argv)
    val = [arg for folder in (a.val or [ROOT / "data" / "validation"])
           for arg in ("--val", str(folder))]
    run, run2, run3, run6, run7 = (ROOT / "runs" / n for n in
                                   ("lite0", "lite0-s2", "lite0-s3", "lite0-s6", "lite0-s7"))
    soup = ROOT / "runs" / "soup.pt"
    steps = [
        lambda: build_dataset.main([]),
        lambda: train.main(["--minutes", str(a.minutes), "--out", str(run)]),
        lambda: train.main(["--minutes", str(a.distill_minutes), "--out", str(run2),
                            "--init", str(run / "last.pt"), "--teacher", str(run / "last.pt"),
                            *STAGE2]),
        lambda: train.main(["--minutes", str(a.stage3_minutes), "--out", str(run3),
                            "--init", str(run2 / "last.pt"), "--teacher", str(run2 / "last.pt"),
                            *STAGE2]),
        lambda: average.main([*_second_half(run3), "--out", str(run3 / "swa.pt")]),
        lambda: train.main(["--minutes", str(a.stage6_minutes), "--out", str(run6),
                            "--init", str(run3 / "swa.pt"), "--teacher", str(run3 / "swa.pt"),
                            *STAGE6]),
        lambda: average.main([*_second_half(run6), "--out", str(run6 / "swa.pt")]),
        lambda: sources_clothing.main(["--repo", str(a.clothing)]),
        lambda: train.main(["--minutes", str(a.stage7_minutes), "--out", str(run7),
                            "--init", str(run6 / "swa.pt"), "--teacher", str(run6 / "swa.pt"),
                            *STAGE6]),
        lambda: average.main([*_second_half(run7), "--out", str(run7 / "swa.pt")]),
        lambda: average.main([str(run6 / "swa.pt"), str(run7 / "swa.pt"), "--out", str(soup)]),
        lambda: text_export.main(["--out", str(ROOT / "models")]),
        lambda: release.main([str(soup), "--variant", a.variant, *val]),
        lambda: onnx_export.main([str(soup), "--out", str(ROOT / "models")]),
        lambda: evaluate_all.main([]),
    ]
    for step in steps:
        rc = step()
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
