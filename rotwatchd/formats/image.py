"""Open, inspect and verify image files safely; load them upright for the model.

Formats are recognised by their first bytes, never by the file name. Sizes are checked from the
header before any pixel is decoded (decompression bombs), and inspect() decodes enough to catch
truncation and corruption. Problems raise ImageProblem with a short machine ``reason``; an
image in a format rotwatchd does not handle raises UnsupportedFormat (callers send it to review,
not to quarantine, because it may be a perfectly good file).

HEIC/HEIF: pillow-heif applies the file's own transforms (irot/imir) when it opens the image and
resets the EXIF Orientation it reports to 1; recent Pillow does the same for TIFF on load. So the
orientation reported here is always "what is still to be applied to the pixels as decoded
here", and write_corrected's ``orientation`` means the same: nothing is ever rotated twice.
What such a decoder applied is still reported, as ``ImageInfo.applied_orientation``: it is the
file's own statement of how it is stored, trusted like an EXIF tag (the model is not asked).

Size limit: ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`, also the schema's
``limits.max_pixels`` default) is the only one that counts; Pillow's own decompression-bomb
limit is raised to it so that it never refuses first.
"""

from __future__ import annotations

import contextlib
import io
import math
import struct
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from rotwatchd.formats.exif import read_orientation
from rotwatchd.formats.heap import release_memory
from rotwatchd.formats.heif import HeifEditError, primary_transforms
from rotwatchd.formats.jpeg_markers import (
    LOSSLESS_SOF,
    JpegLayout,
    JpegStructureError,
    parse_jpeg,
)
from rotwatchd.formats.sniff import (
    ImageProblem,
    UnsupportedFormat,
    detect_format,
)

#: Larger images are refused; above the largest camera sensors (~102 MP), far below bombs. The
#: one default for every module (the schema's ``limits.max_pixels``, decoding and the writer).
DEFAULT_MAX_PIXELS = 200_000_000

# EXIF orientation -> Pillow transpose that makes the stored pixels upright.
UPRIGHT_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class ImageInfo:
    """What inspect() found. ``width``/``height`` are of the decoded pixels (HEIF: after its
    own transforms); ``exif_orientation`` is a valid 1..8 still to apply, None when absent
    or invalid; ``applied_orientation`` is the file's own orientation (TIFF tag, HEIF
    irot/imir) as an EXIF value that the decoder has already applied to those pixels, None
    when it applied none; ``animated`` means more than one frame (callers must not rotate
    it; the extra images of a multi-picture JPEG are not frames). ``jpeg``: a JPEG's bytes
    and marker structure as read, for the model input and the writer to reuse; ``verified``
    False: its entropy-coded data has not been decoded yet (``inspect(verify=False)``), so
    whoever decodes it next (the model input, jpegtran, the writer) is its check."""

    format: str
    width: int
    height: int
    exif_orientation: int | None
    animated: bool
    applied_orientation: int | None = None
    jpeg: JpegSource | None = field(default=None, repr=False, compare=False)
    verified: bool = True


@dataclass(frozen=True)
class JpegSource:
    """A JPEG read once: its bytes and verified marker structure (see read_jpeg)."""

    data: bytes
    layout: JpegLayout

    def open(self) -> Image.Image:
        """A lazily decoding Pillow image of these bytes (call inside translate_errors)."""
        return Image.open(io.BytesIO(self.data), formats=["JPEG"])


@contextlib.contextmanager
def translate_errors(path: Path) -> Iterator[None]:
    """Turn the many ways Pillow and friends fail into ImageProblem (FileNotFoundError passes,
    so callers can tell a file that vanished from a bad one).

    Pillow's UserWarnings about damaged metadata ("Truncated File Read", "Tag data larger
    than file"...) are silenced here: a hostile file must not flood the log, and what matters
    (can the pixels be decoded?) surfaces as an exception. catch_warnings is process-wide;
    concurrent workers can at worst leave these same "ignore" filters installed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except (ImageProblem, UnsupportedFormat, FileNotFoundError):
        raise
    except PermissionError as exc:
        raise ImageProblem("unreadable", f"permission denied: {exc.strerror}", path) from exc
    except Image.DecompressionBombError as exc:
        raise ImageProblem("too-large", str(exc), path) from exc
    except JpegStructureError as exc:
        raise ImageProblem(exc.kind, str(exc), path) from exc
    except UnidentifiedImageError as exc:
        raise ImageProblem("corrupt", "image header cannot be decoded", path) from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError,
            ZeroDivisionError, RuntimeError) as exc:
        text = str(exc) or type(exc).__name__
        truncated = isinstance(exc, EOFError) or "truncat" in text.lower()
        raise ImageProblem("truncated" if truncated else "corrupt", text, path) from exc


_PILLOW_LIMIT_LOCK = threading.Lock()


def allow_in_pillow(max_pixels: int) -> None:
    """Make Pillow's own decompression-bomb limit at least ``max_pixels``, so that ours (checked
    from the header, with a message naming ``limits.max_pixels``) is the one that refuses.

    Pillow raises DecompressionBombError above 2 * Image.MAX_IMAGE_PIXELS (~179 MP by
    default) when it opens or decodes; it is a process-wide value, so it is only ever raised
    (under a lock), never lowered: a smaller ``max_pixels`` is enforced by _check_size."""
    with _PILLOW_LIMIT_LOCK:
        current = Image.MAX_IMAGE_PIXELS
        if current is not None and current < max_pixels:
            Image.MAX_IMAGE_PIXELS = max_pixels


def open_image(path: Path, fmt: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open lazily (no pixels decoded) with only the ``fmt`` plugin, refusing images over
    ``max_pixels`` from their header. Call inside translate_errors(path)."""
    # Pillow's DecompressionBombWarning is silenced by translate_errors, and its error comes
    # only above twice the limit set here: our own check below is the one that counts.
    allow_in_pillow(max_pixels)
    im = Image.open(path, formats=[fmt])
    try:
        _check_size(path, *im.size, max_pixels)
        raw = camera_raw_kind(im) if fmt == "TIFF" else None
        if raw:
            raise UnsupportedFormat(raw, path)
    except (ImageProblem, UnsupportedFormat):
        im.close()
        raise
    return im


_RAW_PHOTOMETRIC = frozenset({32803, 34892})  # CFA (Bayer) and LinearRaw


def camera_raw_kind(im: Image.Image) -> str | None:
    """Why a TIFF-structured file is a camera raw (DNG, NEF, ARW...), else None.

    Their first IFD is usually a small preview: treating it as the image would write a
    thumbnail where the photographer expects their photo, so such files go to review."""
    tags = getattr(im, "tag_v2", {})
    if 50706 in tags:
        return "DNG raw"
    if 330 in tags or tags.get(254) == 1:  # SubIFDs / "reduced-resolution image" first
        return "camera raw (TIFF-based: the first image is a preview)"
    if tags.get(262) in _RAW_PHOTOMETRIC:
        return "camera raw (sensor data)"
    return None


def _check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageProblem("too-large", f"{width}x{height} pixels exceeds the limit of "
                           f"{max_pixels} pixels (limits.max_pixels)", path)
    if width <= 0 or height <= 0:
        raise ImageProblem("corrupt", f"impossible size {width}x{height}", path)


def orientation_of(im: Image.Image) -> int | None:
    """A valid EXIF orientation (1..8) still to apply to ``im``'s pixels, None when absent or
    invalid (0, 9, text, two values...): an invalid tag is treated as absent, never a crash.

    The EXIF block is parsed here rather than through Image.getexif(), which warns or raises
    on malformed tags. Call it after ``im.load()``: decoders that apply the orientation
    themselves (pillow-heif on open, recent Pillow's TIFF decoder on load) remove or reset the
    tag, so the answer is relative to the pixels as decoded and nothing is rotated twice."""
    raw = im.info.get("exif")
    if not (isinstance(raw, bytes) and raw):
        raw = png_raw_profile_exif(im.info)
    if raw:
        return read_orientation(raw[6:] if raw.startswith(b"Exif\x00\x00") else raw)
    return declared_orientation(im)  # TIFF: the orientation lives in the image's own IFD


PNG_RAW_EXIF = "Raw profile type exif"


def png_raw_profile_exif(info: Mapping[Any, Any]) -> bytes | None:
    """The EXIF block of a PNG text chunk "Raw profile type exif" (ImageMagick's way before the
    eXIf chunk existed: a name line, a length line, then hex), None when absent or unreadable."""
    text = info.get(PNG_RAW_EXIF)
    if not isinstance(text, str):
        return None
    lines = text.strip().split("\n")
    try:
        return bytes.fromhex("".join(lines[2:])) or None
    except ValueError:
        return None


def declared_orientation(im: Image.Image) -> int | None:
    """A TIFF's own Orientation tag (1..8) as the file states it, None when absent or invalid.

    Call it before ``im.load()``: Pillow 13 and later apply the tag when decoding a TIFF and
    delete it, so afterwards only the pixels tell."""
    value = getattr(im, "tag_v2", {}).get(0x0112)
    if isinstance(value, tuple) and len(value) == 1:
        value = value[0]
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 8:
        return value
    return None


def heif_orientation(path: Path) -> int | None:
    """The EXIF orientation equivalent to the transforms (irot, imir) of a HEIF's primary
    image, which every reader (pillow-heif included) applies on decoding; None when it has
    none or its boxes cannot be read."""
    try:
        ops = primary_transforms(Path(path).read_bytes())
    except HeifEditError:
        return None
    import numpy as np  # here only: the JPEG path never needs it

    probe_pixels = np.arange(6, dtype=np.uint8).reshape(2, 3)  # each transform differs
    shown = probe_pixels
    for kind, value in ops:  # irot turns anticlockwise; imir 0 flips top-bottom, 1 left-right
        shown = np.rot90(shown, value) if kind == "irot" else np.flip(shown, value)
    probe = Image.fromarray(probe_pixels)
    for orientation in range(2, 9):
        if np.array_equal(np.asarray(to_upright(probe, orientation)), shown):
            return orientation
    return None


def to_upright(im: Image.Image, orientation: int | None) -> Image.Image:
    """``im`` transformed by the EXIF ``orientation`` (1/None: unchanged)."""
    method = UPRIGHT_TRANSPOSE.get(orientation or 1)
    return im.transpose(method) if method is not None else im


def inspect(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS,
            verify: bool = True) -> ImageInfo:
    """Identify and verify ``path``: the whole JPEG marker structure is walked and the pixels
    are decoded (JPEG at 1/8 scale, which still reads every coefficient).

    ``verify`` False leaves a JPEG's entropy-coded data undecoded (``ImageInfo.verified``
    False): the caller promises that the next step decodes it anyway (model input,
    jpegtran, the writer's re-encode), so a photo is decoded once, not twice; other formats
    are always decoded here.
    Raises ImageProblem, UnsupportedFormat, or FileNotFoundError if the file vanished."""
    fmt = detect_format(path)
    if fmt == "JPEG":
        return _inspect_jpeg(path, max_pixels, verify)
    with translate_errors(path):
        if fmt == "PNG":  # verify() checks every chunk CRC; the image must be reopened after
            with open_image(path, fmt, max_pixels) as im:
                im.verify()
        with open_image(path, fmt, max_pixels) as im:
            animated = bool(getattr(im, "is_animated", False))
            declared = declared_orientation(im) if fmt == "TIFF" else None
            im.load()
            width, height = im.size
            orientation = orientation_of(im)  # after load: see orientation_of
            im.close()  # frees the decoded pixels now
        applied = heif_orientation(path) if fmt == "HEIF" else None
        if declared is not None and orientation is None:
            applied = declared  # the TIFF decoder applied its tag and dropped it
    release_memory(width * height)
    return ImageInfo(fmt, width, height, orientation, animated, applied)


def _inspect_jpeg(path: Path, max_pixels: int, verify: bool) -> ImageInfo:
    # A multi-picture JPEG (MPO: stereo pairs, gain maps) is one JPEG followed by others: the
    # first is the photo, the writer keeps the rest after it. JPEG decoders never apply the
    # EXIF orientation, so it is read from the header, before (or without) decoding.
    with translate_errors(path):
        data, layout = read_jpeg(path, max_pixels)
        jpeg = JpegSource(data, layout)
        with jpeg.open() as im:
            width, height = im.size
            orientation = orientation_of(im)
    if verify:
        verify_jpeg(path, jpeg)
    return ImageInfo("JPEG", width, height, orientation, False, None, jpeg, verify)


def verify_jpeg(path: Path, jpeg: JpegSource) -> None:
    """Decode every coefficient of ``jpeg`` (at 1/8 scale: cheap); raises ImageProblem when
    the data is truncated or corrupt (``path`` names it)."""
    with translate_errors(path), jpeg.open() as im:
        im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
        im.load()


def read_jpeg(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[bytes, JpegLayout]:
    """The bytes and verified marker structure of a JPEG that rotwatchd can process.

    Raises ImageProblem (truncated, corrupt, too-large: checked from the frame header before
    any decoding) or UnsupportedFormat (JPEG-LS, 12-bit, lossless JPEG)."""
    with translate_errors(path):
        data = Path(path).read_bytes()
        if b"\xff\xf7" in data[:65536] and _is_jpeg_ls(data):
            raise UnsupportedFormat("JPEG-LS", path)
        layout = parse_jpeg(data)
    frame = layout.frame
    _check_size(path, frame.width, frame.height, max_pixels)
    allow_in_pillow(max_pixels)  # the writer may decode it with Pillow after this
    if frame.marker in LOSSLESS_SOF or frame.precision != 8:
        raise UnsupportedFormat(f"JPEG ({frame.precision}-bit or lossless)", path)
    return data, layout


def _is_jpeg_ls(data: bytes) -> bool:
    """JPEG-LS (SOF55, FF F7) shares JPEG's SOI but is a different codec."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xF7:
            return True
        if marker == 0xDA or marker in range(0xC0, 0xD0):
            return False
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return False


def _rgb(im: Image.Image) -> Image.Image:
    """RGB for the model: transparency composited on white, 16-bit scaled to 8-bit."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        import numpy as np  # only for these modes

        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr * (255.0 / peak), 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB") if im.mode != "RGB" else im


def _shrunk(im: Image.Image, max_side: int) -> Image.Image:
    """``im`` (loaded) box-averaged by the integer factor that keeps its longer side at least
    twice ``max_side`` (the thumbnail's reducing gap), in its own mode and a strip at a time:
    no full-size copy is ever made (a conversion to RGB, reduce()'s premultiplied alpha).
    ``im`` itself when it is small enough. Up to factor - 1 edge pixels are left out."""
    factor = max(im.size) // (2 * max_side)
    if factor < 2:
        return im
    width, height = im.width // factor, im.height // factor
    rows = factor * max(1, _STRIP_PIXELS // (im.width * factor))
    strips = []
    for top in range(0, height * factor, rows):
        strip = im.crop((0, top, width * factor, min(top + rows, height * factor)))
        try:
            strips.append(_reducible(strip, "transparency" in im.info).reduce(factor))
        except ValueError:  # a mode reduce() does not know: the full-size path still works
            return im
    out = Image.new(strips[0].mode, (width, height))
    for i, strip in enumerate(strips):
        out.paste(strip, (0, i * rows // factor))
    return out.convert("I;16") if im.mode.startswith("I;16") else out


_STRIP_PIXELS = 1 << 20  # source pixels per strip: a few MB at a time
# Modes Image.reduce() cannot average, and the mode each is averaged in instead (16-bit grey
# goes back to I;16 afterwards, so _rgb still scales it as 16-bit).
_REDUCE_AS = {"1": "L", "I;16": "I", "I;16B": "I", "I;16L": "I", "I;16N": "I"}


def _reducible(strip: Image.Image, transparent: bool) -> Image.Image:
    if strip.mode == "P":
        return strip.convert("RGBA" if transparent else "RGB")
    return strip.convert(_REDUCE_AS[strip.mode]) if strip.mode in _REDUCE_AS else strip


def load_upright(path: Path, max_side: int | None = None, *,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """RGB image with its EXIF orientation applied exactly once (HEIF: by pillow-heif only).

    With ``max_side`` the longer side is at most that many pixels; JPEGs are decoded at a
    reduced DCT scale (draft mode), so a 12 MP photo costs a fraction of a full decode; other
    formats are decoded once and averaged down in their own mode before any conversion, and
    the freed memory is handed back. Animated images give their first frame.
    Raises ImageProblem / UnsupportedFormat."""
    fmt = detect_format(path)
    with translate_errors(path), open_image(path, fmt, max_pixels) as im:
        return _upright_reduced(im, fmt, max_side)


def model_input(path: Path, info: ImageInfo, max_side: int, *,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """:func:`load_upright` of an inspected file (same pixels), decoding a JPEG from the bytes
    inspect() already read. This decode also verifies a JPEG inspected with ``verify=False``.
    Raises ImageProblem / UnsupportedFormat."""
    if info.jpeg is None:
        return load_upright(path, max_side, max_pixels=max_pixels)
    with translate_errors(path), info.jpeg.open() as im:
        return _upright_reduced(im, "JPEG", max_side)


def _upright_reduced(im: Image.Image, fmt: str, max_side: int | None) -> Image.Image:
    """The body of load_upright for ``im`` opened (call inside translate_errors)."""
    out = _decoded_upright(im, fmt, max_side)
    decoded = im.width * im.height
    if out is not im:  # close() frees the decoded pixels now, not at some later gc
        im.close()
    release_memory(decoded)
    if max_side and max(out.size) > max_side:
        out.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return out


def _decoded_upright(im: Image.Image, fmt: str, max_side: int | None) -> Image.Image:
    """The RGB, upright pixels of ``im`` (opened, not loaded), reduced for ``max_side``."""
    if max_side and fmt == "JPEG":
        scale = max_side / max(im.size)
        if scale < 1:
            im.draft("RGB", (math.ceil(im.width * scale), math.ceil(im.height * scale)))
    im.load()
    orientation = orientation_of(im)
    return to_upright(_rgb(_shrunk(im, max_side) if max_side else im), orientation)
