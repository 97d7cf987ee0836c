"""Releasing freed heap memory: pages that glibc keeps after a free go back to the system."""

import ctypes.util
import platform
import subprocess
import sys

import pytest

from scanner.allocator import release_free_memory

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason=f"glibc only; this C library is {ctypes.util.find_library('c')}"
)

# Runs in a fresh interpreter. Freeing a 4 MiB array raises glibc's dynamic mmap
# threshold, so the next 30 arrays of 2 MiB come from the heap. A small block
# allocated after them keeps the heap from shrinking when they are freed. The probe
# prints the MiB of resident memory that freeing the arrays gave back, then the MiB
# that the call given as its argument gave back.
_PROBE = """
import ctypes
import ctypes.util
import sys
import numpy as np
import psutil
from scanner.allocator import release_free_memory

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
process = psutil.Process()
first = np.ones(4 << 20, dtype=np.uint8)
del first
arrays = [np.ones(2 << 20, dtype=np.uint8) for _ in range(30)]
keep = libc.malloc(70_000)
before = process.memory_info().rss
del arrays
freed = process.memory_info().rss
if sys.argv[1] == "release":
    assert release_free_memory()
print((before - freed) >> 20, (freed - process.memory_info().rss) >> 20)
"""


def _released_mib(mode: str) -> tuple[int, int]:
    completed = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    on_free, on_release = completed.stdout.split()
    return int(on_free), int(on_release)


def test_release_returns_freed_heap_pages():
    on_free, on_release = _released_mib("release")

    assert on_free <= 8
    assert on_release >= 50


def test_freed_heap_pages_stay_without_release():
    # The case the release is for: freeing alone gives the pages back neither at
    # the free nor later.
    on_free, on_release = _released_mib("none")

    assert on_free <= 8
    assert on_release <= 8


def test_release_repeats_in_one_process():
    assert release_free_memory() is True
    assert release_free_memory() is True
