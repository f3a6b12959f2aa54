"""Camera-like test images for the writer and imagefile tests, generated at test time.

A known upright, asymmetric reference (smooth so JPEG error stays small) is stored turned by
the inverse of an EXIF orientation, with a camera-like EXIF block built here byte by byte (so
tests can also write invalid orientation values and a real IFD1 thumbnail), an ICC profile,
XMP and a comment.
"""

from __future__ import annotations

import functools
import io
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from rotwatchd.formats.image import UPRIGHT_TRANSPOSE

needs_jpegtran = pytest.mark.skipif(
    shutil.which("jpegtran") is None,
    reason="jpegtran not installed (Debian package libjpeg-turbo-progs): the lossless path and "
           "its oracle are unavailable; .ci/run installs it")

# Inverse of UPRIGHT_TRANSPOSE: how to turn the upright picture into the stored pixels.
_STORE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
          4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
          6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
          8: Image.Transpose.ROTATE_270}
assert set(_STORE) == set(UPRIGHT_TRANSPOSE)

NO_TAG = "no Orientation tag"  # pass as exif_orientation to leave the tag out
MAKE, MODEL, DATE = b"TestCam\x00", b"TC-1 Mark II\x00", b"2026:11:27 10:11:12\x00"
MAKER_NOTE = bytes(range(256)) * 2  # opaque blob: must survive byte for byte
GPS_LAT = ((52, 1), (31, 1), (1234, 100))


def upright_array(width: int, height: int) -> np.ndarray:
    """RGB uint8 picture with no symmetry: a red block top-left, a blue one bottom-right
    only, a green band in the upper third, on smooth gradients."""
    y, x = np.mgrid[0:height, 0:width]
    arr = np.empty((height, width, 3), np.uint8)
    arr[..., 0] = (60 + 120 * x / max(1, width - 1)).astype(np.uint8)
    arr[..., 1] = (60 + 120 * y / max(1, height - 1)).astype(np.uint8)
    arr[..., 2] = 110
    arr[: height // 4, : width // 3] = (230, 30, 30)
    arr[height * 2 // 3:, width * 3 // 4:] = (30, 30, 230)
    arr[height // 3: height // 3 + max(2, height // 10), :] = (30, 200, 60)
    return arr


def stored_from_upright(upright: Image.Image, orientation: int) -> Image.Image:
    """The pixels a camera would store for an image whose EXIF says ``orientation``."""
    return upright.transpose(_STORE[orientation]) if orientation in _STORE else upright.copy()


def _ifd(entries: list[tuple[int, int, int, bytes]], start: int, next_ifd: int = 0
         ) -> tuple[bytes, bytes]:
    """Little-endian IFD at offset ``start``: (ifd bytes, out-of-line value bytes after it)."""
    head = struct.pack("<H", len(entries))
    data_start = start + 2 + 12 * len(entries) + 4
    data = b""
    for tag, typ, count, value in sorted(entries):
        if len(value) <= 4:
            head += struct.pack("<HHI", tag, typ, count) + value.ljust(4, b"\x00")
        else:
            head += struct.pack("<HHII", tag, typ, count, data_start + len(data))
            data += value + (b"\x00" if len(value) % 2 else b"")
    return head + struct.pack("<I", next_ifd), data


def camera_exif(*, orientation: object, width: int, height: int,
                thumbnail: bytes | None = None) -> bytes:
    """TIFF block with Make/Model/Orientation, Exif IFD (DateTimeOriginal, pixel dimensions,
    maker note), GPS IFD and optionally an IFD1 JPEG thumbnail. ``orientation`` may be an int
    (written as SHORT), raw (type, count, value-bytes) for invalid tags, or anything else
    (e.g. NO_TAG) for no Orientation tag at all."""
    def short(v: int) -> bytes:
        return struct.pack("<H", v)

    def rationals(vals: tuple[tuple[int, int], ...]) -> bytes:
        return b"".join(struct.pack("<II", n, d) for n, d in vals)

    # Layout: header(8) | IFD0 | Exif IFD | GPS IFD | IFD1 | thumbnail. Offsets are computed
    # by building each part once with placeholder pointers, then again with real ones.
    def build(ptrs: tuple[int, int, int, int]) -> tuple[bytes, tuple[int, int, int, int]]:
        exif_at, gps_at, ifd1_at, thumb_at = ptrs
        ifd0_entries = [(0x010F, 2, len(MAKE), MAKE), (0x0110, 2, len(MODEL), MODEL),
                        (0x8769, 4, 1, struct.pack("<I", exif_at)),
                        (0x8825, 4, 1, struct.pack("<I", gps_at))]
        if isinstance(orientation, int):
            ifd0_entries.append((0x0112, 3, 1, short(orientation)))
        elif isinstance(orientation, tuple):
            typ, count, raw = orientation
            ifd0_entries.append((0x0112, typ, count, raw))
        ifd0, d0 = _ifd(ifd0_entries, 8, ifd1_at if thumbnail else 0)
        exif_ifd, d1 = _ifd([(0x9003, 2, len(DATE), DATE),
                             (0xA002, 4, 1, struct.pack("<I", width)),
                             (0xA003, 4, 1, struct.pack("<I", height)),
                             (0x927C, 7, len(MAKER_NOTE), MAKER_NOTE)], exif_at)
        gps_ifd, d2 = _ifd([(0x0001, 2, 2, b"N\x00"), (0x0002, 5, 3, rationals(GPS_LAT))], gps_at)
        parts = b"II*\x00" + struct.pack("<I", 8) + ifd0 + d0
        new_exif = len(parts)
        parts += exif_ifd + d1
        new_gps = len(parts)
        parts += gps_ifd + d2
        new_ifd1 = len(parts)
        if thumbnail:
            ifd1, _ = _ifd([(0x0103, 3, 1, short(6)), (0x0201, 4, 1, struct.pack("<I", thumb_at)),
                            (0x0202, 4, 1, struct.pack("<I", len(thumbnail)))], new_ifd1)
            parts += ifd1
        new_thumb = len(parts)
        if thumbnail:
            parts += thumbnail
        return parts, (new_exif, new_gps, new_ifd1, new_thumb)

    ptrs = (0, 0, 0, 0)
    for _ in range(3):  # offsets settle after the first rebuild (sizes do not depend on them)
        tiff, ptrs = build(ptrs)
    return tiff


@functools.cache  # the profile header holds its creation time: make it once per run
def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def xmp_packet(orientation: int, width: int, height: int) -> bytes:
    return (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>'
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/">'
            b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
            b'xmlns:exif="http://ns.adobe.com/exif/1.0/" '
            b'xmlns:dc="http://purl.org/dc/elements/1.1/" '
            b'tiff:Orientation="%d" exif:PixelXDimension="%d" exif:PixelYDimension="%d">'
            b'<dc:creator><rdf:Seq><rdf:li>Test Photographer</rdf:li></rdf:Seq></dc:creator>'
            b'</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
            % (orientation, width, height))


def thumbnail_of(stored: Image.Image) -> bytes:
    thumb = stored.copy()
    thumb.thumbnail((160, 160))
    buf = io.BytesIO()
    thumb.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def camera_jpeg(path: Path, upright: np.ndarray, orientation: int, *, subsampling: int = 2,
                progressive: bool = False, quality: int = 92, exif_orientation: object = None
                ) -> Image.Image:
    """Write a camera-like JPEG whose stored pixels need ``orientation`` to be upright.
    ``exif_orientation`` overrides the tag written (e.g. invalid values). Returns the stored
    image (before JPEG coding)."""
    stored = stored_from_upright(Image.fromarray(upright), orientation)
    tag = orientation if exif_orientation is None else exif_orientation
    exif = camera_exif(orientation=tag, width=stored.width, height=stored.height,
                       thumbnail=thumbnail_of(stored))
    stored.save(path, "JPEG", quality=quality, subsampling=subsampling, progressive=progressive,
                exif=b"Exif\x00\x00" + exif, icc_profile=srgb_icc(),
                xmp=xmp_packet(orientation, stored.width, stored.height),
                comment=b"shot by rotwatchd tests")
    return stored


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def assert_upright(pixels: np.ndarray, upright: np.ndarray, min_psnr: float = 25.0) -> None:
    """``pixels`` show ``upright`` (within lossy-coding error) and clearly not any other of
    the 8 orientations of it: a missed or doubled rotation fails loudly."""
    assert pixels.shape == upright.shape, (pixels.shape, upright.shape)
    score = psnr(pixels, upright)
    assert score > min_psnr, f"PSNR {score:.1f} dB against the upright reference"
    for method in _STORE.values():
        other = np.asarray(Image.fromarray(upright).transpose(method))
        if other.shape == upright.shape:
            assert psnr(pixels, other) < score - 10, f"also matches {method.name}"
