"""Write the upright copy of an image, losing nothing the photographer cares about.

write_corrected() is the one entry point. Per case:

- orientation 1 (already upright): a byte-identical copy, or a hard link when allowed; but a
  TIFF whose own Orientation tag is not 1 (applied by the decoder) is re-encoded with
  Orientation 1, since many readers ignore that tag.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rotwatchd.formats import exif as exif_edit
from rotwatchd.formats.heif import IROT_STEPS, HeifEditError, rotate_heif
from rotwatchd.formats.image import (
    DEFAULT_MAX_PIXELS,
    JpegSource,
    declared_orientation,
    open_image,
    read_jpeg,
    translate_errors,
    verify_jpeg,
)
from rotwatchd.formats.jpeg_markers import (
    APP0,
    APP1,
    APP2,
    APP14,
    EXIF_PREFIX,
    MPF_PREFIX,
    XMP_PREFIX,
    JpegLayout,
    has_optimized_huffman,
    parse_jpeg,
    segment_bytes,
)
from rotwatchd.formats.sniff import ImageProblem, UnsupportedFormat, detect_format
from rotwatchd.output.atomic import Placed, atomic_copy, atomic_link, atomic_write_bytes
from rotwatchd.output.lossless_jpeg import (
    LosslessUnavailable,
    find_jpegtran,
    is_perfect,
    reencode,
    transform_lossless,
)
from rotwatchd.output.metadata import fixed_exif
from rotwatchd.output.other_formats import transform_other

__all__ = ["Action", "ImageProblem", "UnsupportedFormat", "WriteResult", "write_corrected"]

Action = Literal["copied", "hardlinked", "lossless-jpeg", "lossless-heif", "re-encoded",
                 "tagged"]
Mode = Literal["pixels", "tag"]


@dataclass(frozen=True)
class WriteResult:
    """``action`` says what was done; ``notes`` say what could not be kept or why a fallback
    was taken (one short phrase each, for the log); ``reused`` that ``path`` already held
    exactly this output, so nothing was written."""

    path: Path
    action: Action
    orientation: int
    notes: tuple[str, ...] = field(default=())
    reused: bool = False


def write_corrected(source: Path, target: Path, *, orientation: int, mode: Mode = "pixels",
                    hardlink_upright: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS,
                    jpegtran: str | None = None, within: Path | None = None,
                    jpeg: JpegSource | None = None, verified: bool = True) -> WriteResult:
    """Write the upright version of ``source`` to ``target`` atomically, never replacing a
    different file: when ``target`` holds other bytes the output becomes ``name.1.ext`` (or
    the next free number); when it (or a numbered one) already holds exactly these bytes it is
    reused and nothing is written. The result's ``path`` says where, a note says why.

    ``orientation`` is the EXIF orientation (1..8) describing how the source's pixels, as
    decoded by rotwatchd.formats.image, must be transformed to be upright (1: they already are).
    For JPEG, PNG, WebP these are the stored pixels; the HEIF decoder (and recent Pillow's
    TIFF decoder) apply the file's own orientation first, and inspect() then reports 1/None.
    ``jpegtran`` overrides the binary used for lossless JPEG transforms (None: find_jpegtran();
    "": none, always re-encode). ``within``: the output folder; nothing is written through a
    symlinked folder below it (UnsafeFolder, an OSError). ``jpeg``: the source's bytes and
    structure as inspect() read them (read again when None); ``verified`` False: its
    entropy-coded data was never decoded (``inspect(verify=False)``), so it is checked here by
    whichever step decodes it (jpegtran, the re-encode) or, where none does (a copy, tag
    mode), by a 1/8-scale decode first.
    Raises ValueError (bad orientation, target is the source), ImageProblem (bad file),
    UnsupportedFormat (unknown format, animated image), OSError (writing failed).
    """
    if orientation not in range(1, 9):
        raise ValueError(f"orientation must be 1..8, got {orientation!r}")
    if target.exists() and target.resolve() == source.resolve():
        raise ValueError(f"refusing to write over the source {source}")
    fmt = "JPEG" if jpeg is not None else detect_format(source)
    if fmt == "JPEG" and not verified and (orientation == 1 or mode == "tag"):
        if jpeg is None:
            jpeg = JpegSource(*read_jpeg(source, max_pixels))
        verify_jpeg(source, jpeg)  # nothing below decodes it
        verified = True
    if orientation == 1 and not _tiff_turned_by_tag(source, fmt, max_pixels):
        return _copy_upright(source, target, hardlink_upright, within)
    if fmt == "JPEG":
        if jpeg is None:
            jpeg = JpegSource(*read_jpeg(source, max_pixels))
        data, layout = jpeg.data, jpeg.layout
        note: tuple[str, ...] = ()
        if mode == "tag":
            try:
                out = _tag_jpeg(data, layout, orientation)
            except ValueError:  # no room for one more IFD entry in a 64 KiB segment
                note = ("EXIF segment full, tag cannot be added: pixels rotated instead",)
            else:
                placed = _put(target, out, source, within)
                return _result(target, placed, "tagged", orientation, [])
        result = _write_jpeg_pixels(source, target, jpeg, orientation, jpegtran, within,
                                    verified)
        return WriteResult(result.path, result.action, orientation, (*note, *result.notes),
                           result.reused)
    notes: list[str] = []
    if fmt == "HEIF" and orientation in IROT_STEPS:
        done = _write_heif_lossless(source, target, orientation, max_pixels, notes, within)
        if done is not None:
            return done
    data_out, more = transform_other(source, fmt, orientation, max_pixels)
    notes.extend(more)
    placed = _put(target, data_out, source, within)
    other = ["tag mode is JPEG-only: pixels rotated"] if mode == "tag" else []
    return _result(target, placed, "re-encoded", orientation, [*other, *notes])


def _put(target: Path, data: bytes | list[bytes | memoryview], source: Path,
         within: Path | None) -> Placed:
    return atomic_write_bytes(target, data, stat_from=source, within=within, keep_existing=True)


def _result(target: Path, placed: Placed, action: Action, orientation: int,
            notes: list[str]) -> WriteResult:
    """The WriteResult, saying when the name was taken by another file or already held it."""
    if placed.path != target:
        notes.append(f"{target.name} already holds a different file: kept both, this one as "
                     f"{placed.path.name}")
    if placed.reused:
        notes.append(f"{placed.path.name} already holds this output: nothing written")
    return WriteResult(placed.path, action, orientation, tuple(notes), placed.reused)


def _tiff_turned_by_tag(source: Path, fmt: str, max_pixels: int) -> bool:
    """A TIFF whose own Orientation tag is not 1: its copy would still need the tag applied."""
    if fmt != "TIFF":
        return False
    with translate_errors(source), open_image(source, fmt, max_pixels) as im:
        return declared_orientation(im) not in (None, 1)


def _write_heif_lossless(source: Path, target: Path, orientation: int, max_pixels: int,
                         notes: list[str], within: Path | None) -> WriteResult | None:
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
    placed = _put(target, out, source, within)
    return _result(target, placed, "lossless-heif", orientation, [])


def _copy_upright(source: Path, target: Path, hardlink: bool,
                  within: Path | None) -> WriteResult:
    if hardlink:
        try:
            placed = atomic_link(source, target, within=within, keep_existing=True)
            return _result(target, placed, "hardlinked", 1, [])
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            note = f"hard link impossible ({errno.errorcode.get(exc.errno or 0, exc)}): copied"
            placed = atomic_copy(source, target, within=within, keep_existing=True)
            return _result(target, placed, "copied", 1, [note])
    # errors here are about the target (disk full...): OSError
    placed = atomic_copy(source, target, within=within, keep_existing=True)
    return _result(target, placed, "copied", 1, [])


def _write_jpeg_pixels(source: Path, target: Path, jpeg: JpegSource, orientation: int,
                       jpegtran: str | None, within: Path | None,
                       verified: bool) -> WriteResult:
    notes: list[str] = []
    data, layout = jpeg.data, jpeg.layout
    binary = find_jpegtran() if jpegtran is None else (jpegtran or None)
    optimize = has_optimized_huffman(layout)
    body: bytes | None = None
    if not is_perfect(orientation, layout.frame):
        w, h = layout.frame.mcu_size
        notes.append(f"size {layout.frame.width}x{layout.frame.height} is not a multiple of the "
                     f"{w}x{h} MCU on the moved edge: re-encoded with the source's tables")
    elif binary is None:
        notes.append("jpegtran not found: re-encoded with the source's tables")
    else:
        try:
            done = transform_lossless(source, orientation, layout.frame, binary,
                                      optimize=optimize)
        except LosslessUnavailable as exc:
            notes.append(f"lossless transform failed ({exc}): re-encoded")
        else:
            if done.warnings and not verified:
                verify_jpeg(source, jpeg)  # Pillow's verdict on damaged data, as inspect's
            body = done.body
    action: Action = "lossless-jpeg" if body is not None else "re-encoded"
    if body is None:
        with translate_errors(source):
            body = reencode(data, orientation, layout.frame, optimize=optimize)
    head, meta_notes = _carried_segments(layout, orientation)
    placed = _put(target, [*_assemble(head, body), data[layout.end:]], source, within)
    return _result(target, placed, action, orientation, [*notes, *meta_notes])


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
            payload = EXIF_PREFIX + fixed_exif(payload[len(EXIF_PREFIX):], orientation, notes)
        elif seg.is_app(APP1, XMP_PREFIX):
            payload = XMP_PREFIX + exif_edit.fix_xmp(payload[len(XMP_PREFIX):], orientation)
        head.append(segment_bytes(seg.marker, payload))
    return head, notes


def _assemble(head: list[bytes], encoded: bytes) -> list[bytes | memoryview]:
    """SOI + source JFIF/metadata + the encoder's coding segments and scans (its own JFIF and
    any other metadata it wrote are dropped; its Adobe APP14 is kept), as pieces to write one
    after the other: the scans are a view of ``encoded``, not a copy (a fresh copy of a 12 MP
    photo's data costs as much CPU in page faults as this whole step)."""
    enc = parse_jpeg(encoded)
    coding = [encoded[s.start:s.end] for s in enc.header
              if not s.is_metadata or s.marker == APP14]
    return [b"\xff\xd8", *head, *coding, memoryview(encoded)[enc.first_scan:enc.end]]


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


