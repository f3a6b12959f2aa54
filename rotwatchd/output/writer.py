"""Write the upright copy of an image, losing nothing the photographer cares about.

write_corrected() is the one entry point. Per case:

- orientation 1 (already upright): a byte-identical copy, or a hard link when allowed.
- JPEG, mode "pixels": lossless DCT-domain transform (lossless_jpeg), or for sizes that cannot
  be transformed losslessly a single re-encode with the source's quantisation tables. The
  source's metadata segments are carried in their original order: EXIF (Orientation set to 1,
  pixel dimensions swapped for 90/270, thumbnail rotated; maker notes untouched), XMP
  (tiff:Orientation=1), ICC profile, comments, IPTC and every other APPn. The MPF index is
  dropped (its offsets would be wrong); data after EOI (motion-photo video...) is kept.
- JPEG, mode "tag": only the EXIF Orientation value changes (or an EXIF segment is added);
  every byte after the EXIF segment is identical.
- HEIF, pure rotations (the model's corrections): lossless, by editing the file's own irot
  rotation property for the image and its thumbnails (heif_rotate); the HEVC data is kept.
- PNG, WebP, TIFF, BMP, static GIF, HEIF otherwise: decode, transform, encode in the same
  format with EXIF (patched the same way), ICC, XMP and PNG text chunks. Lossless
  PNG/TIFF/BMP/GIF and lossless WebP stay lossless; lossy WebP and HEIF are re-encoded at
  quality 95.
- Animated images, 16-bit colour PNG/TIFF (Pillow would decode them to 8 bits) and unknown
  formats raise UnsupportedFormat (callers send them to review).

The output mtime and permission bits are the source's; the source is only ever read.
"""

from __future__ import annotations

import errno
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image, PngImagePlugin

from rotwatchd.imagefile import (
    DEFAULT_MAX_PIXELS,
    ImageProblem,
    UnsupportedFormat,
    detect_format,
    open_image,
    read_head,
    read_jpeg,
    to_upright,
    translate_errors,
)
from rotwatchd.output import exif_edit
from rotwatchd.output.atomic import atomic_copy, atomic_link, atomic_write_bytes
from rotwatchd.output.heif_rotate import IROT_STEPS, HeifEditError, rotate_heif
from rotwatchd.output.jpeg_markers import (
    APP0,
    APP1,
    APP2,
    APP14,
    EXIF_PREFIX,
    MPF_PREFIX,
    XMP_PREFIX,
    JpegLayout,
    parse_jpeg,
    segment_bytes,
)
from rotwatchd.output.lossless_jpeg import (
    LosslessUnavailable,
    find_jpegtran,
    is_perfect,
    reencode,
    transform_lossless,
)

__all__ = ["Action", "ImageProblem", "UnsupportedFormat", "WriteResult", "write_corrected"]

Action = Literal["copied", "hardlinked", "lossless-jpeg", "lossless-heif", "re-encoded",
                 "tagged"]
Mode = Literal["pixels", "tag"]
_LOSSY_QUALITY = 95


@dataclass(frozen=True)
class WriteResult:
    """``action`` says what was done; ``notes`` say what could not be kept or why a fallback
    was taken (one short phrase each, for the log)."""

    path: Path
    action: Action
    orientation: int
    notes: tuple[str, ...] = field(default=())


def write_corrected(source: Path, target: Path, *, orientation: int, mode: Mode = "pixels",
                    hardlink_upright: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS,
                    jpegtran: str | None = None) -> WriteResult:
    """Write the upright version of ``source`` to ``target`` atomically.

    ``orientation`` is the EXIF orientation (1..8) describing how the source's pixels, as
    decoded by rotwatchd.imagefile, must be transformed to be upright (1: they already are).
    For JPEG, PNG, WebP these are the stored pixels; the HEIF decoder (and recent Pillow's
    TIFF decoder) apply the file's own orientation first, and inspect() then reports 1/None.
    ``jpegtran`` overrides the binary used for lossless JPEG transforms (None: find_jpegtran();
    "": none, always re-encode).
    Raises ValueError (bad orientation, target is the source), ImageProblem (bad file),
    UnsupportedFormat (unknown format, animated image), OSError (writing failed).
    """
    if orientation not in range(1, 9):
        raise ValueError(f"orientation must be 1..8, got {orientation!r}")
    if target.exists() and target.resolve() == source.resolve():
        raise ValueError(f"refusing to write over the source {source}")
    fmt = detect_format(source)
    if orientation == 1:
        return _copy_upright(source, target, hardlink_upright)
    if fmt == "JPEG":
        data, layout = read_jpeg(source, max_pixels)
        note: tuple[str, ...] = ()
        if mode == "tag":
            try:
                out = _tag_jpeg(data, layout, orientation)
            except ValueError:  # no room for one more IFD entry in a 64 KiB segment
                note = ("EXIF segment full, tag cannot be added: pixels rotated instead",)
            else:
                atomic_write_bytes(target, out, stat_from=source)
                return WriteResult(target, "tagged", orientation)
        result = _write_jpeg_pixels(source, target, data, layout, orientation, jpegtran)
        return WriteResult(result.path, result.action, orientation, (*note, *result.notes))
    notes: list[str] = []
    if fmt == "HEIF" and orientation in IROT_STEPS:
        done = _write_heif_lossless(source, target, orientation, max_pixels, notes)
        if done is not None:
            return done
    data_out, more = _transform_other(source, fmt, orientation, max_pixels)
    notes.extend(more)
    atomic_write_bytes(target, data_out, stat_from=source)
    other = ("tag mode is JPEG-only: pixels rotated",) if mode == "tag" else ()
    return WriteResult(target, "re-encoded", orientation, (*other, *notes))


def _write_heif_lossless(source: Path, target: Path, orientation: int, max_pixels: int,
                         notes: list[str]) -> WriteResult | None:
    """Turn a HEIF by editing its irot property (coded data untouched); None, with a note,
    when its structure is not one heif_rotate edits, so the caller re-encodes."""
    with translate_errors(source):
        with open_image(source, "HEIF", max_pixels):
            pass  # size limit and a readable header, before touching the bytes
        data = source.read_bytes()
    try:
        out = rotate_heif(data, orientation)
    except HeifEditError as exc:
        notes.append(f"HEIF rotation property not editable ({exc}): re-encoded")
        return None
    atomic_write_bytes(target, out, stat_from=source)
    return WriteResult(target, "lossless-heif", orientation)


def _copy_upright(source: Path, target: Path, hardlink: bool) -> WriteResult:
    if hardlink:
        try:
            atomic_link(source, target)
            return WriteResult(target, "hardlinked", 1)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            note = f"hard link impossible ({errno.errorcode.get(exc.errno or 0, exc)}): copied"
            atomic_copy(source, target)
            return WriteResult(target, "copied", 1, (note,))
    atomic_copy(source, target)  # errors here are about the target (disk full...): OSError
    return WriteResult(target, "copied", 1)


def _write_jpeg_pixels(source: Path, target: Path, data: bytes, layout: JpegLayout,
                       orientation: int, jpegtran: str | None) -> WriteResult:
    notes: list[str] = []
    binary = find_jpegtran() if jpegtran is None else (jpegtran or None)
    body: bytes | None = None
    if not is_perfect(orientation, layout.frame):
        w, h = layout.frame.mcu_size
        notes.append(f"size {layout.frame.width}x{layout.frame.height} is not a multiple of the "
                     f"{w}x{h} MCU on the moved edge: re-encoded with the source's tables")
    elif binary is None:
        notes.append("jpegtran not found: re-encoded with the source's tables")
    else:
        try:
            body = transform_lossless(source, orientation, layout.frame, binary)
        except LosslessUnavailable as exc:
            notes.append(f"lossless transform failed ({exc}): re-encoded")
    action: Action = "lossless-jpeg" if body is not None else "re-encoded"
    if body is None:
        with translate_errors(source):
            body = reencode(data, orientation, layout.frame)
    head, meta_notes = _carried_segments(layout, orientation)
    out = _assemble(head, body) + data[layout.end:]
    atomic_write_bytes(target, out, stat_from=source)
    return WriteResult(target, action, orientation, (*notes, *meta_notes))


def _carried_segments(layout: JpegLayout, orientation: int) -> tuple[list[bytes], list[str]]:
    """The source's metadata segments, patched for the transform, in their original order."""
    head: list[bytes] = []
    notes: list[str] = []
    for seg in layout.header:
        if not seg.is_metadata or seg.marker == APP14:
            continue  # coding tables come from the encoder; Adobe APP14 too (colour transform)
        payload = seg.payload
        if seg.is_app(APP2, MPF_PREFIX):
            notes.append("MPF index dropped (its offsets no longer apply)")
            continue
        if seg.marker == APP0 and not payload.startswith(b"JFIF\x00"):
            if payload.startswith(b"JFXX\x00"):
                notes.append("JFIF extension thumbnail dropped")
                continue
        elif seg.is_app(APP1, EXIF_PREFIX):
            payload = EXIF_PREFIX + _fixed_exif(payload[len(EXIF_PREFIX):], orientation, notes)
        elif seg.is_app(APP1, XMP_PREFIX):
            payload = XMP_PREFIX + exif_edit.fix_xmp(payload[len(XMP_PREFIX):], orientation)
        head.append(segment_bytes(seg.marker, payload))
    return head, notes


def _fixed_exif(tiff: bytes, orientation: int, notes: list[str]) -> bytes:
    for quality in (90, 75, 50):
        try:
            fixed = exif_edit.fix_after_transform(tiff, orientation,
                                                  _thumbnail_rotator(orientation, quality))
        except exif_edit.ExifError as exc:
            # IFD0 unreadable: no viewer can read an Orientation from it either; keep it whole.
            notes.append(f"EXIF not editable ({exc}): carried unchanged")
            return tiff
        if len(fixed) + len(EXIF_PREFIX) <= 0xFFFF - 2:
            return fixed
    notes.append("EXIF thumbnail too large after rotation: EXIF carried with Orientation only")
    return exif_edit.fix_after_transform(tiff, orientation, lambda thumb: thumb)


_MAX_THUMBNAIL_PIXELS = 1_000_000  # EXIF thumbnails are ~160x120; bigger claims are bombs


def _thumbnail_rotator(orientation: int, quality: int) -> exif_edit.ThumbnailFn:
    def rotate(thumb: bytes) -> bytes:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # damaged thumbnail metadata
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(thumb), formats=["JPEG"]) as im:
                    if im.width * im.height > _MAX_THUMBNAIL_PIXELS:
                        return thumb
                    im.load()
                    out = to_upright(im, orientation)
            buf = io.BytesIO()
            out.save(buf, "JPEG", quality=quality)
            return buf.getvalue()
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError,
                ZeroDivisionError, RuntimeError, Image.DecompressionBombError):
            return thumb  # an unreadable thumbnail is carried as it is
    return rotate


def _assemble(head: list[bytes], encoded: bytes) -> bytes:
    """SOI + source JFIF/metadata + the encoder's coding segments and scans (its own JFIF and
    any other metadata it wrote are dropped; its Adobe APP14 is kept)."""
    enc = parse_jpeg(encoded)
    coding = [encoded[s.start:s.end] for s in enc.header
              if not s.is_metadata or s.marker == APP14]
    return b"".join([b"\xff\xd8", *head, *coding, encoded[enc.first_scan:enc.end]])


def _tag_jpeg(data: bytes, layout: JpegLayout, orientation: int) -> bytes:
    """Only the EXIF segment changes (or one is inserted after SOI/JFIF). Raises ValueError
    when the grown EXIF no longer fits in a segment."""
    seg = layout.find(APP1, EXIF_PREFIX)
    if seg is None:
        first = layout.header[0] if layout.header else None
        at = first.end if first is not None and first.marker == APP0 else 2
        new = segment_bytes(APP1, EXIF_PREFIX + exif_edit.minimal_exif(orientation))
        return data[:at] + new + data[at:]
    try:
        tiff = exif_edit.set_orientation(seg.payload[len(EXIF_PREFIX):], orientation)
    except exif_edit.ExifError:
        # Unreadable EXIF: a readable one goes in front (viewers read the first) and the
        # damaged block stays, byte for byte, after it.
        new = segment_bytes(APP1, EXIF_PREFIX + exif_edit.minimal_exif(orientation))
        return data[:seg.start] + new + data[seg.start:]
    return data[:seg.start] + segment_bytes(APP1, EXIF_PREFIX + tiff) + data[seg.end:]


def _transform_other(source: Path, fmt: str, orientation: int,
                     max_pixels: int) -> tuple[bytes, list[str]]:
    notes: list[str] = []
    head = read_head(source, 4096)
    with translate_errors(source), open_image(source, fmt, max_pixels) as im:
        if getattr(im, "is_animated", False):
            raise UnsupportedFormat(f"animated {fmt} (not rotated)", source)
        im.load()
        lossy = precision_loss(fmt, im, head)
        if lossy:
            raise UnsupportedFormat(f"{lossy} (Pillow would drop precision)", source)
        info = {str(k): v for k, v in im.info.items()}
        params = _save_params(im, fmt, orientation, info, notes)
        out = to_upright(im, orientation)
    if fmt == "WEBP":
        lossless = _webp_is_lossless(head)
        params.update(lossless=lossless, exact=True)
        if not lossless:
            params["quality"] = _LOSSY_QUALITY
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
    if isinstance(raw_exif, bytes) and raw_exif and fmt != "TIFF":
        tiff = raw_exif[len(EXIF_PREFIX):] if raw_exif.startswith(EXIF_PREFIX) else raw_exif
        params["exif"] = _fixed_exif(tiff, orientation, notes)
    if info.get("icc_profile"):
        params["icc_profile"] = info["icc_profile"]
    xmp = info.get("xmp")
    if isinstance(xmp, bytes) and xmp and fmt in ("WEBP", "HEIF"):
        params["xmp"] = exif_edit.fix_xmp(xmp, orientation)
    if fmt == "PNG":
        params["pnginfo"] = _png_text(im, orientation)
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
        params["quality"] = _LOSSY_QUALITY
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


def _png_text(im: Image.Image, orientation: int) -> PngImagePlugin.PngInfo:
    chunks = PngImagePlugin.PngInfo()
    for key, value in getattr(im, "text", {}).items():
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

