"""release_memory hands the heap's free holes back to the OS (glibc keeps them otherwise)."""
import subprocess
import sys

import pytest

PROBE = """
import os, torch
from dgpo_lib.memory import release_memory
def rss(): return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
blocks = [torch.ones(25_000) for _ in range(2000)]  # 100 kB each: below glibc's mmap threshold, from the heap
keep = blocks[::10]                                  # every tenth stays: the freed ones are holes, not the heap's top
del blocks
before = rss()
trimmed = release_memory()
print(trimmed, before, rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_holes_in_the_heap_go_back_to_the_os():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    trimmed, before, after = out[0] == "True", float(out[1]), float(out[2])
    assert trimmed
    assert before - after > 100, f"resident {before:.0f} MiB before, {after:.0f} after: 180 MiB of holes kept"
