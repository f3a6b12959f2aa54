"""Corrected copies of PNG, WebP, TIFF, BMP, GIF and HEIF by decode, transform, encode.

Same format out as in, metadata carried: EXIF (patched in place, see metadata.fixed_exif), ICC,
XMP (tiff:Orientation=1), PNG text chunks, TIFF descriptive tags with their Exif/GPS IFDs.
Lossless formats stay lossless; lossy WebP and HEIF are re-encoded at quality 95. Images that
Pillow would degrade (16-bit colour) or that must not be turned (animations) are refused.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from rotwatchd.formats import exif as exif_edit
from rotwatchd.formats.image import (
    PNG_RAW_EXIF,
    declared_orientation,
    open_image,
    png_raw_profile_exif,
    to_upright,
    translate_errors,
)
from rotwatchd.formats.jpeg_markers import EXIF_PREFIX
from rotwatchd.formats.sniff import UnsupportedFormat, read_head
from rotwatchd.output.metadata import fixed_exif

LOSSY_QUALITY = 95


def transform_other(source: Path, fmt: str, orientation: int,
                     max_pixels: int) -> tuple[bytes, list[str]]:
    """The encoded bytes of ``source`` (a non-JPEG ``fmt``) transformed by ``orientation``,
    with its metadata, and notes. Raises ImageProblem / UnsupportedFormat (animated, 16-bit
    colour) for the source; OSError/ValueError from the encoder are not the source's fault."""
    notes: list[str] = []
    head = read_head(source, 4096)
    with translate_errors(source), open_image(source, fmt, max_pixels) as im:
        if getattr(im, "is_animated", False):
            raise UnsupportedFormat(f"animated {fmt} (not rotated)", source)
        declared = declared_orientation(im) if fmt == "TIFF" else None
        im.load()
        lossy = precision_loss(fmt, im, head)
        if lossy:
            raise UnsupportedFormat(f"{lossy} (Pillow would drop precision)", source)
        info = {str(k): v for k, v in im.info.items()}
        # Metadata describes the stored image: when the decoder applied the TIFF's own tag
        # (and dropped it), that tag is the transform the metadata must follow.
        applied = declared if declared and declared_orientation(im) is None else None
        meta_orientation = applied if orientation == 1 and applied else orientation
        params = _save_params(im, fmt, meta_orientation, info, notes)
        out = to_upright(im, orientation)
        if out is im:  # a plain image: saving the source object re-copies its own XMP tag
            out = im.copy()
    if fmt == "WEBP":
        lossless = _webp_is_lossless(head)
        params.update(lossless=lossless, exact=True)
        if not lossless:
            params["quality"] = LOSSY_QUALITY
    buf = io.BytesIO()
    out.save(buf, fmt, **params)  # outside translate_errors: not the source's fault
    return buf.getvalue(), notes


def precision_loss(fmt: str, im: Image.Image, head: bytes) -> str | None:
    """Why decoding ``im`` with Pillow loses sample precision (16-bit colour PNG/TIFF are
    decoded to 8 bits), else None. Such files go to review rather than lose data."""
    if fmt == "PNG" and len(head) > 25 and head[24] == 16 and head[25] in (2, 6):
        return "16-bit colour PNG"
    if fmt == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        if max(bits) > 8 and im.mode not in ("I;16", "I;16B", "I;16L", "I", "F"):
            return f"{max(bits)}-bit colour TIFF"
    return None


def _save_params(im: Image.Image, fmt: str, orientation: int, info: dict[str, Any],
                 notes: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    raw_exif = info.get("exif")
    legacy = png_raw_profile_exif(info) if fmt == "PNG" and not raw_exif else None
    if legacy is not None:  # written back as an eXIf chunk, fixed like any other EXIF
        raw_exif = legacy
    if isinstance(raw_exif, bytes) and raw_exif and fmt != "TIFF":
        tiff = raw_exif[len(EXIF_PREFIX):] if raw_exif.startswith(EXIF_PREFIX) else raw_exif
        params["exif"] = fixed_exif(tiff, orientation, notes)
    if info.get("icc_profile"):
        params["icc_profile"] = info["icc_profile"]
    xmp = info.get("xmp")
    if isinstance(xmp, bytes) and xmp and fmt in ("WEBP", "HEIF"):
        params["xmp"] = exif_edit.fix_xmp(xmp, orientation)
    if fmt == "PNG":
        params["pnginfo"] = _png_text(im, orientation, legacy is not None)
        for key in ("transparency", "dpi", "gamma"):
            if key in info:
                params[key] = info[key]
    elif fmt == "TIFF":
        params["tiffinfo"] = _tiff_tags(im, orientation)
        if info.get("compression") and info["compression"] != "raw":
            params["compression"] = info["compression"]
    elif fmt == "GIF":
        for key in ("transparency", "comment"):
            if key in info:
                params[key] = info[key]
    elif fmt == "HEIF":
        params["quality"] = LOSSY_QUALITY
    return params


# Tags that describe the pixel layout of the source (the encoder writes its own) or point to
# offsets in the source file; the ICC profile is passed separately.
_TIFF_LAYOUT_TAGS = frozenset({256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 322, 323,
                               324, 325, 330, 338, 339, 34665, 34853, 40965, 34675})


def _tiff_tags(im: Image.Image, orientation: int) -> dict[int, Any]:
    """The source's descriptive IFD0 tags (Make, Model, DateTime, Artist, XMP, IPTC...) with
    Orientation 1 and, when present, the Exif and GPS sub-IFDs as nested directories."""
    tags: dict[int, Any] = {tag: value for tag, value in getattr(im, "tag_v2", {}).items()
                            if tag not in _TIFF_LAYOUT_TAGS}
    tags[exif_edit.ORIENTATION] = 1
    if isinstance(tags.get(700), bytes):
        tags[700] = exif_edit.fix_xmp(tags[700], orientation)
    exif = im.getexif()
    for pointer in (0x8769, 0x8825):
        sub = dict(exif.get_ifd(pointer))
        swap = {exif_edit.PIXEL_X, exif_edit.PIXEL_Y} <= set(sub)
        if swap and orientation in exif_edit.TRANSPOSING:
            sub[exif_edit.PIXEL_X], sub[exif_edit.PIXEL_Y] = (sub[exif_edit.PIXEL_Y],
                                                              sub[exif_edit.PIXEL_X])
        if sub:
            tags[pointer] = sub
    return tags


def _png_text(im: Image.Image, orientation: int,
              drop_raw_exif: bool) -> PngImagePlugin.PngInfo:
    chunks = PngImagePlugin.PngInfo()
    for key, value in getattr(im, "text", {}).items():
        if drop_raw_exif and key == PNG_RAW_EXIF:
            continue  # its stale Orientation would turn the upright copy again
        if key == "XML:com.adobe.xmp":
            value = exif_edit.fix_xmp(str(value).encode(), orientation).decode()
        if isinstance(value, PngImagePlugin.iTXt):
            chunks.add_itxt(key, value, value.lang or "", value.tkey or "")
        elif key == "XML:com.adobe.xmp":
            chunks.add_itxt(key, value)
        else:
            chunks.add_text(key, value)
    return chunks


def _webp_is_lossless(head: bytes) -> bool:
    """RIFF chunk after the WEBP fourcc: VP8L is lossless (VP8X: look for the image chunk)."""
    chunk = head[12:16]
    return chunk == b"VP8L" or (chunk == b"VP8X" and b"VP8L" in head[16:])
