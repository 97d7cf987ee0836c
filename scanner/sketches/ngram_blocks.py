"""Hashed n-gram counts per document block: one side of a two-sample audit.

`NgramBlocks` stores an int64 table of (blocks, buckets) counts and the number of
documents in each block. A document's block is chosen by a hash of its content
and each of its n-grams adds one to bucket `hash % buckets` of that block
(`kernels.blocks`). The counts are exact: the only approximation is that
n-grams sharing a bucket are counted together. Merging adds the tables, so it
is associative and commutative and gives the same bytes for any split or order.

On disk a table is one `scanner.codec` frame of kind "ngram_blocks".
"""

import numpy as np

from kernels.blocks import add_block_counts
from scanner.codec import decode_frame, encode_frame
from scanner.tokens import Tokens

_KIND = "ngram_blocks"


class NgramBlocks:
    """Bucket counts of n-grams per document block, with the documents per block."""

    def __init__(self, blocks: int, buckets: int, counts: np.ndarray | None = None, documents: np.ndarray | None = None):
        if blocks < 2:
            raise ValueError(f"invalid block count {blocks}: use at least 2")
        if buckets < 2:
            raise ValueError(f"invalid bucket count {buckets}: use at least 2")
        self.counts = np.zeros((blocks, buckets), dtype=np.int64) if counts is None else np.asarray(counts, np.int64)
        self.documents = np.zeros(blocks, dtype=np.int64) if documents is None else np.asarray(documents, np.int64)
        if self.counts.shape != (blocks, buckets) or self.documents.shape != (blocks,):
            raise ValueError(
                f"n-gram block arrays have shapes {self.counts.shape} and {self.documents.shape}, "
                f"expected ({blocks}, {buckets}) and ({blocks},)"
            )

    @property
    def blocks(self) -> int:
        return self.counts.shape[0]

    @property
    def buckets(self) -> int:
        return self.counts.shape[1]

    def update(self, tokens: Tokens, byte_offsets: np.ndarray, min_order: int, max_order: int, seed: int, block_seed: int) -> None:
        """Add the n-grams of a tokenized batch; `byte_offsets` are the batch's document offsets into `tokens.folded`."""
        self.documents += add_block_counts(
            tokens.hashes,
            tokens.document_offsets,
            tokens.folded,
            byte_offsets,
            min_order,
            max_order,
            np.uint64(seed),
            np.uint64(block_seed),
            self.counts,
        )

    def merge(self, other: "NgramBlocks") -> "NgramBlocks":
        """Return the sum of two tables of the same shape; neither input changes."""
        if self.counts.shape != other.counts.shape:
            raise ValueError(
                f"cannot merge n-gram blocks of shapes {self.counts.shape} and {other.counts.shape}: "
                "both sides must use the same --blocks and --buckets"
            )
        return NgramBlocks(self.blocks, self.buckets, self.counts + other.counts, self.documents + other.documents)

    def to_bytes(self) -> bytes:
        return encode_frame(_KIND, {}, {"counts": self.counts, "documents": self.documents})

    @classmethod
    def from_bytes(cls, data: bytes) -> "NgramBlocks":
        _, arrays = decode_frame(data, _KIND)
        counts = arrays["counts"]
        if counts.ndim != 2:
            raise ValueError(f"n-gram block counts have {counts.ndim} dimensions, expected 2")
        return cls(counts.shape[0], counts.shape[1], counts, arrays["documents"])

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, NgramBlocks)
            and np.array_equal(self.counts, other.counts)
            and np.array_equal(self.documents, other.documents)
        )
