"""MinHash signatures for near-duplicate matching; see `kernels.minhash` for the method."""

import numpy as np

from kernels.minhash import distinct_shingles, minhash_signatures, shingle_minima


def _salts(count: int, seed: int) -> np.ndarray:
    """Draw `count` 64-bit salts with SplitMix64 (Steele et al., 2014) from `seed`."""
    mask = (1 << 64) - 1
    state = seed & mask
    salts = []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & mask
        value = state
        value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & mask
        value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & mask
        salts.append(value ^ (value >> 31))
    return np.array(salts, dtype=np.uint64)


class MinHasher:
    """Per-document MinHash signatures with `num_perm` hash functions."""

    def __init__(self, num_perm: int = 128, shingle_order: int = 5, seed: int = 0):
        if not 1 <= num_perm <= 4096:
            raise ValueError(f"MinHash num_perm {num_perm} is out of range: use 1 to 4096")
        if not 1 <= shingle_order <= 8:
            raise ValueError(f"MinHash shingle_order {shingle_order} is out of range: use 1 to 8")
        self.num_perm = num_perm
        self.shingle_order = shingle_order
        self.seed = seed
        self.salts = _salts(num_perm, seed)

    def signatures(self, token_hashes: np.ndarray, document_offsets: np.ndarray) -> np.ndarray:
        """Return a (documents, num_perm) uint64 array, from the tokenizer's output."""
        return minhash_signatures(
            np.ascontiguousarray(token_hashes, dtype=np.uint64),
            np.ascontiguousarray(document_offsets, dtype=np.int64),
            self.shingle_order,
            self.salts,
            np.uint64(self.seed),
        )

    @staticmethod
    def jaccard(first: np.ndarray, second: np.ndarray) -> float:
        """Estimate Jaccard similarity from two signatures; standard error sqrt(J(1-J)/num_perm)."""
        if first.shape != second.shape:
            raise ValueError(f"MinHash signatures differ in length: {first.shape} and {second.shape}")
        return float(np.mean(first == second))

    def first_values(self, token_hashes: np.ndarray, document_offsets: np.ndarray) -> np.ndarray:
        """Return each document's minimum of (shingle hash ^ first salt), 2**64 - 1 without tokens.

        This is the key that coordinates the document sample of the diversity sketch.
        """
        return shingle_minima(
            np.ascontiguousarray(token_hashes, dtype=np.uint64),
            np.ascontiguousarray(document_offsets, dtype=np.int64),
            self.shingle_order,
            self.salts[0],
            np.uint64(self.seed),
        )

    def signatures_of(self, token_hashes: np.ndarray, document_offsets: np.ndarray, documents: np.ndarray) -> np.ndarray:
        """Return the signatures of the listed documents only."""
        starts = document_offsets[documents]
        lengths = document_offsets[documents + 1] - starts
        offsets = np.zeros(documents.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        positions = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        return self.signatures(token_hashes[positions], offsets)

    def distinct_shingles_of(self, token_hashes: np.ndarray, document_offsets: np.ndarray, documents: np.ndarray) -> np.ndarray:
        """Return the number of distinct shingles of each listed document."""
        return distinct_shingles(
            np.ascontiguousarray(token_hashes, dtype=np.uint64),
            np.ascontiguousarray(document_offsets, dtype=np.int64),
            np.ascontiguousarray(documents, dtype=np.int64),
            self.shingle_order,
            np.uint64(self.seed),
        )
