"""What a file is, from its first bytes: the formats rotwatchd handles, the names that promise
a picture, and the two ways a file fails as one (:class:`ImageProblem`, :class:`UnsupportedFormat`).

Formats are recognised by their first bytes, never by the file name.
"""

from __future__ import annotations

import importlib.util
import os
import re
import stat
import struct
import threading
from pathlib import Path

#: Larger images are refused; above the largest camera sensors (~102 MP), far below bombs. The


# A declared dependency; without it HEIF files are reported as unsupported. It is imported (and
# its Pillow opener registered) when the first HEIF arrives: ~3.5 MiB and a few tens of ms that
# a daemon fed only JPEGs never spends.
HEIF_AVAILABLE = importlib.util.find_spec("pillow_heif") is not None
_HEIF_LOCK = threading.Lock()
_heif_registered = False


def register_heif() -> bool:
    """Import pillow-heif and register its Pillow opener, once; False when not installed."""
    global _heif_registered
    with _HEIF_LOCK:
        if not _heif_registered and HEIF_AVAILABLE:
            import pillow_heif

            pillow_heif.register_heif_opener(thumbnails=False, depth_images=False,
                                             aux_images=False)
            _heif_registered = True
    return _heif_registered

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "HEIF")
HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1",
                         b"msf1", b"heif"})


# Names a user means as pictures: content that is not an image under one of these is a failure
# (or a file still being written); under any other name (LICENSE, notes.txt, a video, a sidecar)
# it is not rotwatchd's business and is left where it is.
IMAGE_SUFFIXES = frozenset((
    ".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".png", ".gif", ".webp", ".bmp", ".dib",
    ".tif", ".tiff", ".heic", ".heif", ".hif", ".avif", ".jxl", ".jp2", ".j2k", ".psd",
    ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf", ".srw", ".pef",
))


def named_as_image(path: Path) -> bool:
    """True when the file name promises a picture (see IMAGE_SUFFIXES)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


class ImageProblem(Exception):
    """A file that cannot be used as an image. ``reason`` is one of: not-an-image, corrupt,
    truncated, too-large, empty, unreadable; ``str(exc)`` is a one-line human message."""

    def __init__(self, reason: str, message: str, path: Path | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.reason = reason
        self.path = path


class UnsupportedFormat(Exception):
    """A real image (or a format we recognise) that rotwatchd does not process.
    ``format`` names it (e.g. "JPEG2000", "animated GIF"); ``reason`` is "unsupported"."""

    reason = "unsupported"

    def __init__(self, fmt: str, path: Path | None = None) -> None:
        super().__init__(f"{path}: unsupported format: {fmt}" if path else fmt)
        self.format = fmt
        self.path = path


_UNSUPPORTED_MAGIC = (
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000"), (b"\xff\x4f\xff\x51", "JPEG2000"),
    (b"\xff\x0a", "JPEG XL"), (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"8BPS", "PSD"), (b"\x00\x00\x01\x00", "ICO"), (b"IIRO", "ORF raw"), (b"IIU\x00", "RW2 raw"),
    (b"qoif", "QOI"), (b"DDS ", "DDS"), (b"v/1\x01", "OpenEXR"), (b"gimp xcf", "XCF"),
    (b"icns", "ICNS"), (b"#?RADIANCE", "Radiance HDR"), (b"#?RGBE", "Radiance HDR"),
    (b"\x00\x00\x00\x0cftyp", "ISO-BMFF image"),
)
_PNM = re.compile(rb"P[1-7]\s")
_SVG = re.compile(rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*(<!DOCTYPE svg[^>]*>\s*)?<svg[\s>]",
                  re.DOTALL)


def sniff(head: bytes) -> str | None:
    """Pillow format name from the first bytes (512 read), None if no image signature matches.

    Raises UnsupportedFormat for image formats that are recognised but not handled."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        if head[8:10] == b"CR":
            raise UnsupportedFormat("CR2 raw")
        return "TIFF"
    if head[:2] == b"BM" and len(head) >= 18 and struct.unpack_from("<I", head, 14)[0] in (
            12, 40, 52, 56, 64, 108, 124):
        return "BMP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in HEIF_BRANDS:
            if not register_heif():
                raise UnsupportedFormat("HEIF (pillow-heif not installed)")
            return "HEIF"
        if brand in (b"avif", b"avis"):
            raise UnsupportedFormat("AVIF")
    for magic, name in _UNSUPPORTED_MAGIC:
        if head.startswith(magic):
            raise UnsupportedFormat(name)
    if _PNM.match(head):
        raise UnsupportedFormat("PNM")
    if _SVG.match(head):
        raise UnsupportedFormat("SVG")
    return None


def read_head(path: Path, size: int = 512) -> bytes:
    """First bytes of ``path``; raises ImageProblem (empty, unreadable, not-an-image)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ImageProblem("not-an-image", "not a regular file", path)
        if st.st_size == 0:
            raise ImageProblem("empty", "file is empty (0 bytes)", path)
        with open(path, "rb") as handle:
            return handle.read(size)
    except PermissionError as exc:
        raise ImageProblem("unreadable", f"permission denied: {exc.strerror}", path) from exc
    except IsADirectoryError as exc:
        raise ImageProblem("not-an-image", "is a directory", path) from exc


def detect_format(path: Path) -> str:
    """The sniffed format of ``path``; raises ImageProblem or UnsupportedFormat."""
    try:
        fmt = sniff(read_head(path))
    except UnsupportedFormat as exc:
        raise UnsupportedFormat(exc.format, path) from None
    if fmt is None:
        raise ImageProblem("not-an-image", "content is not a known image format", path)
    return fmt
