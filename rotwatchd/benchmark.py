"""``rotwatchd bench``: speed and footprint of each orientation model variant on this machine.

For every ``.tflite`` variant (the shipped default plus ``bench/models/*.tflite`` in a source
checkout, or the files given with ``--model``) and every thread count, one fresh subprocess
loads the model and classifies a fixed synthetic photo ``--runs`` times. Reported: file size,
load time, latency per image p50/p95 (preprocessing included), throughput, and the child's peak
resident memory. ``--cues`` adds the whole shipped cue set (scene network + face cue on all
four rotations) and the 4-pass ensemble backend ``litert-tta`` (the same with the scene
network run on all four turns) as more rows. Prints a table; ``--json`` prints the rows instead.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from rotwatchd.model.base import default_model_dir

REPO_VARIANTS = Path(__file__).resolve().parent.parent / "bench" / "models"


def test_image(size: tuple[int, int] = (1024, 768)) -> Image.Image:
    """A deterministic photo-like RGB image (smooth gradients plus texture)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0 : size[1], 0 : size[0]].astype(np.float32)
    base = np.stack([x / size[0] * 255, y / size[1] * 255, (x + y) % 255], axis=-1)
    noise = rng.normal(0, 12, base.shape)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


CUE_ROWS = {"litert": " + faces (all cues)", "litert-tta": " all cues, 4-pass"}


def measure(model: Path | None, threads: int, runs: int, backend: str) -> dict[str, object]:
    """Run inside the child process: load, warm up, time ``runs`` predictions."""
    from rotwatchd.model import load_classifier

    image = test_image()
    t0 = time.perf_counter()
    clf = load_classifier(backend, model, threads)
    load_s = time.perf_counter() - t0
    for _ in range(3):
        clf.predict(image)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        clf.predict(image)
        times.append(time.perf_counter() - t)
    clf.close()
    arr = np.array(times) * 1000
    return {"load_ms": load_s * 1000, "p50_ms": float(np.percentile(arr, 50)),
            "p95_ms": float(np.percentile(arr, 95)), "img_per_s": 1000 / float(arr.mean()),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def variants(given: list[Path]) -> list[Path]:
    if given:
        return given
    found = [default_model_dir() / "orientation.tflite"]
    if REPO_VARIANTS.is_dir():
        found += sorted(REPO_VARIANTS.glob("*.tflite"))
    return [p for p in found if p.is_file()]


def _child(model: Path, threads: int, runs: int, backend: str) -> dict[str, object]:
    cmd = [sys.executable, "-m", "rotwatchd.benchmark", "--child", str(model),
           "--threads", str(threads), "--runs", str(runs), "--backend", backend]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    row: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return row


def table(rows: list[dict[str, object]]) -> str:
    head = (f"{'model':34s} {'threads':>7s} {'size MB':>8s} {'load ms':>8s} {'p50 ms':>7s} "
            f"{'p95 ms':>7s} {'img/s':>7s} {'peak MB':>8s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['name']!s:34s} {r['threads']!s:>7s} {r['size_mb']:8.2f} "
                     f"{r['load_ms']:8.1f} {r['p50_ms']:7.2f} {r['p95_ms']:7.2f} "
                     f"{r['img_per_s']:7.1f} {r['peak_rss_mb']:8.1f}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Entry point of ``rotwatchd bench``; returns the process exit code."""
    p = argparse.ArgumentParser(prog="rotwatchd bench", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, action="append", default=[], help="variant(s) to time")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--cues", action="store_true",
                   help="also time the whole shipped cue set, one pass and 4-pass (litert-tta)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--backend", default="litert-scene", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    threads = [int(t) for t in a.threads.split(",")]
    if a.child is not None:
        print(json.dumps(measure(a.child, threads[0], a.runs, a.backend)))
        return 0
    models = variants(a.model)
    if not models:
        print("rotwatchd bench: no model files found", file=sys.stderr)
        return 1
    jobs = [(m, t, "litert-scene") for m in models for t in threads]
    if a.cues:
        jobs += [(models[0], t, backend) for backend in CUE_ROWS for t in threads]
    rows = []
    for model, t, backend in jobs:
        try:
            r = _child(model, t, a.runs, backend)
        except subprocess.CalledProcessError as exc:
            print(f"rotwatchd bench: {model}: {exc.stderr.strip().splitlines()[-1:]}",
                  file=sys.stderr)
            return 1
        size = model.stat().st_size
        if backend in CUE_ROWS:
            size += sum(f.stat().st_size for f in (model.parent / "faces").glob("*.tflite"))
        rows.append({"name": model.name + CUE_ROWS.get(backend, ""),
                     "threads": t, "size_mb": size / 1e6, **r})
    print(json.dumps(rows, indent=1) if a.json else table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
