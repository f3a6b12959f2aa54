"""The decoders' freed memory handed back to the system (glibc's malloc tunables), so that a
daemon decoding 12 MP photos keeps a flat resident size.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

#: Larger images are refused; above the largest camera sensors (~102 MP), far below bombs. The


def _glibc_function(name: str) -> Callable[..., int] | None:
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL(None), name)  # glibc only
    except (OSError, AttributeError):  # pragma: no cover - depends on the C library
        return None
    return function


_MALLOC_TRIM = _glibc_function("malloc_trim")
_MALLOPT = _glibc_function("mallopt")
_M_MMAP_THRESHOLD = -3
#: Blocks from this size up are mapped on their own and unmapped when freed (see bound_heap).
MMAP_FROM_BYTES = 1 << 20
#: Decodes from this many pixels up leave enough freed memory to be worth handing back.
TRIM_FROM_PIXELS = 8_000_000


def bound_heap() -> bool:
    """Make every allocation of MMAP_FROM_BYTES or more a mapping of its own, returned to the
    system the moment it is freed; True when done (glibc), False elsewhere.

    glibc raises its mmap threshold to the size of the largest block freed so far (up to
    32 MiB): after the first 12 MP decode, Pillow's 16 MiB image blocks come from the heap and
    stay resident once freed; measured on the daemon, 217 MiB after 40 photos instead of 116.
    Setting the threshold fixes it (and stops glibc moving it). Process-wide: the daemon calls
    it once at start."""
    if _MALLOPT is None:
        return False
    return bool(_MALLOPT(_M_MMAP_THRESHOLD, MMAP_FROM_BYTES))


def release_memory(pixels: int) -> None:
    """Hand the memory freed after decoding ``pixels`` pixels back to the system.

    glibc keeps large freed blocks in its heap once it has raised its mmap threshold (which
    it does on the first big free), so one 170 MP PNG kept the daemon ~700 MB resident for
    good; malloc_trim(0) returns those pages (see also bound_heap). Does nothing for small
    images or without glibc."""
    if pixels >= TRIM_FROM_PIXELS and _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
