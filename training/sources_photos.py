"""Real photos from public repositories for a further training stage, listed in a JSON file.

    python -m training.sources_photos --mirror MIRROR [--out data]
    python -m training.sources_photos --check --mirror MIRROR [--against data/validation ...]

``training/sources_photos.json`` lists each chosen image as ``{"repo", "commit", "path",
"licence", "kind"}`` (``kind`` is the scene kind of the realistic sets: people, pets, indoor,
street, landscape, food_objects, old_photos). Each is read with ``git show`` from the bare
clone that ``fetch`` leaves under ``MIRROR`` (``<owner>+<name>/repo``, found with
:func:`training.realistic_test.mirror_dir`), EXIF orientation applied, downscaled like the
Debian sources (``_normalise(im, "photo")``) and written as PNG to
``data/images/train/photos-<name>/``; a row is appended to ``data/manifest.jsonl`` (split
``train``, kind ``photo``, package ``photos-<name>``, origin = path in the repository,
version ``owner/name@commit``, ``scene`` = the kind above). Running it again replaces every
row whose package starts with ``photos-``. Training split only: never validation or test.

Every image was looked at on contact sheets after EXIF orientation: only real photos, stored
upright, at least 200 px on the short side; drawings, screenshots, logos, thermal and
night-black frames, top-down shots with no "up", and three photos stored turned were dropped.

Sources (commit, licence, images by kind):

=====================================================  ========  ==============  =====
repository                                              commit    licence         count
=====================================================  ========  ==============  =====
drewnoakes/metadata-extractor-images (``jpg/``)         4beba640  owner's grant     192
tensorflow/tfjs-examples (``electron/images/``)         05217256  Apache-2.0         12
=====================================================  ========  ==============  =====

drewnoakes/metadata-extractor-images: camera test photos; its README grants "You are free to
use these media files however you wish". Kinds: 53 landscape, 50 street, 40 people,
24 food and objects, 14 indoor, 10 pets, 1 old photo. tfjs-examples (stock photos of a
classifier demo): 3 pets, 3 food and objects, 2 indoor, 3 landscape, 1 street. Both
``microsoft/Cognitive-Face-Windows`` (MIT) and the Android "dogglers" codelab (Apache-2.0)
were dropped: ``--check`` found their photos near-copied in the realistic test and
validation sets (the same pictures ship in other repositories).
Also looked at and left out: ``cristeaioan/ffml_dataset`` (MIT, 1,278 food photos, but cut
out onto white and mostly seen from above: little cue to "up"), ``weaviate/recipes`` (no
licence), ``ml5js/ml5-library`` (its own non-standard licence), ``open-mmlab/mmagic``
(COCO, ImageNet-derived and alpha-matting test images).

``--check`` refuses any repository of the realistic validation and test manifests, of the
second validation set, of the reserved list (:func:`training.realistic_test.is_reserved`) or
training-only elsewhere, and compares a difference hash of each chosen image
(:func:`training.realistic_test.dhash`, 16×16 bits, distance ≤ 16 as in
``training.realistic_val``) with every image under the ``--against`` folders. Stdlib and
Pillow only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from training.build_dataset import DATA, replace_train_photos
from training.realistic_test import (
    MANIFEST as TEST_MANIFEST,
)
from training.realistic_test import (
    TRAINING_ONLY,
    dhash,
    image_dhash,
    is_reserved,
    load_manifest,
    mirror_dir,
    upright,
)
from training.realistic_val import MANIFEST as VAL2_MANIFEST

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "sources_photos.json"
PREFIX = "photos-"
SCENES = ("people", "pets", "indoor", "street", "landscape", "food_objects", "old_photos")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclass(frozen=True)
class Source:
    """One chosen image: where it lives in a public repository, its licence and scene kind."""

    repo: str
    commit: str
    path: str
    licence: str
    kind: str

    @property
    def package(self) -> str:
        """Manifest package of the image's repository: ``photos-<name>``."""
        return PREFIX + self.repo.split("/", 1)[1]


def load_sources(path: Path = SOURCES) -> list[Source]:
    """Read the JSON list; raises ``ValueError`` on an unknown kind, a short commit or a repeat."""
    sources = [Source(**{k: str(o[k]) for k in Source.__dataclass_fields__})
               for o in json.loads(path.read_text(encoding="utf-8"))]
    for s in sources:
        if s.kind not in SCENES:
            raise ValueError(f"{s.repo}:{s.path}: unknown kind {s.kind!r}")
        if len(s.commit) != 40 or any(c not in "0123456789abcdef" for c in s.commit):
            raise ValueError(f"{s.repo}:{s.path}: commit must be 40 lowercase hex digits")
    repeats = [k for k, n in Counter((s.repo, s.path) for s in sources).items() if n > 1]
    if repeats:
        raise ValueError(f"listed twice: {repeats[:5]}")
    return sources


def read_source(mirror: Path, source: Source) -> bytes:
    """The image's bytes from the bare clone under ``mirror``; raises ``FileNotFoundError``
    when the clone is missing and ``subprocess.CalledProcessError`` when git cannot show it."""
    git_dir = mirror_dir(mirror, source.repo)
    if not git_dir.is_dir():
        raise FileNotFoundError(f"no snapshot of {source.repo} at {git_dir}")
    return subprocess.run(["git", f"--git-dir={git_dir}", "show",
                           f"{source.commit}:{source.path}"],
                          check=True, capture_output=True).stdout


def add(sources: list[Source], mirror: Path, out: Path = DATA) -> Counter[str]:
    """Write each source as PNG under ``out/images/train/<package>/`` and replace this module's
    rows in ``out/manifest.jsonl`` (created when missing); returns images written per package."""
    return replace_train_photos(out, lambda package: package.startswith(PREFIX), (
        (source.package, upright(read_source(mirror, source)),
         {"version": f"{source.repo}@{source.commit}", "licence": source.licence,
          "origin": source.path, "scene": source.kind})
        for source in sources))


def _repos_of(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    return {str(o["repo"]).lower() for o in json.loads(path.read_text(encoding="utf-8"))
            if isinstance(o, dict) and "repo" in o}


def check(sources: list[Source], mirror: Path, against: list[Path], validation: Path | None,
          max_bits: int = 16, hash_size: int = 16) -> list[str]:
    """Problems that would leak evaluation images into training (empty when clean): a source
    repository that is reserved, training-only elsewhere or named by the validation or test
    manifests, or a chosen image within ``max_bits`` of an image under ``against``."""
    problems: list[str] = []
    held_out = {e.repo.lower() for e in load_manifest(TEST_MANIFEST)}
    held_out |= {e.repo.lower() for e in load_manifest(VAL2_MANIFEST)}
    if validation is not None:
        held_out |= _repos_of(validation)
    for repo in sorted({s.repo for s in sources}):
        if is_reserved(repo):
            problems.append(f"{repo}: reserved for independent evaluation")
        if repo.lower() in held_out:
            problems.append(f"{repo}: is a validation or test source")
        if repo in TRAINING_ONLY:
            problems.append(f"{repo}: training-only source used elsewhere")
    theirs = [(p, image_dhash(p, hash_size)) for folder in against if folder.is_dir()
              for p in sorted(folder.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    for source in sources:
        h = dhash(upright(read_source(mirror, source)), hash_size)
        for path, th in theirs:
            if bin(h ^ th).count("1") <= max_bits:
                problems.append(f"{source.repo}:{source.path}: near-copy of {path}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--mirror", type=Path, required=True,
                   help="folder of bare clones, one per repository: <owner>+<name>/repo")
    p.add_argument("--out", type=Path, default=DATA)
    p.add_argument("--sources", type=Path, default=SOURCES)
    p.add_argument("--check", action="store_true", help="check for leaks instead of adding")
    p.add_argument("--against", type=Path, nargs="*",
                   default=[DATA / "validation", DATA / "realistic-val", DATA / "realistic-test"],
                   help="built evaluation sets whose images must not be near-copied")
    p.add_argument("--validation", type=Path, default=None,
                   help="the realistic validation set's MANIFEST.json (its repositories)")
    p.add_argument("--max-bits", type=int, default=16)
    a = p.parse_args(argv)
    sources = load_sources(a.sources)
    try:
        return _run(a, sources)
    except FileNotFoundError as exc:  # a repository's bare clone is not under --mirror
        print(f"error: {exc} (--mirror: a folder of bare clones, <owner>+<name>/repo)",
              file=sys.stderr)
    except subprocess.CalledProcessError as exc:  # the clone lacks the pinned commit or path
        said = exc.stderr.decode(errors="replace").strip() if exc.stderr else ""
        print(f"error: {' '.join(map(str, exc.cmd))}: {said or f'exit {exc.returncode}'}",
              file=sys.stderr)
    return 2


def _run(a: argparse.Namespace, sources: list[Source]) -> int:
    if a.check:
        problems = check(sources, a.mirror, a.against, a.validation, a.max_bits)
        for line in problems:
            print(line)
        compared = [str(f) for f in a.against if f.is_dir()]
        print(f"{len(sources)} images from {len({s.repo for s in sources})} repositories "
              f"against {compared}: {len(problems)} problem(s)")
        return 1 if problems else 0
    counts = add(sources, a.mirror, a.out)
    for package, n in sorted(counts.items()):
        print(f"{package:50s} {n:4d}")
    for kind, n in sorted(Counter(s.kind for s in sources).items()):
        print(f"  {kind:12s} {n:4d}")
    print(f"{sum(counts.values())} photos added to {a.out / 'manifest.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
