"""Keep freed CPU memory for reuse instead of handing it back to the kernel at every step.

CPU tensors live in memory from the C library's ``malloc``. glibc gives freed memory at
the top of its heap back to the kernel once more than a threshold is free (by default
twice its dynamic ``mmap`` threshold, a few MiB to 64 MiB), and the next tensor of that
size then takes one page fault per 4 KiB page to get it back. A render or training step
allocates and frees hundreds of MiB of image-sized tensors, so on a 240 x 320 body batch
about a third of the renderer's time went to the kernel (measured: 138,676 page faults
for 128 frames; 3,831 with this setting; 1.8x more frames per second, training steps
1.35x (depth features) and 2.1x (FCN) faster, with the kernel's transparent huge pages
in ``madvise`` mode). Where they are ``always`` on, the kernel faults memory in 2 MiB at
a time and the gain is smaller (CI saw under 100 faults for renders that fault 7,000 times
here). The cost: a process keeps up to ``trim_threshold_mib`` of freed memory mapped.

``lightning-synth`` applies it at start-up (DataLoader workers forked from it inherit
it); set ``LIGHTNING_SYNTH_KEEP_FREED_MEMORY=0`` to keep glibc's defaults. In your own
script, call :func:`keep_freed_memory` before building the Trainer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["ENV_SWITCH", "keep_freed_memory", "keep_freed_memory_from_env"]

#: Environment variable that turns the setting off for ``lightning-synth`` (``0``).
ENV_SWITCH = "LIGHTNING_SYNTH_KEEP_FREED_MEMORY"

# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heap (and are reused) instead of a fresh mapping
# per block: a training step's largest activations (FCN at 240 x 320, batch 16: 157 MiB)
# must fit. mallopt(3) documents 32 MiB as the maximum on 64-bit systems, glibc 2.36
# accepts more; where it refuses, 32 MiB.
_MMAP_THRESHOLDS = (256 << 20, 32 << 20)


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # musl, macOS and Windows C libraries have no gnu_get_libc_version (nor mallopt's
    # glibc semantics): nothing to tune there.
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def keep_freed_memory(trim_threshold_mib: int = 512) -> bool:
    """Make glibc keep freed memory for the next tensors instead of returning it.

    Applies to the calling process and to processes it forks afterwards.

    Args:
        trim_threshold_mib: free memory (MiB) glibc may keep at the top of its heap
            before it returns any to the kernel; blocks up to 256 MiB (32 MiB on
            glibc versions that cap it there) are also served from the heap instead of
            fresh mappings.

    Returns:
        ``True`` when the C library is glibc and accepted the setting, ``False`` on
        other platforms (where there is nothing to do).
    """
    if trim_threshold_mib < 0:
        raise ValueError(f"trim_threshold_mib must be >= 0, got {trim_threshold_mib}")
    libc = _glibc()
    if libc is None:
        return False
    mmap_ok = any(libc.mallopt(_M_MMAP_THRESHOLD, size) for size in _MMAP_THRESHOLDS)
    trim_ok = libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold_mib) << 20)
    return bool(mmap_ok and trim_ok)


def keep_freed_memory_from_env() -> bool:
    """:func:`keep_freed_memory` unless ``LIGHTNING_SYNTH_KEEP_FREED_MEMORY=0``."""
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return keep_freed_memory()
