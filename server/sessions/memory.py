"""Giving a finished session's memory back to the operating system.

A session holds its optimizer (several vectors of the code's length: tens of MB for a
large pixel code), its latest images and its generator's share of the pool. When it ends
these are dropped, but that alone does not shrink the server: the objects may sit in
reference cycles until the collector's next full pass, and glibc keeps freed heap memory for
reuse rather than returning it. :func:`give_back` does both steps at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None  # glibc only


def give_back() -> None:
    """Collect unreachable objects, then return free heap pages to the system (on glibc;
    elsewhere the allocator decides)."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
