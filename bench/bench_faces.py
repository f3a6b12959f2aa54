"""Benchmark and measure the face orientation cue (rotwatchd.model.faces).

Three subcommands, each printing a table:

  prepare   build an upright photo set from allowed Debian packages (downloaded with
            `apt-get download`, unpacked with `dpkg-deb -x`) into a cache folder
  latency   p50/p95 per image of FaceCue.scores() (all 4 rotations) with 1 and 2 threads
  accuracy  turn each photo 4 ways, re-save as JPEG, score, and report how often the best
            rotation is the true upright at each (score, margin) threshold

Reproduce (from the repo root; prepare ~3 min, accuracy ~2-6 min per config on 2 shared cores):
  python bench/bench_faces.py prepare --cache cache/faces
  python bench/bench_faces.py latency --config short/pairs/35 --config short+full/pairs/35
  python bench/bench_faces.py accuracy --config short/pairs/35 --config short+full/pairs/35
A config is DETECTORS/LAYOUT/MAX_TILT (see FaceCue); the default is the shipped short/pairs/35.
"""

from __future__ import annotations

import argparse
import io
import random
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rotwatchd.model.base import CORRECTIONS  # noqa: E402
from rotwatchd.model.faces import FaceCue  # noqa: E402

MAX_SIDE = 640  # photos are stored at this size; the daemon feeds the cue downscaled images
WALLPAPERS = (
    "plasma-workspace-wallpapers",
    "gnome-backgrounds",
    "mate-backgrounds",
    "ukui-wallpapers",
    "sway-backgrounds",
)
PACKAGES = ("kphotoalbum", "gramps", "gcompris-qt-data", *WALLPAPERS)
PHOTOS_OF_PEOPLE = ("kphotoalbum", "gramps")  # camera photos, most showing people
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


# ---------------------------------------------------------------- prepare: photo set
def _unpack(package: str, cache: Path) -> Path:
    """apt-get download + dpkg-deb -x into cache/src/<package> (skipped when present)."""
    root = cache / "src" / package
    if root.is_dir():
        return root
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob(f"{package}_*.deb")):
        subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
    deb = sorted(debs.glob(f"{package}_*.deb"))[-1]
    root.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def _kphotoalbum(root: Path) -> Iterator[tuple[str, Image.Image]]:
    demo = root / "usr/share/kphotoalbum/demo"
    # index.xml's angle is the clockwise turn KPhotoAlbum applies to show the photo upright.
    angles = {
        e.get("file", ""): int(e.get("angle", "0"))
        for e in ET.parse(demo / "index.xml").iter("image")
    }
    for path in sorted(demo.glob("*.jpg")):
        image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        turn = angles.get(path.name, 0)
        yield path.stem, image.rotate(-turn, expand=True) if turn else image


def _gramps(root: Path) -> Iterator[tuple[str, Image.Image]]:
    """Portraits and group photos of Gramps's example family tree."""
    example = root / "usr/share/doc/gramps/example/gramps"
    for path in sorted(p for p in example.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        with Image.open(path) as image:
            yield path.stem, _flatten(ImageOps.exif_transpose(image))


def _gcompris(root: Path) -> Iterator[tuple[str, Image.Image]]:
    """Carve the raw RIFF/WEBP chunks out of GCompris's Qt resource bundles."""
    for rcc in sorted((root / "usr/share/gcompris-qt/rcc").glob("*.rcc")):
        blob = rcc.read_bytes()
        start, n = blob.find(b"RIFF"), 0
        while start >= 0:
            size = int.from_bytes(blob[start + 4 : start + 8], "little")
            if blob[start + 8 : start + 12] == b"WEBP":
                try:
                    image = Image.open(io.BytesIO(blob[start : start + 8 + size]))
                    image.load()
                except OSError:
                    image = None
                if image is not None and min(image.size) >= 128:
                    n += 1
                    yield f"{rcc.stem}-{n:03d}", _flatten(image)
            start = blob.find(b"RIFF", start + 4)


def _wallpapers(root: Path) -> Iterator[tuple[str, Image.Image]]:
    seen: set[str] = set()
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    # Plasma ships each wallpaper at many resolutions: keep the largest landscape one.
    for path in sorted(files, key=lambda p: -p.stat().st_size):
        key = path.parent.parent.parent.name if path.parent.name == "images" else path.stem
        if key in seen or "/doc/" in str(path):
            continue
        seen.add(key)
        with Image.open(path) as image:
            if min(image.size) >= 256:
                yield key, _flatten(image)


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        back = Image.new("RGB", rgba.size, (128, 128, 128))
        back.paste(rgba, mask=rgba.getchannel("A"))
        return back
    return image.convert("RGB")


def prepare(cache: Path) -> int:
    out = cache / "photos"
    print(f"{'source':32s} {'images':>6s}")
    for package in PACKAGES:
        root = _unpack(package, cache)
        readers = {"kphotoalbum": _kphotoalbum, "gramps": _gramps, "gcompris-qt-data": _gcompris}
        reader = readers.get(package, _wallpapers)
        folder = out / package
        if folder.is_dir():  # already prepared: keep it (delete the folder to rebuild)
            print(f"{package:32s} {len(_photos(folder)):6d}")
            continue
        folder.mkdir(parents=True)
        count = 0
        for name, image in reader(root):
            image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
            image.save(folder / f"{name}.png")
            count += 1
        print(f"{package:32s} {count:6d}")
    return 0


# ---------------------------------------------------------------- latency
def _photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


class Config:
    """A FaceCue configuration written as DETECTORS/LAYOUT/MAX_TILT, e.g. short+full/pairs/35
    (MAX_TILT "none" turns the keypoint tilt check off)."""

    def __init__(self, text: str) -> None:
        parts = text.split("/")
        self.text = text
        self.detectors = tuple(parts[0].split("+"))
        self.layout = parts[1] if len(parts) > 1 else "pairs"
        tilt = parts[2] if len(parts) > 2 else "35"
        self.max_tilt = None if tilt == "none" else float(tilt)

    def cue(self, threads: int = 1) -> FaceCue:
        return FaceCue(
            detectors=self.detectors, threads=threads, layout=self.layout, max_tilt=self.max_tilt
        )


def latency(photos: Path, configs: list[Config], count: int) -> int:
    files = _photos(photos)[:: max(1, len(_photos(photos)) // count)][:count]
    images = [Image.open(p).convert("RGB") for p in files]
    print(f"{len(images)} images, max side {MAX_SIDE}, 4 rotations each, ms per image")
    # CPU time of this process is the honest cost on a shared machine (wall time includes
    # waiting for other jobs); with 2 threads it sums both threads' work.
    head = ("config", "threads", "wall p50", "wall p95", "cpu p50", "cpu p95", "load")
    print("{:24s} {:>7s} {:>8s} {:>8s} {:>8s} {:>8s} {:>7s}".format(*head))
    for config in configs:
        for threads in (1, 2):
            t0 = time.perf_counter()
            cue = config.cue(threads)
            load_ms = (time.perf_counter() - t0) * 1000
            for image in images[:3]:  # warm-up: first invokes pay for XNNPACK packing
                cue.scores(image)
            wall, cpu = [], []
            for image in images:
                t, c = time.perf_counter(), time.process_time()
                cue.scores(image)
                wall.append((time.perf_counter() - t) * 1000)
                cpu.append((time.process_time() - c) * 1000)
            w50, w95 = np.percentile(wall, [50, 95])
            c50, c95 = np.percentile(cpu, [50, 95])
            print(
                f"{config.text:24s} {threads:7d} {w50:8.2f} {w95:8.2f} {c50:8.2f} {c95:8.2f} "
                f"{load_ms:7.1f}"
            )
            cue.close()
    return 0


# ---------------------------------------------------------------- accuracy
def _resaved(image: Image.Image, correction: int, rng: random.Random) -> Image.Image:
    """The upright image turned so that it needs ``correction`` (clockwise) to be upright,
    then JPEG re-saved at a random quality, as files arrive in the inbox."""
    turned = image.rotate(correction, expand=True) if correction else image  # CCW turn
    buf = io.BytesIO()
    turned.save(buf, "JPEG", quality=rng.randint(70, 95))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


class Scored:
    """Score vectors of every turned copy: ``truth`` (index into CORRECTIONS), ``scores``
    ([n, 4]), and for each row its source package and photo name."""

    def __init__(self, photos: Path, config: Config) -> None:
        cue = config.cue()
        rng = random.Random(1234)
        truth, scores, self.source, self.name = [], [], [], []
        for path in _photos(photos):
            upright = Image.open(path).convert("RGB")
            for i, correction in enumerate(CORRECTIONS):
                truth.append(i)
                scores.append(cue.scores(_resaved(upright, correction, rng)))
                self.source.append(path.parent.name)
                self.name.append(f"{path.stem}@{correction}")
        cue.close()
        self.truth = np.array(truth)
        self.scores = np.array(scores, dtype=np.float64)
        order = np.sort(self.scores, axis=1)
        self.best, self.margin = order[:, -1], order[:, -1] - order[:, -2]
        self.correct = self.scores.argmax(axis=1) == self.truth

    def mask(self, sources: tuple[str, ...] | None = None) -> np.ndarray:
        if sources is None:
            return np.ones(len(self.truth), dtype=bool)
        return np.isin(np.array(self.source), sources)


def report(scored: Scored, subset: np.ndarray, title: str) -> None:
    """Precision and coverage of "trust the face cue" at (best score, margin) thresholds."""
    print(f"\n{title}: {int(subset.sum())} turned copies")
    head = ("best>=", "margin>=", "fired", "cover%", "right", "prec%")
    print("{:>7s} {:>8s} {:>6s} {:>7s} {:>6s} {:>6s}".format(*head))
    for t in (0.5, 0.6, 0.7, 0.8, 0.9):
        for m in (0.0, 0.1, 0.2, 0.3):
            fired = subset & (scored.best >= t) & (scored.margin >= m)
            n, ok = int(fired.sum()), int((fired & scored.correct).sum())
            prec = 100.0 * ok / n if n else float("nan")
            print(f"{t:7.2f} {m:8.2f} {n:6d} {100 * n / subset.sum():7.1f} {ok:6d} {prec:6.1f}")


def accuracy(photos: Path, configs: list[Config]) -> int:
    for config in configs:
        scored = Scored(photos, config)
        print(f"\n=== config: {config.text}")
        head = ("source", "copies", "best>=.5", "right", "best>=.8", "right")
        print("{:32s} {:>6s} {:>8s} {:>6s} {:>8s} {:>6s}".format(*head))
        for source in sorted(set(scored.source)):
            sub = scored.mask((source,))
            f5, f8 = sub & (scored.best >= 0.5), sub & (scored.best >= 0.8)
            print(
                f"{source:32s} {int(sub.sum()):6d} {int(f5.sum()):8d} "
                f"{int((f5 & scored.correct).sum()):6d} {int(f8.sum()):8d} "
                f"{int((f8 & scored.correct).sum()):6d}"
            )
        report(scored, scored.mask(PHOTOS_OF_PEOPLE), f"{config.text} on real photos of people")
        report(scored, scored.mask(), f"{config.text} on all sources")
        wrong = np.flatnonzero((scored.best >= 0.7) & ~scored.correct)
        print("\nwrong with best >= 0.7:" + ("" if len(wrong) else " none"))
        for i in wrong:
            vec = " ".join(f"{v:.2f}" for v in scored.scores[i])
            print(f"  {scored.source[i]}/{scored.name[i]}: {vec}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--cache", type=Path, default=Path("cache/faces"))
    for name in ("latency", "accuracy"):
        p = sub.add_parser(name)
        p.add_argument("--photos", type=Path, default=Path("cache/faces/photos"))
        p.add_argument(
            "--config",
            action="append",
            help="DETECTORS/LAYOUT/MAX_TILT, repeatable (default: the shipped short/pairs/35)",
        )
        if name == "latency":
            p.add_argument("--count", type=int, default=60)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        return prepare(args.cache)
    configs = [Config(c) for c in (args.config or ["short/pairs/35"])]
    if args.command == "latency":
        return latency(args.photos, configs, args.count)
    return accuracy(args.photos, configs)


if __name__ == "__main__":
    sys.exit(main())
