"""Build the labelled upright-image dataset from nothing.

    python -m training.build_dataset            # -> data/images/..., data/manifest.jsonl

Fetches every package in ``training.sources.PACKAGES`` (apt-get download + dpkg-deb -x, no
installation), pulls out the upright pictures, drops the committed no-up list, downscales each
to a long side of at most 448 px (lossless PNG, so no JPEG grid survives into training) and
writes a manifest line per image: file, source package, version, licence, sha256 of the
original bytes, split and kind. Documents are rendered on the fly from Debian fonts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from PIL import Image

from training.documents import render_set
from training.sources import PACKAGES, ROOT, collect, package_licences, package_version, split_for

DATA = ROOT / "data"
LONG_SIDE = 448
DOC_COUNTS = {"train": 1800, "val": 240, "test": 400}


def _normalise(im: Image.Image, kind: str) -> Image.Image:
    keep_alpha = kind == "stamp"
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if keep_alpha:
        im = im.convert("RGBA")
    elif im.mode in ("RGBA", "LA"):  # flatten transparency of non-stamps onto white
        flat = Image.new("RGB", im.size, (255, 255, 255))
        flat.paste(im.convert("RGBA"), mask=im.convert("RGBA").getchannel("A"))
        im = flat
    else:
        im = im.convert("RGB")
    scale = LONG_SIDE / max(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                       Image.Resampling.LANCZOS)
    return im


def _sha(im: Image.Image) -> str:
    return hashlib.sha256(im.tobytes()).hexdigest()


def replace_train_photos(out: Path, owns: Callable[[str], bool],
                         photos: Iterable[tuple[str, Image.Image, dict[str, object]]]
                         ) -> Counter[str]:
    """Replace a photo source's rows in ``out/manifest.jsonl`` (created when missing): drop
    every row whose package ``owns``, then write each ``(package, upright image, fields)`` as
    PNG at ``images/train/<package>/NNNNN.png`` (numbered per package, ``_normalise``d as a
    photo) and append its row: file, package, sha256 of the pixels, split ``train``, kind
    ``photo``, ``alpha`` false, and ``fields`` (version, licence, origin ...). Running it
    again replaces, never duplicates. Returns images written per package."""
    manifest = out / "manifest.jsonl"
    old = manifest.read_text().splitlines() if manifest.is_file() else []
    rows = [r for r in old if r.strip() and not owns(json.loads(r)["package"])]
    counts: Counter[str] = Counter()
    for package, im, fields in photos:
        rel = Path("images") / "train" / package / f"{counts[package]:05d}.png"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        _normalise(im, "photo").save(out / rel, compress_level=1)
        rows.append(json.dumps({"file": str(rel), "package": package, "version": fields["version"],
                                "licence": fields["licence"], "sha256": _sha(im),
                                "split": "train", "kind": "photo", "origin": fields["origin"],
                                "alpha": False, **{k: v for k, v in fields.items()
                                                   if k not in ("version", "licence", "origin")}}))
        counts[package] += 1
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("".join(f"{row}\n" for row in rows))  # none: empty, not one blank line
    return counts


def build(out: Path = DATA) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for package in PACKAGES:
        t0 = time.time()
        version, licence = None, None
        n = 0
        for raw in collect(package):
            split = split_for(package, raw.kind)
            if split is None:
                continue
            if version is None:
                version, licence = package_version(package), package_licences(package)
            sha = _sha(raw.image)
            im = _normalise(raw.image, raw.kind)
            rel = Path("images") / split / package / f"{n:05d}.png"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            im.save(out / rel, compress_level=1)
            rows.append({"file": str(rel), "package": package, "version": version,
                         "licence": licence, "sha256": sha, "split": split, "kind": raw.kind,
                         "origin": raw.origin, "alpha": im.mode == "RGBA"})
            n += 1
        took = time.time() - t0
        print(f"{package:30s} {PACKAGES[package]:5s} {n:5d} images  {took:5.1f}s", flush=True)
    for split, count in DOC_COUNTS.items():
        t0 = time.time()
        fonts = "fonts-dejavu-core fonts-noto-core fonts-noto-cjk" if split != "test" else \
            "fonts-liberation2 fonts-noto-cjk"
        seed = {"train": 1, "val": 2, "test": 3}[split]
        for n, im in enumerate(render_set(split, count, seed=seed)):
            rel = Path("images") / split / "documents" / f"{n:05d}.png"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            im.save(out / rel, compress_level=1)
            rows.append({"file": str(rel), "package": "synthetic-documents",
                         "version": "text: stellarium-data; fonts: " + fonts,
                         "licence": "GPL-2+ text / OFL-1.1 fonts", "sha256": _sha(im),
                         "split": split, "kind": "document", "origin": f"render#{n}",
                         "alpha": False})
        print(f"documents {split:5s} {count:5d} pages  {time.time() - t0:5.1f}s", flush=True)
    with open(out / "manifest.jsonl", "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return rows


def eval_dirs(rows: list[dict[str, object]], out: Path = DATA) -> None:
    """Symlink val/test images into folders ``rotwatchd eval`` takes: one subfolder per source.

    data/eval/{val,test}-photos/<source>/, {val,test}-docs/documents/, test-paintings/,
    val-art/<source>/ (validation wallpapers that are renderings or logos, not photos).
    """
    import shutil

    shutil.rmtree(out / "eval", ignore_errors=True)
    for row in rows:
        split, package, kind = str(row["split"]), str(row["package"]), str(row["kind"])
        if split == "train":
            continue
        if kind == "document":
            folder = f"{split}-docs/documents"
        elif kind == "art":
            folder = f"{split}-art/{package}"
        elif kind == "paintings":
            folder = f"{split}-paintings/gcompris-paintings"
        elif package == "gcompris-qt-data":
            folder = f"{split}-photos/gcompris-{kind.replace('_', '-')}"
        else:
            folder = f"{split}-photos/{package}"
        link = out / "eval" / folder / Path(str(row["file"])).name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((out / str(row["file"])).resolve())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DATA)
    args = parser.parse_args(argv)
    rows = build(args.out)
    eval_dirs(rows, args.out)
    print(f"{len(rows)} images -> {args.out / 'manifest.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
