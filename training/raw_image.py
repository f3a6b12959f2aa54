"""One upright picture pulled out of a source package (shared by the source collectors)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps


@dataclass(frozen=True)
class RawImage:
    """One upright picture pulled out of a package (``alpha`` -> a stamp to composite)."""

    package: str
    origin: str  # path inside the package (or rcc file + offset)
    image: Image.Image
    kind: str  # photo | wallpaper | stamp | cartoon | painting ...


def open_upright(path: Path) -> Image.Image | None:
    """A package file decoded with its EXIF orientation applied (phone photos store their turn
    there), or None when it is missing or not a raster Pillow can decode."""
    try:
        im = ImageOps.exif_transpose(Image.open(path))
        im.load()
    except Exception:  # noqa: BLE001 - a package file that is not a decodable raster is skipped
        return None
    return im
