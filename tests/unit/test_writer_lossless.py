"""Lossless JPEG correction: DCT coefficients moved exactly, metadata carried and fixed.

The expected coefficients are computed here independently of the writer (block moves, sign
flips, transposes of each 8x8 block) and compared with what a coefficient-level reader
(jpeglib) finds in the output.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers.writer_images import (
    GPS_LAT,
    MAKER_NOTE,
    camera_jpeg,
    needs_jpegtran,
    srgb_icc,
    upright_array,
)
from PIL import Image

from rotwatchd.formats.exif import read_thumbnail
from rotwatchd.formats.jpeg_markers import parse_jpeg
from rotwatchd.output.writer import write_corrected

jpeglib = pytest.importorskip(
    "jpeglib", reason="jpeglib (coefficient reader) has no wheel on this platform")

Blocks = np.ndarray
_SIGN = np.array([(-1) ** k for k in range(8)])


def _flip_h(a: Blocks) -> Blocks:
    return a[:, ::-1] * _SIGN[None, None, None, :]


def _flip_v(a: Blocks) -> Blocks:
    return a[::-1] * _SIGN[None, None, :, None]


def _transpose(a: Blocks) -> Blocks:
    return a.transpose(1, 0, 3, 2)


# EXIF orientation -> the DCT-domain operation that makes the stored image upright.
DCT_UPRIGHT: dict[int, Callable[[Blocks], Blocks]] = {
    2: _flip_h,
    3: lambda a: _flip_h(_flip_v(a)),
    4: _flip_v,
    5: _transpose,
    6: lambda a: _flip_h(_transpose(a)),
    7: lambda a: _flip_h(_flip_v(_transpose(a))),
    8: lambda a: _flip_v(_transpose(a)),
}


def test_dct_operations_match_pixel_transposes() -> None:
    """The test's own block algebra, applied to pixels (all signs +1), is Pillow's transpose."""
    from rotwatchd.formats.image import UPRIGHT_TRANSPOSE

    pixels = np.arange(6 * 10).reshape(6, 10)
    as_blocks = pixels[:, :, None, None] * np.ones((1, 1, 8, 8), int)
    for orientation, op in DCT_UPRIGHT.items():
        expected = np.asarray(Image.fromarray(pixels.astype(np.int32)).transpose(
            UPRIGHT_TRANSPOSE[orientation]))
        got = op(as_blocks)[:, :, 0, 0]
        assert np.array_equal(got, expected), orientation


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@needs_jpegtran
@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
@pytest.mark.parametrize("subsampling", [0, 1, 2], ids=["444", "422", "420"])
@pytest.mark.parametrize("orientation", range(2, 9))
def test_coefficients_moved_exactly(tmp_path: Path, orientation: int, subsampling: int,
                                    progressive: bool) -> None:
    src = tmp_path / "IMG_0001.JPG"
    camera_jpeg(src, upright_array(96, 64), orientation, subsampling=subsampling,
                progressive=progressive)
    os.utime(src, ns=(1_600_000_000_000_000_000, 1_600_000_000_123_456_789))
    before = _sha(src)

    result = write_corrected(src, tmp_path / "out" / "IMG_0001.JPG", orientation=orientation)

    assert result.action == "lossless-jpeg", result.notes
    assert _sha(src) == before  # the source is only read
    a, b = jpeglib.read_dct(str(src)), jpeglib.read_dct(str(result.path))
    op = DCT_UPRIGHT[orientation]
    assert np.array_equal(b.Y, op(a.Y))
    assert np.array_equal(b.Cb, op(a.Cb))
    assert np.array_equal(b.Cr, op(a.Cr))
    transposes = orientation >= 5
    for table_in, table_out in zip(a.qt, b.qt, strict=True):
        assert np.array_equal(table_out, table_in.T if transposes else table_in)
    assert parse_jpeg(result.path.read_bytes()).frame.progressive == progressive
    assert result.path.stat().st_mtime_ns == src.stat().st_mtime_ns


def _exif_ifd(im: Image.Image, ifd: int) -> dict[int, object]:
    return dict(im.getexif().get_ifd(ifd))


@needs_jpegtran
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_metadata_carried_and_fixed(tmp_path: Path, orientation: int) -> None:
    src = tmp_path / "DSC_0042.jpg"
    stored = camera_jpeg(src, upright_array(128, 96), orientation)
    out = write_corrected(src, tmp_path / "o.jpg", orientation=orientation).path

    with Image.open(out) as im, Image.open(src) as orig:
        exif = im.getexif()
        assert exif.get(0x0112) == 1
        assert exif[0x010F] == "TestCam" and exif[0x0110] == "TC-1 Mark II"
        sub = _exif_ifd(im, 0x8769)
        assert sub[0x9003] == "2026:11:27 10:11:12"
        assert sub[0x927C] == MAKER_NOTE
        assert (sub[0xA002], sub[0xA003]) == im.size == (128, 96)
        gps = _exif_ifd(im, 0x8825)
        assert gps[1] == "N" and [float(v) for v in gps[2]] == [n / d for n, d in GPS_LAT]
        assert im.info["icc_profile"] == orig.info["icc_profile"] == srgb_icc()
        assert b'tiff:Orientation="1"' in im.info["xmp"]
        assert b'exif:PixelXDimension="128"' in im.info["xmp"]
        assert b"Test Photographer" in im.info["xmp"]
        assert im.info["comment"] == b"shot by rotwatchd tests"
    thumb = _thumbnail(out)
    # The EXIF thumbnail is upright too: its shape follows the image, its red corner top-left.
    assert (thumb.width > thumb.height) == (stored.width > stored.height) ^ (orientation >= 5)
    arr = np.asarray(thumb.convert("RGB")).astype(int)
    assert arr[2, 2, 0] > 180 and arr[2, 2, 2] < 90


def _thumbnail(path: Path) -> Image.Image:
    seg = parse_jpeg(path.read_bytes()).find(0xE1, b"Exif\x00\x00")
    assert seg is not None
    thumb = read_thumbnail(seg.payload[6:])
    assert thumb is not None
    im = Image.open(io.BytesIO(thumb))
    im.load()
    return im


@needs_jpegtran
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_matches_jpegtran_perfect_pixel_for_pixel(tmp_path: Path, orientation: int) -> None:
    """Oracle: the decoded output equals the decoded output of ``jpegtran -perfect``."""
    src = tmp_path / "p.jpg"
    camera_jpeg(src, upright_array(160, 112), orientation, subsampling=2)
    out = write_corrected(src, tmp_path / "o.jpg", orientation=orientation).path
    args = {3: ["-rotate", "180"], 6: ["-rotate", "90"], 8: ["-rotate", "270"]}[orientation]
    jpegtran = shutil.which("jpegtran")
    assert jpegtran is not None
    oracle = subprocess.run([jpegtran, "-perfect", *args, str(src)], capture_output=True,
                            check=True).stdout
    mine = np.asarray(Image.open(out))
    theirs = np.asarray(Image.open(io.BytesIO(oracle)))
    assert np.array_equal(mine, theirs)
