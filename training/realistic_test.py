"""Build the independent realistic test set from fetched public repositories.

The set is ~300 upright images in nine kinds, listed in ``training/realistic_test.json``
(one entry per image: file, kind, repo, commit, path, licence, sha256). No image is stored in
this repository: every file is re-extracted with ``git --git-dir=<mirror> show commit:path`` from
a bare snapshot of its repository, checked against its sha256, turned upright by its EXIF
orientation, scaled to at most 1600 px on the long side and written to ``<out>/<kind>/<file>``
(JPEG quality 95, or PNG for screenshots).

    python -m training.realistic_test --mirror /work/.mirror --out data/realistic-test
    python -m training.realistic_test --check

``--check`` verifies that no repository of the manifest is a validation source
(``../shared/validation/MANIFEST.json``) or a reserved one (``RESERVED``, from MODEL-DATA.md),
that no image's sha256 equals a validation image's, and, where the built set exists, that no
built image is a near-copy (difference hash) of a validation image or of another test image.

Stdlib and Pillow only.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "realistic_test.json"
DEFAULT_VALIDATION = HERE.parent.parent / "shared" / "validation" / "MANIFEST.json"
FALLBACK_VALIDATION = Path("/work/shared/validation/MANIFEST.json")

KINDS = (
    "people",
    "pets",
    "indoor",
    "street",
    "landscape",
    "food_objects",
    "documents",
    "screenshots",
    "old_photos",
)
MAX_SIDE = 1600
JPEG_QUALITY = 95

# Public repositories reserved for an independent evaluation (MODEL-DATA.md): never fetched,
# opened, trained, tuned or tested on.
RESERVED: frozenset[str] = frozenset(
    {
        "BIDS/BSDS500",
        "EliSchwartz/imagenet-sample-images",
        "JaidedAI/EasyOCR",
        "JingyunLiang/SwinIR",
        "Kunzisoft/KeePassDX",
        "TeamNewPipe/NewPipe",
        "TencentARC/GFPGAN",
        "ageitgey/face_recognition",
        "clovaai/donut",
        "cszn/KAIR",
        "danielgatis/rembg",
        "dmlc/web-data",
        "facebookresearch/segment-anything",
        "google-ai-edge/mediapipe",
        "google/mediapipe",
        "ianare/exif-samples",
        "libre-tube/LibreTube",
        "microsoft/Bringing-Old-Photos-Back-to-Life",
        "naptha/tesseract.js",
        "ocrmypdf/OCRmyPDF",
        "open-mmlab/mmocr",
        "open-mmlab/mmpose",
        "photoprism/photoprism",
        "pjreddie/darknet",
        "sczhou/CodeFormer",
        "serengil/deepface",
        "xinntao/Real-ESRGAN",
        "zzzDavid/ICDAR-2019-SROIE",
        "recurser/exif-orientation-examples",
    }
)
# Training-only sources that a test set must not share either.
TRAINING_ONLY: frozenset[str] = frozenset({"alexeygrigorev/clothing-dataset"})


@dataclass(frozen=True)
class Entry:
    """One image of the test set."""

    file: str
    kind: str
    repo: str
    commit: str
    path: str
    licence: str
    sha256: str

    @classmethod
    def from_json(cls, obj: dict[str, str]) -> Entry:
        entry = cls(**{k: str(obj[k]) for k in cls.__dataclass_fields__})
        if entry.kind not in KINDS:
            raise ValueError(f"{entry.file}: unknown kind {entry.kind!r}")
        if len(entry.commit) != 40 or any(c not in "0123456789abcdef" for c in entry.commit):
            raise ValueError(f"{entry.file}: commit must be 40 lowercase hex digits")
        if "/" in entry.file or not entry.file:
            raise ValueError(f"{entry.file}: file must be a plain name")
        return entry


def load_manifest(path: Path = MANIFEST) -> list[Entry]:
    entries = [Entry.from_json(o) for o in json.loads(path.read_text(encoding="utf-8"))]
    names = Counter(e.file for e in entries)
    dupes = [n for n, c in names.items() if c > 1]
    if dupes:
        raise ValueError(f"duplicate file names in manifest: {dupes[:5]}")
    return entries


def mirror_dir(mirror: Path, repo: str) -> Path:
    """The bare git directory that ``fetch`` leaves for ``owner/name``."""
    return mirror / repo.replace("/", "+", 1) / "repo"


def read_blob(mirror: Path, entry: Entry) -> bytes:
    git_dir = mirror_dir(mirror, entry.repo)
    if not git_dir.is_dir():
        raise FileNotFoundError(f"no snapshot of {entry.repo} at {git_dir}")
    return subprocess.run(
        ["git", f"--git-dir={git_dir}", "show", f"{entry.commit}:{entry.path}"],
        check=True,
        capture_output=True,
    ).stdout


def upright(data: bytes) -> Image.Image:
    """Decode, apply EXIF orientation, flatten alpha onto white, return RGB."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        img = ImageOps.exif_transpose(im)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        img = canvas
    else:
        img = img.convert("RGB")
    if max(img.size) > MAX_SIDE:
        img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return img


def encode(img: Image.Image, kind: str) -> bytes:
    buf = io.BytesIO()
    if kind == "screenshots":
        img.save(buf, format="PNG", optimize=False)
    else:
        img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def build(entries: list[Entry], mirror: Path, out: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for entry in entries:
        data = read_blob(mirror, entry)
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.sha256:
            raise ValueError(f"{entry.file}: sha256 {digest} != manifest {entry.sha256}")
        target = out / entry.kind / entry.file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encode(upright(data), entry.kind))
        counts[entry.kind] += 1
    return counts


def dhash(img: Image.Image, size: int = 8) -> int:
    """Difference hash of a grey thumbnail (size+1 × size), as an int of size² bits."""
    grey = img.convert("L").resize((size + 1, size), Image.Resampling.BILINEAR)
    px = grey.tobytes()
    bits = 0
    for row in range(size):
        for col in range(size):
            left = px[row * (size + 1) + col]
            right = px[row * (size + 1) + col + 1]
            bits = (bits << 1) | (left > right)
    return bits


def image_dhash(path: Path) -> int:
    with Image.open(path) as im:
        im.draft("RGB", (64, 64))
        return dhash(im)


def check(entries: list[Entry], validation: Path, built: Path | None, max_bits: int) -> list[str]:
    """Return the problems found (empty when the set is clean)."""
    problems: list[str] = []
    val = json.loads(validation.read_text(encoding="utf-8"))
    val_repos = {str(v["repo"]) for v in val}
    for repo in sorted({e.repo for e in entries}):
        if repo in val_repos:
            problems.append(f"{repo}: is a validation source")
        if repo in RESERVED or repo.lower() in {r.lower() for r in RESERVED}:
            problems.append(f"{repo}: is reserved (MODEL-DATA.md)")
        if repo in TRAINING_ONLY:
            problems.append(f"{repo}: is a training source")
    val_dir = validation.parent
    val_files = [val_dir / str(v["file"]) for v in val if (val_dir / str(v["file"])).is_file()]
    val_sha = {hashlib.sha256(p.read_bytes()).hexdigest(): p.name for p in val_files}
    for v in val:  # a validation manifest may carry the originals' sha256 too
        if "sha256" in v:
            val_sha[str(v["sha256"])] = str(v["file"])
    for entry in entries:
        if entry.sha256 in val_sha:
            problems.append(f"{entry.file}: same bytes as validation {val_sha[entry.sha256]}")
    if built is not None and built.is_dir():
        val_hashes = [(p.name, image_dhash(p)) for p in val_files]
        ours: list[tuple[str, int]] = []
        for entry in entries:
            path = built / entry.kind / entry.file
            if path.is_file():
                ours.append((entry.file, image_dhash(path)))
            else:
                problems.append(f"{entry.file}: not built under {built}")
        for name, h in ours:
            for vname, vh in val_hashes:
                if bin(h ^ vh).count("1") <= max_bits:
                    problems.append(f"{name}: near-copy of validation {vname}")
        for i, (name, h) in enumerate(ours):
            for other, oh in ours[i + 1 :]:
                if bin(h ^ oh).count("1") <= max_bits:
                    problems.append(f"{name}: near-copy of {other} (both in the test set)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    parser.add_argument("--mirror", type=Path, default=Path("/work/.mirror"))
    parser.add_argument("--out", type=Path, default=Path("data/realistic-test"))
    parser.add_argument("--check", action="store_true", help="check sources instead of building")
    parser.add_argument("--validation", type=Path, default=None)
    parser.add_argument("--max-bits", type=int, default=4, help="dHash distance for near-copies")
    args = parser.parse_args(argv)
    entries = load_manifest(args.manifest)
    if args.check:
        validation = args.validation or (
            DEFAULT_VALIDATION if DEFAULT_VALIDATION.is_file() else FALLBACK_VALIDATION
        )
        problems = check(entries, validation, args.out, args.max_bits)
        for p in problems:
            print(p)
        repos = len({e.repo for e in entries})
        print(f"{len(entries)} images from {repos} repositories: {len(problems)} problem(s)")
        return 1 if problems else 0
    counts = build(entries, args.mirror, args.out)
    for kind in KINDS:
        print(f"{kind:13s} {counts[kind]:4d}")
    print(f"{'total':13s} {sum(counts.values()):4d}  -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
