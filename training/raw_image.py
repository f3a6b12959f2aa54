"""One upright picture pulled out of a source package (shared by the source collectors)."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class RawImage:
    """One upright picture pulled out of a package (``alpha`` -> a stamp to composite)."""

    package: str
    origin: str  # path inside the package (or rcc file + offset)
    image: Image.Image
    kind: str  # photo | wallpaper | stamp | cartoon | painting ...
