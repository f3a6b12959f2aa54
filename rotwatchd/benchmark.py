"""``rotwatchd bench``: speed and footprint of each orientation model variant on this machine.

For every ``.tflite`` variant (the shipped default plus ``bench/models/*.tflite`` in a source
checkout, or the files given with ``--model``) and every thread count, one fresh subprocess
loads the model and classifies a fixed synthetic photo ``--runs`` times, or, with ``--images
DIR``, every upright image under DIR turned 4 ways and JPEG re-saved (as ``rotwatchd eval``
does), round after round until ``--runs`` predictions are timed. Reported: file size, load
time, latency per image p50/p95 (preprocessing included), throughput, the child's peak resident
memory, and the share of predictions that ran the scene network on all four turns. ``--cues``
adds the whole shipped cue set (scene network + text network + face cue on all four
rotations) as the default
adaptive backend (one pass, 4 passes when unsure), always one pass (``litert``) and always 4
passes (``litert-tta``) as more rows. The adaptive backend's time depends on the images: time
it on real photos (``--images``). The synthetic image is below its escalation band (one pass);
an escalated image costs about the ``litert-tta`` row.
Prints a table; ``--json`` prints the rows instead.
"""

from __future__ import annotations

import argparse
import io
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


CUE_ROWS = {"litert-adaptive": " all cues, adaptive (default)",
            "litert": " + text + faces (all cues), 1-pass", "litert-tta": " all cues, 4-pass"}
PASSES = {"litert-scene": 1.0, "litert": 1.0, "litert-tta": 4.0}


def bench_images(folder: Path | None) -> list[Image.Image]:
    """The images to time: the synthetic photo, or every image under ``folder`` turned 4 ways
    and JPEG re-saved at quality 90, long side at most the daemon's model input side (384 px:
    what the daemon's loader hands the classifier, and what ``rotwatchd eval`` uses)."""
    return [decode(item) for item in _encoded(folder)]


def _encoded(folder: Path | None) -> list[bytes | Image.Image]:
    """What :func:`bench_images` decodes: a folder's cases stay JPEG bytes until each is timed,
    so the peak memory column is the model's and not the whole image set's."""
    if folder is None:
        return [test_image()]
    from PIL import ImageOps

    from rotwatchd.evaluate import turned, upright_images
    from rotwatchd.processor import MODEL_INPUT_SIDE

    out: list[bytes | Image.Image] = []
    for _group, path in upright_images(folder):
        with Image.open(path) as raw:
            im = ImageOps.exif_transpose(raw).convert("RGB")
        im.thumbnail((MODEL_INPUT_SIDE, MODEL_INPUT_SIDE), Image.Resampling.BILINEAR)
        for correction in (0, 90, 180, 270):
            buf = io.BytesIO()
            turned(im, correction).save(buf, "JPEG", quality=90)
            out.append(buf.getvalue())
    return out


def decode(item: bytes | Image.Image) -> Image.Image:
    if isinstance(item, Image.Image):
        return item
    image = Image.open(io.BytesIO(item))
    image.load()
    return image


def measure(model: Path | None, threads: int, runs: int, backend: str,
            folder: Path | None = None) -> dict[str, object]:
    """Run inside the child process: load, warm up, time ``runs`` predictions (each image is
    decoded before its timer starts: the time is the classifier's, preprocessing included)."""
    from rotwatchd.model import load_classifier

    items = _encoded(folder)
    t0 = time.perf_counter()
    clf = load_classifier(backend, model, threads)
    load_s = time.perf_counter() - t0
    for item in items[:3]:
        clf.predict(decode(item))
    times, passes = [], []
    for i in range(max(runs, len(items)) if folder is not None else runs):
        image = decode(items[i % len(items)])
        t = time.perf_counter()
        pred = clf.predict(image)
        times.append(time.perf_counter() - t)
        passes.append(dict(pred.cues).get("passes", PASSES.get(backend, 1.0)))
    clf.close()
    arr = np.array(times) * 1000
    return {"load_ms": load_s * 1000, "p50_ms": float(np.percentile(arr, 50)),
            "p95_ms": float(np.percentile(arr, 95)), "img_per_s": 1000 / float(arr.mean()),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "four_pass_share": float(np.mean(np.array(passes) == 4.0))}


def variants(given: list[Path]) -> list[Path]:
    if given:
        return given
    found = [default_model_dir() / "orientation.tflite"]
    if REPO_VARIANTS.is_dir():
        found += sorted(REPO_VARIANTS.glob("*.tflite"))
    return [p for p in found if p.is_file()]


def _child(model: Path, threads: int, runs: int, backend: str, folder: Path | None
           ) -> dict[str, object]:
    cmd = [sys.executable, "-m", "rotwatchd.benchmark", "--child", str(model),
           "--threads", str(threads), "--runs", str(runs), "--backend", backend]
    if folder is not None:
        cmd += ["--images", str(folder)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    row: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return row


def table(rows: list[dict[str, object]]) -> str:
    head = (f"{'model':48s} {'threads':>7s} {'size MB':>8s} {'load ms':>8s} {'p50 ms':>7s} "
            f"{'p95 ms':>7s} {'img/s':>7s} {'peak MB':>8s} {'4-pass':>7s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['name']!s:48s} {r['threads']!s:>7s} {r['size_mb']:8.2f} "
                     f"{r['load_ms']:8.1f} {r['p50_ms']:7.2f} {r['p95_ms']:7.2f} "
                     f"{r['img_per_s']:7.1f} {r['peak_rss_mb']:8.1f} "
                     f"{r['four_pass_share']:7.0%}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Entry point of ``rotwatchd bench``; returns the process exit code."""
    p = argparse.ArgumentParser(prog="rotwatchd bench", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, action="append", default=[], help="variant(s) to time")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--cues", action="store_true",
                   help="also time the whole shipped cue set: adaptive (default), 1-pass, 4-pass")
    p.add_argument("--images", type=Path, default=None,
                   help="time on the upright images under this folder, each turned 4 ways "
                        "(default: one synthetic photo)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--backend", default="litert-scene", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    threads = [int(t) for t in a.threads.split(",")]
    if a.child is not None:
        print(json.dumps(measure(a.child, threads[0], a.runs, a.backend, a.images)))
        return 0
    if a.images is not None and not a.images.is_dir():
        print(f"rotwatchd bench: not a folder: {a.images}", file=sys.stderr)
        return 2
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
            r = _child(model, t, a.runs, backend, a.images)
        except subprocess.CalledProcessError as exc:
            print(f"rotwatchd bench: {model}: {exc.stderr.strip().splitlines()[-1:]}",
                  file=sys.stderr)
            return 1
        size = model.stat().st_size
        if backend in CUE_ROWS:
            size += sum(f.stat().st_size for cue in ("faces", "text")
                        for f in (model.parent / cue).glob("*.tflite"))
        rows.append({"name": model.name + CUE_ROWS.get(backend, ""),
                     "threads": t, "size_mb": size / 1e6, **r})
    print(json.dumps(rows, indent=1) if a.json else table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
