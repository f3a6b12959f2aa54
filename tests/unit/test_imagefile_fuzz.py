"""Damaged files of every format never escape as anything but ImageProblem/UnsupportedFormat.

The daemon's promise "never crashes on bad input" rests on this: inspect(), load_upright() and
write_corrected() either work or raise one of the two documented exceptions. Mutations are
seeded, so a failure reproduces exactly.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from helpers.writer_images import camera_jpeg, upright_array
from PIL import Image

from rotwatchd.formats.image import inspect, load_upright
from rotwatchd.formats.sniff import ImageProblem, UnsupportedFormat
from rotwatchd.output.writer import write_corrected

CASES_PER_FORMAT = 40


def _sample(fmt: str, tmp_path: Path) -> bytes:
    if fmt == "HEIF":
        pytest.importorskip("pillow_heif")
        buf = io.BytesIO()
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(upright_array(48, 32)).save(buf, "HEIF", quality=80, exif=exif.tobytes())
        return buf.getvalue()
    if fmt == "JPEG":
        path = tmp_path / "seed.jpg"
        camera_jpeg(path, upright_array(48, 32), 6, progressive=True)
        return path.read_bytes()
    buf = io.BytesIO()
    Image.fromarray(upright_array(48, 32)).save(buf, fmt)
    return buf.getvalue()


def _mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    kind = rng.choice(["flip", "zero", "cut", "insert", "dup"])
    at = rng.randrange(len(out))
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif kind == "zero":
        out[at:at + rng.randint(1, 64)] = bytes(min(64, len(out) - at))
    elif kind == "cut":
        del out[at:]
    elif kind == "insert":
        out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    else:
        out[at:at] = out[at:at + rng.randint(1, 200)]
    return bytes(out)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "HEIF"])
def test_mutated_files_raise_only_documented_errors(tmp_path: Path, fmt: str) -> None:
    rng = random.Random(f"rotwatchd-{fmt}")
    seed = _sample(fmt, tmp_path)
    outcomes: dict[str, int] = {}
    for case in range(CASES_PER_FORMAT):
        path = tmp_path / f"m{case}.img"
        path.write_bytes(_mutate(seed, rng))
        for action in ("inspect", "load", "write"):
            try:
                if action == "inspect":
                    inspect(path)
                elif action == "load":
                    load_upright(path, 64)
                else:
                    write_corrected(path, tmp_path / "out" / f"m{case}.img",
                                    orientation=8 if case % 2 else 6)
                outcome = "ok"
            except ImageProblem as exc:
                outcome = exc.reason
            except UnsupportedFormat:
                outcome = "unsupported"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    # The mutations did find damage: not everything came through as "ok".
    assert sum(n for k, n in outcomes.items() if k != "ok") > 0, outcomes
