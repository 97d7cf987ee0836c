"""The one numba decorator every kernel uses.

Kernels compile with `cache=True` and `nogil=True`. Numba stores its cache beside
the module, or in `NUMBA_CACHE_DIR` when that is set, or in the user's cache
directory. When none of them is writable (a read-only site-packages and no home),
numba raises at decoration time; the kernel then compiles without a cache, so
import still works and only the first call of each process pays for compilation.
"""

import logging

import numba

logger = logging.getLogger(__name__)

_warned_no_cache = False


def kernel(function):
    """Compile `function` in nopython mode, cached when a cache location is writable."""
    global _warned_no_cache

    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError as error:
        if not _warned_no_cache:
            logger.warning("numba cache disabled, kernels compile at each start: %s", error)
            _warned_no_cache = True
        return numba.njit(cache=False, nogil=True)(function)
