"""A fixed vocabulary and exact per-document occurrence counts over it."""

import numpy as np

from kernels.vocabulary import build_vocabulary_table, vocabulary_counts


class Vocabulary:
    """Words given by their token hashes; slot i is the i-th hash."""

    def __init__(self, token_hashes: np.ndarray):
        hashes = np.ascontiguousarray(token_hashes, dtype=np.uint64)
        if np.unique(hashes).size != hashes.size:
            raise ValueError("vocabulary token hashes must be distinct")
        self.token_hashes = hashes
        self._table_keys, self._table_slots = build_vocabulary_table(hashes)

    @property
    def tables(self) -> tuple[np.ndarray, np.ndarray]:
        """The open-addressing table (keys, slots) that the kernels look words up in."""
        return self._table_keys, self._table_slots

    def __len__(self) -> int:
        return int(self.token_hashes.size)

    def counts(self, token_hashes: np.ndarray, document_offsets: np.ndarray):
        """Return CSR arrays (indptr, slots, counts) of each document's vocabulary counts."""
        return vocabulary_counts(
            np.ascontiguousarray(token_hashes, dtype=np.uint64),
            np.ascontiguousarray(document_offsets, dtype=np.int64),
            self._table_keys,
            self._table_slots,
            len(self),
        )

    @classmethod
    def from_words(cls, words: list[str], settings) -> "Vocabulary":
        """Build a vocabulary from words, each of which must be one token under `settings`."""
        from scanner.tokens import token_hashes_of

        return cls(token_hashes_of(words, settings))
