"""Handing memory freed by one phase of a stage back to the operating system before the next phase.

On Linux, glibc keeps the memory PyTorch frees on the CPU in its heap for reuse, and hands little of it back. A
stage that alternates phases with different allocations (greedy rollouts with their KV caches, then training steps
with their activations) then carries one phase's leftovers under the next phase's peak (on the cpu preset's teacher
stage, several GiB between two SFT steps; `tests/test_memory.py` shows the mechanism on heap holes). The trainers call
`release_memory()` where a phase ends (around each validation, after each rollout, after each RL update).
"""
from __future__ import annotations

import ctypes
import gc
import sys
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's malloc_trim, or None where there is none (macOS, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL("libc.so.6"), "malloc_trim", None)
    except OSError:
        return None


def release_memory() -> bool:
    """Collect garbage, empty CUDA's cache, return free heap pages to the OS; True if glibc's heap was trimmed."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
