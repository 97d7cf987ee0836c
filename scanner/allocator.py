"""Returning a task's freed heap memory to the system, so a worker's memory stays flat over many shards.

glibc serves a large allocation with mmap and returns it to the system on free,
but after each such free it raises its mmap threshold to that size, up to
32 MiB (`mallopt(3)`). From then on, the per-batch arrays of a shard (a few MB
each) come from the heap, and the free space they leave between live blocks is
not given back. Over 100 shards of 4.8 MB in one process (with a profile),
resident memory rose from 261 to 300 MiB.

`release_free_memory` calls glibc's `malloc_trim(0)` at the end of each task,
which gives the free pages inside the heap back as well: the same 100 shards
stayed between 254 and 275 MiB. Fixing the mmap threshold at 1 MiB instead
also kept memory flat (255 to 281 MiB), but every per-batch array then faulted
in fresh pages, which cost 4% more CPU time.
"""

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

_malloc_trim = None
_looked_up = False


def release_free_memory() -> bool:
    """Give the free memory of the process's heap back to the system; return True when glibc did it.

    Without glibc (macOS, musl) this does nothing and returns False.
    """
    global _malloc_trim, _looked_up
    if not _looked_up:
        _looked_up = True
        name = ctypes.util.find_library("c")
        try:
            _malloc_trim = ctypes.CDLL(name).malloc_trim
        except (OSError, AttributeError, TypeError):
            logger.debug("no glibc malloc_trim in this process (C library %s): freed memory stays in the heap", name)
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True
