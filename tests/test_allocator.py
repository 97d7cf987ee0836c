"""The fixed glibc mmap threshold: set once per process, and arrays of a few MiB are mmapped after it."""

import ctypes.util
import platform
import subprocess
import sys

import pytest

from scanner.allocator import fix_mmap_threshold

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason=f"glibc only; this C library is {ctypes.util.find_library('c')}"
)

# Runs in a fresh interpreter. Freeing a 4 MiB array would raise glibc's dynamic
# threshold to 4 MiB. The probe then allocates a 2 MiB array and prints the MiB that
# glibc keeps in mmapped chunks (mallinfo2's hblkhd): 2 when the array was mmapped,
# so that freeing it returns it to the system, and 0 when it came from the heap.
_PROBE = """
import ctypes
import ctypes.util
import sys
import numpy as np
from scanner.allocator import fix_mmap_threshold

class MallocInfo(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallocInfo
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
first = np.ones(4 << 20, dtype=np.uint8)
del first
second = np.ones(2 << 20, dtype=np.uint8)
print(libc.mallinfo2().hblkhd >> 20)
"""


def _mmapped_mib(mode: str) -> int:
    completed = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=120)
    if "mallinfo2" in completed.stderr:
        pytest.skip(f"this glibc has no mallinfo2 (added in 2.33): {completed.stderr.strip()[-200:]}")
    assert completed.returncode == 0, completed.stderr
    return int(completed.stdout.strip())


def test_threshold_set_once_per_process():
    assert fix_mmap_threshold() is True
    assert fix_mmap_threshold() is True


def test_arrays_after_large_free_are_mmapped():
    assert _mmapped_mib("fixed") >= 2


def test_dynamic_threshold_moves_arrays_to_heap():
    # Without the fix, the same array comes from the heap: the case the fix is for.
    assert _mmapped_mib("dynamic") == 0
