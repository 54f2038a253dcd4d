"""glibc's malloc told to keep freed memory for reuse, so that batched passes stop paying page faults.

glibc serves every block above its mmap threshold (32 MiB at most) with a fresh mmap and hands
it back to the system when it is freed. A batched pass of a CNN at 224 px allocates many
activations of that size (ResNet-50, batch 16: 51 MB each in the first stage), so every pass
touches new pages that the kernel has to fault in and zero. On the 2-core development machine a
script timing ResNet-50 saliency passes at batch 16 took 3.6 million minor page faults and 13 s
of system time out of 56 s. With mmap off and a high trim threshold the freed blocks stay in the
heap and are reused: 0.5 million faults, 4 s of system time, and passes 1.4x faster there;
1.17x in `benchmarks/evaluation_speed.py` (4.44 -> 5.18 img/s; `--no-reuse-freed-memory`
turns it off). The geirhos16 preset's four attribution methods on EfficientNet-Lite0 at 224 px
(8 images twice, IG+SmoothGrad with 16 steps in passes of 64 rows) took 34 s instead of 79 s.

The price is that a process keeps its peak heap until it exits, which suits the workflow's
jobs: each repeats the same batched passes and then ends.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

# mallopt parameters from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEEP = 2**31 - 1  # the largest trim threshold mallopt takes: keep up to 2 GiB free at the heap's top


def reuse_freed_memory() -> bool:
    """Make glibc serve large blocks from its heap and keep what is freed; True when it took effect.

    A no-op returning False where the C library is not glibc (macOS, musl), where nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _KEEP) == 1
    if not ok:
        log.warning("glibc refused the malloc settings that keep freed memory; batched passes pay page faults")
    return ok
