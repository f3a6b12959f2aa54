"""Build the second realistic *validation* set (calibration) from fetched public repositories.

Upright images of the kinds the scene network is weak on (food and objects, pets, indoor rooms,
documents and receipts, screenshots, old photos) plus people, streets and landscapes, listed in
``training/realistic_val.json`` in the same format as the realistic test set (file, kind, repo,
commit, path, licence, sha256). Pooled with the first realistic validation set, it calibrates
the model and chooses between networks (``training.calibrate --val ... --val ...``); never
trained on. Its repositories are kept apart from the first validation set and the test set.

    python -m training.realistic_val --mirror MIRROR --out data/realistic-val
    python -m training.realistic_val --check --validation VAL/MANIFEST.json \
        --test-built data/realistic-test

The build is :func:`training.realistic_test.build` (blob by ``git show``, sha256 checked, EXIF
orientation applied, alpha on white, at most 1600 px, JPEG q95 or PNG for screenshots).
``--check`` runs the test set's check against the validation manifest (sources, equal bytes,
near-copies within this set) and adds: no repository of the test manifest, no original with a
test image's sha256, and, where the test set is built, no near-copy of a test image.

Stdlib and Pillow only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.realistic_test import (
    KINDS,
    Entry,
    build,
    check,
    image_dhash,
    load_manifest,
)
from training.realistic_test import (
    MANIFEST as TEST_MANIFEST,
)

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "realistic_val.json"


def check_against_test(
    entries: list[Entry], test: list[Entry], built: Path | None, test_built: Path | None,
    max_bits: int, hash_size: int,
) -> list[str]:
    """Problems that would leak the test set into calibration (empty when clean)."""
    problems: list[str] = []
    test_repos = {e.repo for e in test}
    for repo in sorted({e.repo for e in entries} & test_repos):
        problems.append(f"{repo}: is a test source")
    test_sha = {e.sha256: e.file for e in test}
    for entry in entries:
        if entry.sha256 in test_sha:
            problems.append(f"{entry.file}: same bytes as test {test_sha[entry.sha256]}")
    if built is None or test_built is None or not test_built.is_dir():
        return problems
    theirs = [(e.file, image_dhash(p, hash_size)) for e in test
              if (p := test_built / e.kind / e.file).is_file()]
    for entry in entries:
        path = built / entry.kind / entry.file
        if not path.is_file():
            continue
        h = image_dhash(path, hash_size)
        for name, th in theirs:
            if bin(h ^ th).count("1") <= max_bits:
                problems.append(f"{entry.file}: near-copy of test {name}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    parser.add_argument("--mirror", type=Path, default=Path("mirror"),
                        help="folder of bare clones, one per repository: <owner>+<name>/repo")
    parser.add_argument("--out", type=Path, default=Path("data/realistic-val"))
    parser.add_argument("--check", action="store_true", help="check sources instead of building")
    parser.add_argument("--validation", type=Path, default=None,
                        help="the realistic validation set's MANIFEST.json (needed by --check)")
    parser.add_argument("--test-built", type=Path, default=Path("data/realistic-test"),
                        help="the built realistic test set, for the near-copy check")
    parser.add_argument("--hash-size", type=int, default=16,
                        help="difference hash of N×N bits for near-copies (finer than the test "
                             "set's 8: same-layout screenshots and pages differ at 16)")
    parser.add_argument("--max-bits", type=int, default=16,
                        help="hash distance for near-copies")
    args = parser.parse_args(argv)
    entries = load_manifest(args.manifest)
    if args.check:
        if args.validation is None or not args.validation.is_file():
            parser.error("--check needs --validation pointing at the validation MANIFEST.json")
        problems = check(entries, args.validation, args.out, args.max_bits, "second validation set",
                         args.hash_size)
        problems += check_against_test(entries, load_manifest(TEST_MANIFEST), args.out,
                                       args.test_built, args.max_bits, args.hash_size)
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
