"""Give the C heap's free pages back to the system when the daemon falls asleep.

Decoding a photo and running the networks allocate and free many large buffers through the C
library's ``malloc``; glibc keeps freed pages inside the process for reuse, so a daemon that has
just handled a batch of photos stays at its busiest resident size while it sleeps. glibc's
``malloc_trim(0)`` (``malloc_trim(3)``) hands every wholly free page back at once; the next
photo gets fresh pages from the kernel (microseconds). Measured with ``bench/bench_daemon.py``
(16 photos of 12 MP, every model loaded): 1-4 MiB less resident once asleep (Pillow's large
image buffers are mapped and unmapped on their own; the rest is smaller C allocations). Other
C libraries (musl) have no such call and return pages on their own: there this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    fn: Callable[[int], int] = trim
    return fn


def return_free_heap() -> bool:
    """Hand the C heap's wholly free pages back to the system; False where the C library has
    no ``malloc_trim`` (nothing done). Thread-safe (glibc locks each arena); never raises."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
