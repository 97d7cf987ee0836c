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


def kernel(function=None, *, leaf: bool = False):
    """Compile `function` in nopython mode, cached when a cache location is writable.

    `leaf=True` marks a helper that allocates nothing and is called once per
    byte, token or n-gram. It compiles without numba's reference counting
    (the `_nrt=False` option), because otherwise each call that passes arrays
    pays atomic reference-count updates: measured 38 ns against 2.4 ns per call
    of the heavy-hitter table probe (numba 0.68, this project's benchmark
    machine). A leaf must not create arrays.
    """
    if function is None:
        return lambda wrapped: kernel(wrapped, leaf=leaf)

    global _warned_no_cache
    options = {"nogil": True}
    if leaf:
        options["_nrt"] = False
    try:
        return numba.njit(cache=True, **options)(function)
    except RuntimeError as error:
        if not _warned_no_cache:
            logger.warning("numba cache disabled, kernels compile at each start: %s", error)
            _warned_no_cache = True
        return numba.njit(cache=False, **options)(function)
