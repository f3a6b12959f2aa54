"""Turn a checkpoint into the shipped model: export, calibrate, install, fixture reference.

    python -m training.release runs/lite0/last.pt [--variant wi8]

1. export the TFLite variants to bench/models/ (training.export);
2. fit temperature + review thresholds (one pass, 4 passes, adaptive) on the realistic
   validation set (``--val``) for each variant and write its sidecar (training.calibrate):
   every variant gets its own calibration, of the scene network alone (bench/models has no
   face or text models), which is how the variants are evaluated;
3. copy the chosen variant to models/orientation.tflite, give its graph the pooled features
   as a second output and write its head beside it (training.feature_output: what on-device
   adaptation learns on), and calibrate it there, next to the face and text models, so the
   shipped weights and thresholds are those of the shipped cue set;
4. store the PyTorch reference predictions on the fixture set (training.fixture_reference).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from training import calibrate, export, feature_output, fixture_reference
from training.augment import SERVE_SIZE
from training.sources import ROOT

MODELS = ROOT / "models"
VARIANTS = ROOT / "bench" / "models"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--size", type=int, default=SERVE_SIZE)
    p.add_argument("--variant", choices=export.VARIANTS, default="wi8")
    p.add_argument("--skip-export", action="store_true")
    p.add_argument("--val", type=Path, action="append",
                   help=f"realistic validation set (default {calibrate.VAL}); repeat to pool")
    a = p.parse_args(argv)
    val = [arg for folder in (a.val or [calibrate.VAL]) for arg in ("--val", str(folder))]
    if not a.skip_export:
        export.main([str(a.checkpoint), "--size", str(a.size), "--out", str(VARIANTS)])
    for variant in export.VARIANTS:
        calibrate.main([str(VARIANTS / f"orientation-{variant}.tflite"), "--size", str(a.size),
                        *val])
    chosen = VARIANTS / f"orientation-{a.variant}.tflite"
    shutil.copyfile(chosen, MODELS / "orientation.tflite")
    feature_output.main([str(MODELS / "orientation.tflite")])
    calibrate.main([str(MODELS / "orientation.tflite"), "--size", str(a.size), *val])
    fixture_reference.main([str(a.checkpoint), "--size", str(a.size)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
