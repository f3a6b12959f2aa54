"""Real phone photos for training: the CC0 clothing dataset, mixed in at a capped count.

    python -m training.sources_clothing --repo /path/to/clothing-dataset.git [--count 450]

Source: GitHub ``alexeygrigorev/clothing-dataset`` at commit ``7ed86a9c`` (folder ``images/``,
5,756 phone photos of clothes on hangers, floors and beds, about 400x533 px, CC0-1.0), read
from a bare clone with ``git show``: ``git clone --bare
https://github.com/alexeygrigorev/clothing-dataset`` gives one. None carries an EXIF
orientation; a contact sheet of 48 random ones showed all stored upright (flat-lays with the
collar or waistband at the top, shoes and hats from above are the least clear).

Only ``--count`` photos (a seeded sample, default 450: about 40 % of the photo pool then, the
training split's other 707 photos, wallpapers, drawings and paintings being the rest) are added,
so one kind of picture cannot dominate the photo share of each batch. Each goes into
``data/images/train/clothing-dataset/`` as PNG with the same downscaling as the Debian sources
and is appended to ``data/manifest.jsonl`` (split ``train``, kind ``photo``); running it again
replaces its own rows. Training split only: never validation or test.
"""

from __future__ import annotations

import argparse
import io
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageOps

from training.build_dataset import DATA, replace_train_photos

REPO = "github:alexeygrigorev/clothing-dataset"
COMMIT = "7ed86a9c"
LICENCE = "CC0-1.0"
PACKAGE = "clothing-dataset"


def _git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", "--git-dir", str(repo), *args], check=True,
                          capture_output=True).stdout


def add(repo: Path, count: int, out: Path = DATA, seed: int = 17) -> int:
    """Append ``count`` sampled photos to the manifest under ``out``; returns how many."""
    names = sorted(n for n in _git(repo, "ls-tree", "-r", "--name-only", COMMIT, "images")
                   .decode().split() if n.lower().endswith(".jpg"))
    picked = random.Random(seed).sample(names, min(count, len(names)))

    def photos() -> Iterator[tuple[str, Image.Image, dict[str, object]]]:
        for name in sorted(picked):
            raw = Image.open(io.BytesIO(_git(repo, "show", f"{COMMIT}:{name}")))
            yield PACKAGE, ImageOps.exif_transpose(raw).convert("RGB"), {
                "version": f"{REPO}@{COMMIT}", "licence": LICENCE, "origin": name}

    return replace_train_photos(out, lambda package: package == PACKAGE, photos())[PACKAGE]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repo", type=Path, required=True, help="bare clone of the dataset")
    p.add_argument("--count", type=int, default=450)
    p.add_argument("--out", type=Path, default=DATA)
    a = p.parse_args(argv)
    print(f"{add(a.repo, a.count, a.out)} clothing photos added to {a.out / 'manifest.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
