"""Thumbnails of review images, made on demand and cached in ``state_dir/thumbs/``.

Keyed by the image's content hash (sha256, as journaled) and the size, so a cached thumbnail
can never show another picture, and a file name never reaches a cache path. Written atomically
(two requests for one thumbnail at once both succeed); removed once the item is settled.
One thumbnail is decoded at a time: a browser asks for a page of them at once, and a board
with little memory must not decode six large HEIC files side by side.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path

from rotwatchd.formats.image import load_upright
from rotwatchd.output.atomic import atomic_write_bytes

THUMB_FOLDER = "thumbs"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ThumbnailCache:
    """Upright JPEG thumbnails whose longer side is ``side`` pixels, in ``folder``."""

    def __init__(self, folder: Path, *, side: int = 320, max_pixels: int) -> None:
        self.folder = folder
        self.side = side
        self.max_pixels = max_pixels
        self._making = threading.Lock()

    def path_for(self, sha256: str) -> Path:
        """Where the thumbnail of this content lives. Raises ValueError for a non-hash."""
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.folder / f"{sha256}-{self.side}.jpg"

    def get(self, sha256: str, source: Path) -> bytes:
        """The thumbnail of ``source`` (whose content hash is ``sha256``), made if missing.
        Raises ImageProblem / UnsupportedFormat (no picture to show), OSError."""
        path = self.path_for(sha256)
        with contextlib.suppress(FileNotFoundError):
            return path.read_bytes()
        with self._making:
            with contextlib.suppress(FileNotFoundError):  # made while this request waited
                return path.read_bytes()
            image = load_upright(source, self.side, max_pixels=self.max_pixels)
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=82)
            data = buffer.getvalue()
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data, within=self.folder)
        return data

    def discard(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            os.unlink(self.path_for(sha256))

    def prune(self, keep: Iterable[str]) -> int:
        """Remove thumbnails of content not in ``keep`` (items settled meanwhile, e.g. from
        the CLI). Returns how many were removed."""
        wanted = {f"{sha}-{self.side}.jpg" for sha in keep}
        removed = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.folder):
                if entry.name.endswith(".jpg") and entry.name not in wanted:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed += 1
        return removed
