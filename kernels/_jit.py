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


def kernel(function=None, *, inline: bool = False):
    """Compile `function` in nopython mode, cached when a cache location is writable.

    `inline=True` inlines the function into its callers at numba's IR level; hot
    helpers called once per token or n-gram need it, because numba does not
    reliably inline calls between separately compiled functions.
    """
    if function is None:
        return lambda wrapped: kernel(wrapped, inline=inline)

    global _warned_no_cache
    options = {"nogil": True, "inline": "always" if inline else "never"}
    try:
        return numba.njit(cache=True, **options)(function)
    except RuntimeError as error:
        if not _warned_no_cache:
            logger.warning("numba cache disabled, kernels compile at each start: %s", error)
            _warned_no_cache = True
        return numba.njit(cache=False, **options)(function)
