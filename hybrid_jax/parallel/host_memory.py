"""Keep freed host memory in the process, so XLA:CPU's per-step buffers are not page-faulted in anew.

Each execution of a compiled CPU step allocates its temporary buffer (153 MB per device for the toy
train step) and frees it at the end. glibc serves blocks that large with a fresh `mmap` and returns
them with `munmap`, so every step faulted ~75,000 pages in again (~0.13 s of kernel time per 0.36 s
step on the 2-core CPU). Only glibc's main arena can hand out such blocks from memory it keeps: one
arena, no mmap threshold below 2 GiB and no trimming keep the step at zero page faults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_KEEP = 2 ** 31 - 1
ENV = "HYBRID_JAX_HOST_MALLOC"  # "default" leaves glibc's malloc as it is


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as above; True if it did. Call before JAX's backend starts (its threads pick
    their malloc arena on their first allocation). Does nothing off glibc, when `HYBRID_JAX_HOST_MALLOC`
    is `default`, or when `JAX_PLATFORMS` names a platform other than `cpu` first (an accelerator's host
    buffers are small)."""
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if os.environ.get(ENV, "") == "default" or (platforms and platforms.split(",")[0] != "cpu"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return all(mallopt(param, value) == 1 for param, value in
               ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, _KEEP), (_M_TRIM_THRESHOLD, _KEEP)))
