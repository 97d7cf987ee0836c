"""Count-Min sketch of n-gram frequencies, laid out for the cache.

Layout: `2**blocks_log2` blocks of 16 counters, one 64-byte cache line each
while a shard counts in uint32. Half the rows of an item live in one block and
half in a second, independently chosen block, and each row picks a counter of
its block (`kernels.ngrams.countmin_cell` gives the layout), so an update
touches two cache lines instead of `depth`. A shard updates conservatively (only counters
below the new minimum rise); merged sketches add their counters in uint64.

Error: estimates never fall below the true count. Each row has width
w = 2**blocks_log2 * 32 / depth, so a row overestimates an item by at most e * N / w with
probability at least 1 - 1/e (Cormode and Muthukrishnan, 2005; conservative
update and the sum of conservative sketches only lower the counters). Rows in
one block are not independent, so the classic failure probability exp(-depth)
is not guaranteed; two items share all their counters with probability
2**-(2 * blocks_log2 + 12) at depth 4. `tests/test_countmin.py` measures the share
of items beyond the bound.
"""

import math

import numpy as np

from kernels.ngrams import CM_BLOCK_SLOTS, countmin_query_batch, countmin_update
from kernels._jit import kernel
from scanner.codec import decode_frame, encode_frame

_KIND = "countmin"


@kernel
def _update_batch(table, depth, hashes):
    for index in range(hashes.shape[0]):
        countmin_update(table, depth, hashes[index])


class CountMinSketch:
    """Frequency estimates of 64-bit hashes; merged tables hold uint64 counters."""

    def __init__(self, blocks_log2: int = 15, depth: int = 4, table: np.ndarray | None = None):
        if depth not in (2, 4):
            raise ValueError(f"Count-Min depth {depth} is invalid: use 2 or 4")
        if not 4 <= blocks_log2 <= 24:
            raise ValueError(f"Count-Min blocks_log2 {blocks_log2} is out of range: use 4 to 24")
        self.blocks_log2 = blocks_log2
        self.depth = depth
        shape = (1 << blocks_log2, CM_BLOCK_SLOTS)
        if table is None:
            table = np.zeros(shape, dtype=np.uint64)
        elif table.shape != shape or table.dtype not in (np.uint32, np.uint64):
            raise ValueError(f"Count-Min table must be {shape} uint32 or uint64 counters")
        self.table = table

    @property
    def width(self) -> int:
        """Counters per row."""
        return (1 << self.blocks_log2) * CM_BLOCK_SLOTS * 2 // self.depth

    def error_bound(self, total: int) -> float:
        """Overestimate that one row stays within with probability >= 1 - 1/e."""
        return math.e * total / self.width

    def update_batch(self, hashes: np.ndarray) -> None:
        _update_batch(self.table, self.depth, np.ascontiguousarray(hashes, dtype=np.uint64))

    def query(self, hashes: np.ndarray) -> np.ndarray:
        """Return the estimated count of each hash (uint64)."""
        return countmin_query_batch(self.table, self.depth, np.ascontiguousarray(hashes, dtype=np.uint64))

    def merge(self, other: "CountMinSketch") -> "CountMinSketch":
        if (other.blocks_log2, other.depth) != (self.blocks_log2, self.depth):
            raise ValueError(
                f"cannot merge Count-Min sketches of shape blocks_log2={self.blocks_log2}, "
                f"depth={self.depth} and blocks_log2={other.blocks_log2}, depth={other.depth}"
            )
        return CountMinSketch(
            self.blocks_log2, self.depth, np.add(self.table, other.table, dtype=np.uint64)
        )

    def to_bytes(self) -> bytes:
        meta = {"blocks_log2": self.blocks_log2, "depth": self.depth}
        return encode_frame(_KIND, meta, {"table": self.table.astype(np.uint64)})

    @classmethod
    def from_bytes(cls, data: bytes) -> "CountMinSketch":
        meta, arrays = decode_frame(data, _KIND)
        return cls(meta["blocks_log2"], meta["depth"], arrays["table"])

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, CountMinSketch)
            and (other.blocks_log2, other.depth) == (self.blocks_log2, self.depth)
            and np.array_equal(other.table.astype(np.uint64), self.table.astype(np.uint64))
        )
