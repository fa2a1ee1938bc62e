"""The node's memory: its RSS for /diagnostics, and image-sized buffers kept in the heap.

`keep_large_buffers` keeps image-sized receive buffers in the heap (glibc), for lower image
transport latency.

Every image a subscriber takes passes through freshly allocated buffers of its size. With
glibc's defaults, a 640x480 rgb8 image (921 KB) is above the allocation size that glibc
serves from fresh `mmap` pages and gives back on `free`, so every message pays page faults
on memory the kernel must zero again. Raising the mmap and trim thresholds keeps such buffers
in the heap for reuse. Measured with bench/transport_probe.py (same image, two bare rclpy
processes, Fast DDS shared memory): stamp -> subscriber callback p50 2.2-2.9 ms with the
defaults, 1.2-1.4 ms with the subscriber tuned; tuning only the publisher changes nothing.
The cost is up to `trim_threshold` of freed memory kept by the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameters (glibc malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def keep_large_buffers(mmap_threshold: int = 32 << 20, trim_threshold: int = 64 << 20) -> bool:
    """Process-wide: allocations below `mmap_threshold` bytes come from the heap, and up to
    `trim_threshold` bytes of free heap are kept. Returns False where this is not glibc (the
    call is then a no-op)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return (mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
            and mallopt(M_TRIM_THRESHOLD, int(trim_threshold)) == 1)


def rss_mb() -> float:
    """Resident set size of this process now, MB of 2**20 bytes as `ps` and bench/ report
    it (NaN where /proc is missing)."""
    import os

    try:
        with open('/proc/self/statm') as f:
            pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return float('nan')
    return pages * os.sysconf('SC_PAGE_SIZE') / 2 ** 20


def peak_rss_mb() -> float:
    """Largest resident set size this process ever had, MB of 2**20 bytes (getrusage; NaN
    where missing)."""
    try:
        import resource
    except ImportError:
        return float('nan')
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
