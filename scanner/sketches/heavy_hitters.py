"""Heavy-hitter candidates: the frequent n-grams of each order, with their text.

Method (Cormode and Muthukrishnan, "An improved data stream summary: the
count-min sketch and its applications", 2005): while a shard
counts, an n-gram joins its order's candidate table when its Count-Min
estimate e, just after its update, satisfies e > N_so_far / (k + 1), with N_so_far
the n-grams of that order counted so far and k the `heavy_hitter_capacity`.
A full table drops the candidates that no longer pass. An n-gram whose shard
count f exceeds N / (k + 1) passes at its last occurrence at the latest, because
e >= f, and passes at every later check, so it ends in the table. At the end the
shard keeps the candidates above N / (k + 1), plus the k / 4 with the highest
estimates so that short corpora still list their most frequent n-grams.

An n-gram whose corpus count exceeds N / (k + 1) exceeds that share in at least
one shard, so it is a candidate of the merged set. Merging is the union of the
candidate sets, which is associative and commutative; counts come from the
merged Count-Min sketch when the top list is read, so they are upper bounds
within the Count-Min error.

The guarantee fails only when Count-Min overestimates push more than 2k items
over the threshold at once; the kernel then keeps the 2k highest and the shard
counts the rest in `heavy_hitter_overflow`.

NOTE: the union is not pruned while merging, because pruning by partial counts
would make the result depend on the merge tree. Shards of one language share
most of their frequent n-grams, so the union stays near k per order; shards of
very different text can make it grow with the shard count.
"""

import numpy as np

from kernels.texts import union_keyed_texts
from scanner.codec import decode_frame, encode_frame
from scanner.sketches.countmin import CountMinSketch

_KIND = "heavy_hitters"
_EMPTY = (np.zeros(0, dtype=np.uint64), np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint8))


class HeavyHitterCandidates:
    """Candidate n-grams per order: sorted hashes and their readable text.

    Each order is stored as three arrays, so that merging many shards' candidates
    costs about 50 bytes per candidate instead of a Python string and dictionary
    entry: `keys` (uint64, ascending), and the UTF-8 text of candidate i in
    `data[offsets[i]:offsets[i + 1]]`.
    """

    def __init__(self, candidates: dict[int, dict[int, str]] | None = None):
        self.arrays: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for order, items in sorted((candidates or {}).items()):
            ordered = sorted(items.items())
            encoded = [text.encode() for _, text in ordered]
            offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
            offsets[1:] = np.cumsum([len(text) for text in encoded], dtype=np.int64)
            keys = np.array([key for key, _ in ordered], dtype=np.uint64)
            self.arrays[order] = (keys, offsets, np.frombuffer(b"".join(encoded), dtype=np.uint8).copy())

    @classmethod
    def from_arrays(cls, arrays: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> "HeavyHitterCandidates":
        candidates = cls()
        candidates.arrays = dict(sorted(arrays.items()))
        return candidates

    @property
    def candidates(self) -> dict[int, dict[int, str]]:
        """Return the candidates as {order: {hash: text}}, keys ascending."""
        result = {}
        for order, (keys, offsets, data) in self.arrays.items():
            result[order] = dict(zip(keys.tolist(), _texts(offsets, data)))
        return result

    def merge(self, other: "HeavyHitterCandidates") -> "HeavyHitterCandidates":
        merged = {}
        for order in sorted(set(self.arrays) | set(other.arrays)):
            first_keys, first_offsets, first_data = self.arrays.get(order, _EMPTY)
            second_keys, second_offsets, second_data = other.arrays.get(order, _EMPTY)
            # Two texts under one 64-bit hash are a collision; the union keeps the smaller
            # text, so the result does not depend on the merge order.
            merged[order] = union_keyed_texts(
                first_keys, first_offsets, first_data, second_keys, second_offsets, second_data
            )
        return HeavyHitterCandidates.from_arrays(merged)

    def top(self, order: int, countmin: CountMinSketch, limit: int) -> list[dict]:
        """Return up to `limit` candidates of `order` as {"ngram", "count"}, most frequent first.

        Counts are Count-Min estimates: upper bounds of the true counts.
        """
        keys, offsets, data = self.arrays.get(order, _EMPTY)
        if not keys.size:
            return []
        counts = countmin.query(keys)
        ranked = sorted(zip(counts.tolist(), _texts(offsets, data)), key=lambda pair: (-pair[0], pair[1]))
        return [{"ngram": text, "count": int(count)} for count, text in ranked[:limit]]

    def to_frame_parts(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta = {"orders": sorted(self.arrays)}
        arrays: dict[str, np.ndarray] = {}
        for order, (keys, offsets, data) in self.arrays.items():
            arrays[f"keys/{order}"] = keys
            arrays[f"text_offsets/{order}"] = offsets
            arrays[f"text/{order}"] = data
        return meta, arrays

    @classmethod
    def from_frame_parts(cls, meta: dict, arrays: dict[str, np.ndarray]) -> "HeavyHitterCandidates":
        checked = {}
        for order in meta["orders"]:
            keys = arrays[f"keys/{order}"]
            offsets = arrays[f"text_offsets/{order}"]
            data = arrays[f"text/{order}"]
            _check(order, keys, offsets, data)
            checked[order] = (keys, offsets, data)
        return cls.from_arrays(checked)

    def to_bytes(self) -> bytes:
        meta, arrays = self.to_frame_parts()
        return encode_frame(_KIND, meta, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> "HeavyHitterCandidates":
        return cls.from_frame_parts(*decode_frame(data, _KIND))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HeavyHitterCandidates) and other.candidates == self.candidates


def _texts(offsets: np.ndarray, data: np.ndarray) -> list[str]:
    text = data.tobytes()
    bounds = offsets.tolist()
    return [text[bounds[index] : bounds[index + 1]].decode() for index in range(len(bounds) - 1)]


def _check(order: int, keys: np.ndarray, offsets: np.ndarray, data: np.ndarray) -> None:
    """Raise ValueError unless the arrays of `order` are ascending keys with valid UTF-8 texts."""
    problem = None
    if keys.ndim != 1 or offsets.ndim != 1 or data.ndim != 1 or len(offsets) != len(keys) + 1:
        problem = "array shapes do not match"
    elif offsets[0] != 0 or offsets[-1] != len(data) or np.any(np.diff(offsets) < 0):
        problem = "text offsets are not ascending from 0 to the text size"
    elif np.any(keys[1:] <= keys[:-1]):
        problem = "keys are not strictly ascending"
    else:
        # Every text is valid UTF-8 when the whole text is and no text starts inside a character.
        inner = offsets[1:-1][offsets[1:-1] < len(data)]
        try:
            data.tobytes().decode()
        except UnicodeDecodeError as error:
            problem = f"text is not UTF-8 ({error.reason} at byte {error.start})"
        else:
            if np.any(data[inner] & 0xC0 == 0x80):
                problem = "a text starts inside a UTF-8 character"
    if problem:
        raise ValueError(f"heavy-hitter candidates of order {order} are inconsistent: {problem}")
