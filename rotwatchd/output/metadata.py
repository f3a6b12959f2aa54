"""EXIF carried into a corrected image: the in-place edit plus the thumbnail turned with Pillow."""

from __future__ import annotations

import io
import warnings

from PIL import Image

from rotwatchd.formats import exif as exif_edit
from rotwatchd.formats.image import to_upright
from rotwatchd.formats.jpeg_markers import EXIF_PREFIX


def fixed_exif(tiff: bytes, orientation: int, notes: list[str]) -> bytes:
    """EXIF (TIFF block) for pixels transformed by ``orientation``: Orientation 1, pixel
    dimensions swapped, thumbnail turned, all else byte for byte (exif_edit). The result
    fits one JPEG segment (the thumbnail is recompressed harder if needed). What could not
    be done is appended to ``notes``."""
    for quality in (90, 75, 50):
        try:
            fixed = exif_edit.fix_after_transform(tiff, orientation,
                                                  thumbnail_rotator(orientation, quality))
        except exif_edit.ExifError as exc:
            # IFD0 unreadable: no viewer can read an Orientation from it either; keep it whole.
            notes.append(f"EXIF not editable ({exc}): carried unchanged")
            return tiff
        if len(fixed) + len(EXIF_PREFIX) <= 0xFFFF - 2:
            return fixed
    notes.append("EXIF thumbnail too large after rotation: EXIF carried with Orientation only")
    return exif_edit.fix_after_transform(tiff, orientation, lambda thumb: thumb)


MAX_THUMBNAIL_PIXELS = 1_000_000  # EXIF thumbnails are ~160x120; bigger claims are bombs


def thumbnail_rotator(orientation: int, quality: int) -> exif_edit.ThumbnailFn:
    """Turns an EXIF JPEG thumbnail; an unreadable or implausibly large one is returned as
    it is (it is untrusted data inside the EXIF block)."""
    def rotate(thumb: bytes) -> bytes:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # damaged thumbnail metadata
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(thumb), formats=["JPEG"]) as im:
                    if im.width * im.height > MAX_THUMBNAIL_PIXELS:
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
