"""A process-level allocator setting for long runs; the CLI (the process owner) applies it once."""

from __future__ import annotations

__all__ = ["tune_malloc"]

_malloc_tuned = False


def tune_malloc() -> None:
    """glibc only: keep up to 16 MB of freed heap per arena instead of handing it back to the OS at once.

    Image bytes are allocated in the reader threads (their own malloc arenas) and freed on the event loop once
    sent. With glibc's default 128 KB trim threshold every batch returns its pages and the next one faults them
    in again: ~6 page faults and ~8 us of CPU per 50 KB image, 5-7% of the whole run (benchmarks/README.md).
    Files over 1 MB still come from mmap and go straight back, so RSS stays bounded. Done once per process,
    by the process owner (the CLI), not by ``run()``: a library must not retune its host's allocator.
    """
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-1, 16 * 1024 * 1024)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 1024 * 1024)  # M_MMAP_THRESHOLD (setting one turns off glibc's sliding thresholds)
    except (OSError, AttributeError):
        pass
