"""Build the independent realistic test set from fetched public repositories.

The set is ~300 upright images in nine kinds, listed in ``training/realistic_test.json``
(one entry per image: file, kind, repo, commit, path, licence, sha256). No image is stored in
this repository: every file is re-extracted with ``git --git-dir=<mirror> show commit:path`` from
a bare snapshot of its repository, checked against its sha256, turned upright by its EXIF
orientation, scaled to at most 1600 px on the long side and written to ``<out>/<kind>/<file>``
(JPEG quality 95, or PNG for screenshots).

    python -m training.realistic_test --mirror MIRROR --out data/realistic-test
    python -m training.realistic_test --check --validation VAL/MANIFEST.json

``--check --validation DIR/MANIFEST.json`` verifies that no repository of the manifest is a
validation source (the realistic validation set's manifest) or a reserved one
(:func:`is_reserved`),
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

# Public repositories reserved for an independent evaluation (the project's data rules): never
# fetched, opened, trained, tuned or tested on. Kept as the first 16 hex digits of the sha256 of
# each lower-cased "owner/name", so the check can refuse them without this file naming them.
RESERVED_SHA256: frozenset[str] = frozenset(
    {
        "055951a316904dca",
        "16ca0aba58ecaeda",
        "21a7a15170311df2",
        "2298e81cace67de5",
        "22d8666beb806aa1",
        "2904dcbf698f8d5a",
        "38bd51251bcb8d2e",
        "3da14fa16f6ff189",
        "3efd8c47ec00ba85",
        "43e6dee893c27af1",
        "584c2a27a0f58fe9",
        "59ea44a0e517ea4c",
        "5b6d80583b079e7a",
        "6863e1757ff553fd",
        "6e37777d53f34ba3",
        "7ff30c084d128242",
        "83185228894b4636",
        "869c430777305635",
        "8bea53b2468b7eae",
        "94aafbb572d1c36b",
        "94b462618cb54e9b",
        "9e59dff8e10dd86e",
        "a070e0c438176758",
        "b794e7d3110dc637",
        "c402c43ef7bc3488",
        "d322b05c5ba9fad7",
        "dc7979b7ebdff496",
        "eeb7929524498535",
        "f553172adabbd5d3",
    }
)


def is_reserved(repo: str) -> bool:
    """True for a repository on the reserved evaluation list (any letter case)."""
    return hashlib.sha256(repo.lower().encode()).hexdigest()[:16] in RESERVED_SHA256


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


def image_dhash(path: Path, size: int = 8) -> int:
    """Difference hash of an image file (:func:`dhash`, ``size``² bits)."""
    with Image.open(path) as im:
        im.draft("RGB", (8 * size, 8 * size))
        return dhash(im, size)


def check(
    entries: list[Entry], validation: Path, built: Path | None, max_bits: int,
    set_name: str = "test set", hash_size: int = 8,
) -> list[str]:
    """Return the problems found (empty when the set is clean).

    ``set_name`` names the set in messages; near-copies are difference hashes of ``hash_size``²
    bits at most ``max_bits`` apart.
    """
    problems: list[str] = []
    val = json.loads(validation.read_text(encoding="utf-8"))
    val_repos = {str(v["repo"]) for v in val}
    for repo in sorted({e.repo for e in entries}):
        if repo in val_repos:
            problems.append(f"{repo}: is a validation source")
        if is_reserved(repo):
            problems.append(f"{repo}: is reserved for independent evaluation")
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
        val_hashes = [(p.name, image_dhash(p, hash_size)) for p in val_files]
        ours: list[tuple[str, int]] = []
        for entry in entries:
            path = built / entry.kind / entry.file
            if path.is_file():
                ours.append((entry.file, image_dhash(path, hash_size)))
            else:
                problems.append(f"{entry.file}: not built under {built}")
        for name, h in ours:
            for vname, vh in val_hashes:
                if bin(h ^ vh).count("1") <= max_bits:
                    problems.append(f"{name}: near-copy of validation {vname}")
        for i, (name, h) in enumerate(ours):
            for other, oh in ours[i + 1 :]:
                if bin(h ^ oh).count("1") <= max_bits:
                    problems.append(f"{name}: near-copy of {other} (both in the {set_name})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    parser.add_argument("--mirror", type=Path, default=Path("mirror"),
                        help="folder of bare clones, one per repository: <owner>+<name>/repo")
    parser.add_argument("--out", type=Path, default=Path("data/realistic-test"))
    parser.add_argument("--check", action="store_true", help="check sources instead of building")
    parser.add_argument("--validation", type=Path, default=None,
                        help="the realistic validation set's MANIFEST.json (needed by --check)")
    parser.add_argument("--max-bits", type=int, default=4, help="dHash distance for near-copies")
    args = parser.parse_args(argv)
    entries = load_manifest(args.manifest)
    if args.check:
        if args.validation is None or not args.validation.is_file():
            parser.error("--check needs --validation pointing at the validation MANIFEST.json")
        problems = check(entries, args.validation, args.out, args.max_bits)
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
