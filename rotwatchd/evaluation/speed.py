"""``rotwatchd bench``: speed and footprint of each orientation model variant on this machine.

For every ``.tflite`` variant (the shipped default plus ``bench/models/*.tflite`` in a source
checkout, or the files given with ``--model``) and every thread count, one fresh subprocess
loads the model and classifies a fixed synthetic photo ``--runs`` times, or, with ``--images
DIR``, every upright image under DIR turned 4 ways and JPEG re-saved (as ``rotwatchd eval``
does), round after round until ``--runs`` predictions are timed. Reported: file size, load
time, latency per image p50/p95 (preprocessing included), throughput, the child's peak resident
memory, the CPU time per image (all threads; on a busy machine a steadier figure than the
latency), the share of predictions that ran the scene network on all four turns (``4-pass``) and
the share that ran the text network at all (``text``: both count work, free of the machine's
speed). ``--cues`` adds the whole shipped cue set (scene network + text network + face cue on
all four rotations) as the default adaptive backend (one pass, without the text network when the
scene network and faces are sure, 4 passes when unsure), always one pass (``litert``) and
always 4 passes (``litert-tta``) as more rows. The adaptive backend's time depends on the
images: time it on real photos (``--images``). The synthetic image is one the networks are
unsure of, so its adaptive row is an escalated picture's cost (one pass, then the other three
turns: a little more than the ``litert-tta`` row); the share column says so.
``--runtimes litert,onnxruntime`` times every row on each runtime (the ``.onnx`` files beside
the ``.tflite`` ones on ONNX Runtime; ``--providers`` for its execution providers) and adds
the agreement with LiteRT on the same images: the share of the same correction, and of the
same decision (turned the same way, or sent to review by both) at the backend's threshold.
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
from typing import Any

import numpy as np
from PIL import Image

from rotwatchd.model.base import default_model_dir
from rotwatchd.model.network import LITERT, RUNTIMES, Runtime

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

    from rotwatchd.evaluation.accuracy import turned, upright_images
    from rotwatchd.service.processor import MODEL_INPUT_SIDE

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
            folder: Path | None = None, runtime: Runtime = LITERT) -> dict[str, object]:
    """Run inside the child process: load, warm up, time ``runs`` predictions (each image is
    decoded before its timer starts: the time is the classifier's, preprocessing included)."""
    from rotwatchd.model import load_classifier

    items = _encoded(folder)
    t0 = time.perf_counter()
    clf = load_classifier(backend, model, threads, runtime)
    load_s = time.perf_counter() - t0
    threshold = float(getattr(clf, "min_confidence", 0.0))
    answers = []
    for item in items[:3]:
        clf.predict(decode(item))
    times, cpu, passes, texts = [], [], [], []
    for i in range(max(runs, len(items)) if folder is not None else runs):
        image = decode(items[i % len(items)])
        t, c = time.perf_counter(), time.process_time()
        pred = clf.predict(image)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        cues = dict(pred.cues)
        passes.append(cues.get("passes", PASSES.get(backend, 1.0)))
        texts.append("text" in cues)
        if i < len(items):
            answers.append((pred.correction, pred.confidence >= threshold))
    clf.close()
    arr = np.array(times) * 1000
    return {"load_ms": load_s * 1000, "p50_ms": float(np.percentile(arr, 50)),
            "p95_ms": float(np.percentile(arr, 95)), "img_per_s": 1000 / float(arr.mean()),
            "cpu_ms": float(np.mean(cpu)) * 1000,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "four_pass_share": float(np.mean(np.array(passes) == 4.0)),
            "text_share": float(np.mean(texts)), "answers": answers}


def agreement(rows: list[dict[str, Any]]) -> None:
    """Add to each non-LiteRT row its agreement with the LiteRT row of the same model,
    backend and threads: ``same_correction`` and ``same_decision`` (shares of the images)."""
    lite = {(r["name"], r["threads"]): r["answers"] for r in rows if r["runtime"] == "litert"}
    for r in rows:
        ref = lite.get((r["name"], r["threads"]))
        if r["runtime"] == "litert" or ref is None:
            continue
        pairs = list(zip(ref, r["answers"], strict=True))
        r["same_correction"] = float(np.mean([a[0] == b[0] for a, b in pairs]))
        r["same_decision"] = float(np.mean([a[1] == b[1] and (not a[1] or a[0] == b[0])
                                            for a, b in pairs]))


def variants(given: list[Path]) -> list[Path]:
    if given:
        return given
    found = [default_model_dir() / "orientation.tflite"]
    if REPO_VARIANTS.is_dir():
        found += sorted(REPO_VARIANTS.glob("*.tflite"))
    return [p for p in found if p.is_file()]


def _child(model: Path, threads: int, runs: int, backend: str, folder: Path | None,
           runtime: Runtime = LITERT) -> dict[str, object]:
    cmd = [sys.executable, "-m", "rotwatchd.evaluation.speed", "--child", str(model),
           "--threads", str(threads), "--runs", str(runs), "--backend", backend,
           "--runtimes", runtime.name, "--providers", ",".join(runtime.providers)]
    if folder is not None:
        cmd += ["--images", str(folder)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    row: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return row


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a fixed-width table; the model column is as wide as its longest name."""
    w = max([48, *(len(str(r["name"])) for r in rows)])
    head = (f"{'model':{w}s} {'runtime':>11s} {'threads':>7s} {'size MB':>8s} {'load ms':>8s} "
            f"{'p50 ms':>7s} {'p95 ms':>7s} {'img/s':>7s} {'CPU ms':>7s} {'peak MB':>8s} "
            f"{'4-pass':>7s} {'text':>5s} {'same corr':>9s} {'same dec':>8s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        agree = (f"{r['same_correction']:9.1%} {r['same_decision']:8.1%}"
                 if "same_correction" in r else f"{'':9s} {'':8s}")
        lines.append(f"{r['name']!s:{w}s} {r['runtime']!s:>11s} {r['threads']!s:>7s} "
                     f"{r['size_mb']:8.2f} {r['load_ms']:8.1f} {r['p50_ms']:7.2f} "
                     f"{r['p95_ms']:7.2f} {r['img_per_s']:7.1f} {r['cpu_ms']:7.2f} "
                     f"{r['peak_rss_mb']:8.1f} "
                     f"{r['four_pass_share']:7.0%} {r.get('text_share', 0.0):5.0%} {agree}")
    return "\n".join(lines)


def _size(model: Path, backend: str, runtime: Runtime) -> int:
    """Bytes of the network files a row loads (the cue models too for the cue rows)."""
    files = [runtime.file(model)]
    if backend in CUE_ROWS:
        files += [runtime.file(f) for cue in ("faces", "text")
                  for f in (model.parent / cue).glob("*.tflite")]
    return sum(f.stat().st_size for f in files if f.is_file())


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
    p.add_argument("--runtimes", default="litert",
                   help="comma-separated runtimes to time each row on: litert, onnxruntime")
    p.add_argument("--providers", default="CPUExecutionProvider",
                   help="onnxruntime execution providers, comma-separated")
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--backend", default="litert-scene", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    threads = [int(t) for t in a.threads.split(",")]
    providers = tuple(a.providers.split(","))
    runtimes = [Runtime(name, providers) for name in a.runtimes.split(",")]
    if a.child is not None:
        print(json.dumps(measure(a.child, threads[0], a.runs, a.backend, a.images, runtimes[0])))
        return 0
    unknown = [r.name for r in runtimes if r.name not in RUNTIMES]
    if unknown:
        print(f"rotwatchd bench: unknown runtime {unknown[0]}; choose from "
              f"{', '.join(RUNTIMES)}", file=sys.stderr)
        return 2
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
        for runtime in runtimes:
            if not runtime.file(model).is_file():
                continue  # a variant without an .onnx file is timed on LiteRT only
            try:
                r = _child(model, t, a.runs, backend, a.images, runtime)
            except subprocess.CalledProcessError as exc:
                print(f"rotwatchd bench: {model} on {runtime.name}: "
                      f"{exc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                return 1
            rows.append({"name": model.name + CUE_ROWS.get(backend, ""), "runtime": runtime.name,
                         "threads": t, "size_mb": _size(model, backend, runtime) / 1e6, **r})
    agreement(rows)
    for r in rows:
        del r["answers"]
    print(json.dumps(rows, indent=1) if a.json else table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
