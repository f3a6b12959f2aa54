"""Rebuild the dataset and the shipped model from nothing, in one command.

    .venv-train/bin/python -m training.pipeline            # ~2 h on a 2-core x86 CPU

Steps (each is also its own module): build_dataset (apt-get download + dpkg-deb -x of the
source packages, ~5 min) -> train (fixed wall-clock budget, --minutes, default 75) -> release
(export f32 / dynamic-range / int8, calibrate temperature + threshold on validation sources,
install models/orientation.tflite + .json, fixture reference) -> evaluate_all (held-out
tables in runs/eval/). Needs the ``[train]`` extra and Debian's apt-get/dpkg-deb.
"""

from __future__ import annotations

import argparse

from training import build_dataset, evaluate_all, release, train
from training.sources import ROOT


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--minutes", type=float, default=75)
    p.add_argument("--variant", choices=("f32", "dr", "int8"), default="dr")
    a = p.parse_args(argv)
    run = ROOT / "runs" / "lite0"
    steps = [
        lambda: build_dataset.main([]),
        lambda: train.main(["--minutes", str(a.minutes), "--out", str(run)]),
        lambda: release.main([str(run / "last.pt"), "--variant", a.variant]),
        lambda: evaluate_all.main([]),
    ]
    for step in steps:
        rc = step()
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
