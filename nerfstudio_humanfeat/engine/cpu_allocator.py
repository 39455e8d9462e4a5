"""Memory-allocator settings for CPU training: keep freed memory and back large tensors with huge pages.

A CPU training step allocates and frees many large tensors. glibc returns large blocks to the kernel right away
(mmap/munmap), so every step faults their pages back in, zeroed: a quarter of a 2-core ghnerf-cpu process's time
went to the kernel. Measured (150 s of ghnerf-cpu on the bench split, two one-thread processes side by side, issue-8
note): steps 44 / kernel time 32 s with the defaults, 51 / 23 s keeping freed memory (the glibc part), 56 / 16 s
with huge pages (the THP part), 58 / 5 s with both.

The glibc part can be set in a running process (:func:`keep_freed_memory`, which the trainer calls on the CPU).
Huge pages for torch's tensors are read once, when torch allocates its first tensor, so they must be in the
environment before Python starts: :func:`allocator_environment`, or in a shell
``eval "$(python -m nerfstudio_humanfeat.engine.cpu_allocator)"``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shlex
import sys
from typing import Dict, Mapping, Optional

TRIM_THRESHOLD = 4 << 30
"""Bytes of free memory at the top of the heap before glibc gives it back to the kernel."""
TOP_PAD = 256 << 20
"""Extra bytes glibc takes from the kernel whenever the heap grows."""
MMAP_THRESHOLD = 32 << 20
"""Blocks from this size on get their own mapping, freed at once (glibc's largest allowed threshold)."""

# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3

ENVIRONMENT = {
    # torch (c10 alloc_cpu): 2 MiB-aligned large tensors, madvise(MADV_HUGEPAGE)
    "THP_MEM_ALLOC_ENABLE": "1",
    "GLIBC_TUNABLES": ":".join(
        [
            "glibc.malloc.hugetlb=1",
            f"glibc.malloc.trim_threshold={TRIM_THRESHOLD}",
            f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD}",
            f"glibc.malloc.top_pad={TOP_PAD}",
        ]
    ),
}
"""Environment variables of both parts, for processes started from Python or a shell."""


def allocator_environment(base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """``base`` (default ``os.environ``) with :data:`ENVIRONMENT` added; variables already set are kept."""
    env = dict(os.environ if base is None else base)
    for name, value in ENVIRONMENT.items():
        env.setdefault(name, value)
    return env


def keep_freed_memory() -> bool:
    """Set glibc's trim, top-pad and mmap thresholds in this process; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    largest = 2**31 - 1  # mallopt takes an int
    settings = ((_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD), (_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    return all(mallopt(ctypes.c_int(param), ctypes.c_int(min(value, largest))) == 1 for param, value in settings)


def shell_exports(base: Optional[Mapping[str, str]] = None) -> str:
    """``export`` lines for the variables of :data:`ENVIRONMENT` not yet set in ``base``."""
    base = os.environ if base is None else base
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in ENVIRONMENT.items() if k not in base)


if __name__ == "__main__":
    print(shell_exports())
