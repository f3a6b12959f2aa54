"""Benchmark: writing the corrected copy of a 12-megapixel JPEG.

Compares rotwatchd's writer paths with a plain Pillow decode / rotate / re-encode at quality 95,
and measures what each costs in fidelity: PSNR of the decoded output against the exact
transform of the decoded source (inf = identical pixels).

    nice -n 15 .venv/bin/python bench/bench_writer.py [--repeats 3]

(a few minutes: the HEIC re-encode row runs the x265 encoder on 12 MP once)

The source images are synthetic but photo-like (smooth light, textures, sensor noise), written
at quality 92 with 4:2:0 chroma like a phone or camera: 4032x3024 (MCU-aligned) and 4000x3000
(3000 is not a multiple of the 16-px MCU, so a 90-degree turn cannot be lossless).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rotwatchd.formats.image import UPRIGHT_TRANSPOSE
from rotwatchd.formats.sniff import register_heif
from rotwatchd.output.lossless_jpeg import find_jpegtran
from rotwatchd.output.writer import WriteResult, write_corrected


def photo_like(width: int, height: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 90 + 70 * np.sin(x / width * 2.1 + 0.3) * np.cos(y / height * 1.7)
    texture = 18 * np.sin(x / 7.0 + np.sin(y / 23.0) * 3) * (y > height * 0.55)
    leaves = 25 * np.sin((x + y) / 3.1) * np.sin((x - y) / 4.3) * (x < width * 0.3)
    base = light + texture + leaves
    rgb = np.stack([base * 1.05 + 10, base * 0.95 + 5, base * 0.8 + 25 * (y / height)], axis=-1)
    rgb += rng.normal(0, 3.0, rgb.shape).astype(np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def fidelity(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """(PSNR in dB, largest absolute level difference) of ``a`` against ``b``."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    mse = float(np.mean(diff**2))
    score = float("inf") if mse == 0 else 10 * float(np.log10(255.0**2 / mse))
    return score, int(np.abs(diff).max())


def exact_reference(source: Path, orientation: int) -> np.ndarray:
    with Image.open(source) as im:
        return np.asarray(im.convert("RGB").transpose(UPRIGHT_TRANSPOSE[orientation]))


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def pillow_q95(source: Path, target: Path, orientation: int) -> None:
    with Image.open(source) as im:
        out = im.transpose(UPRIGHT_TRANSPOSE[orientation])
        out.save(target, "JPEG", quality=95, exif=im.info.get("exif", b""),
                 icc_profile=im.info.get("icc_profile"))


def rewrite(source: Path, target: Path, **kwargs: Any) -> WriteResult:
    """write_corrected to a free ``target`` (it never replaces a file: each timed run writes
    afresh instead of finding its own earlier output)."""
    target.unlink(missing_ok=True)
    return write_corrected(source, target, **kwargs)


def timed(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _heif_rows(repeats: int) -> list[tuple[str, str, float, tuple[float, int] | None, float]]:
    """A 12 MP HEIC turned by its irot property vs decoded, turned and re-encoded (q95)."""
    try:
        import pillow_heif
    except ImportError:
        return []
    register_heif()
    rows: list[tuple[str, str, float, tuple[float, int] | None, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        src, out, base = Path(tmp) / "src.heic", Path(tmp) / "out.heic", Path(tmp) / "re.heic"
        pillow_heif.from_pillow(Image.fromarray(photo_like(4032, 3024))).save(src, quality=90)
        exact = exact_reference(src, 6)
        result = rewrite(src, out, orientation=6)
        secs = timed(lambda: rewrite(src, out, orientation=6), repeats)
        rows.append(("4032x3024 HEIC", f"rotwatchd {result.action}", secs,
                     fidelity(decoded(out), exact), out.stat().st_size / src.stat().st_size))

        def reencode() -> None:
            with Image.open(src) as im:
                im.transpose(UPRIGHT_TRANSPOSE[6]).save(base, "HEIF", quality=95)
        secs = timed(reencode, 1)
        rows.append(("4032x3024 HEIC", "pillow-heif decode/rotate/q95", secs,
                     fidelity(decoded(base), exact), base.stat().st_size / src.stat().st_size))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    jpegtran = find_jpegtran()
    print(f"jpegtran: {jpegtran or 'NOT FOUND (lossless rows fall back to re-encode)'}")
    rows: list[tuple[str, str, float, tuple[float, int] | None, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sources = {}
        for w, h in ((4032, 3024), (4000, 3000)):
            src = folder / f"src_{w}x{h}.jpg"
            Image.fromarray(photo_like(w, h)).save(src, quality=92, subsampling=2)
            sources[(w, h)] = src
        cases = [((4032, 3024), 6), ((4032, 3024), 3), ((4000, 3000), 6), ((4000, 3000), 3)]
        out, base = folder / "out.jpg", folder / "pillow.jpg"
        for size, orientation in cases:
            src = sources[size]
            exact = exact_reference(src, orientation)
            label = f"{size[0]}x{size[1]} o={orientation}"
            result = rewrite(src, out, orientation=orientation)
            secs = timed(lambda s=src, o=orientation: rewrite(s, out, orientation=o),
                         args.repeats)
            rows.append((label, f"rotwatchd {result.action}", secs, fidelity(decoded(out), exact),
                         out.stat().st_size / src.stat().st_size))
            secs = timed(lambda s=src, o=orientation: pillow_q95(s, base, o), args.repeats)
            rows.append((label, "Pillow decode/rotate/q95", secs, fidelity(decoded(base), exact),
                         base.stat().st_size / src.stat().st_size))
        src = sources[(4032, 3024)]
        tag = folder / "tag.jpg"
        rows.append(("4032x3024 o=6", "rotwatchd tag mode",
                     timed(lambda: rewrite(src, tag, orientation=6, mode="tag"),
                           args.repeats), None, tag.stat().st_size / src.stat().st_size))
        copy = folder / "copy.jpg"
        rows.append(("4032x3024 o=1", "rotwatchd upright copy",
                     timed(lambda: rewrite(src, copy, orientation=1), args.repeats),
                     fidelity(decoded(copy), decoded(src)), 1.0))
    rows.extend(_heif_rows(args.repeats))
    print(f"{'image':<16} {'path':<34} {'seconds':>8} {'PSNR dB':>8} {'max|d|':>6} {'size':>6}")
    for label, path, secs, quality, size in rows:
        score, worst = (f"{quality[0]:8.2f}", f"{quality[1]:6d}") if quality else ("n/a", "n/a")
        print(f"{label:<16} {path:<34} {secs:8.3f} {score:>8} {worst:>6} {size:6.2f}")
    print("PSNR, max|d|: decoded output vs the exact transform of the decoded source (tag mode:\n"
          "pixels untouched); size: output/input bytes. rotwatchd rows include fsync + rename.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
