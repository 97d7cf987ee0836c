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

from scanner.codec import decode_frame, encode_frame
from scanner.sketches.countmin import CountMinSketch

_KIND = "heavy_hitters"


class HeavyHitterCandidates:
    """Candidate n-grams per order: sorted hashes and their readable text."""

    def __init__(self, candidates: dict[int, dict[int, str]] | None = None):
        self.candidates: dict[int, dict[int, str]] = {
            order: dict(sorted(items.items())) for order, items in sorted((candidates or {}).items())
        }

    def merge(self, other: "HeavyHitterCandidates") -> "HeavyHitterCandidates":
        merged: dict[int, dict[int, str]] = {order: dict(items) for order, items in self.candidates.items()}
        merge_candidates_into(merged, other.candidates)
        return HeavyHitterCandidates(merged)

    def top(self, order: int, countmin: CountMinSketch, limit: int) -> list[dict]:
        """Return up to `limit` candidates of `order` as {"ngram", "count"}, most frequent first.

        Counts are Count-Min estimates: upper bounds of the true counts.
        """
        items = self.candidates.get(order, {})
        if not items:
            return []
        keys = np.fromiter(items.keys(), dtype=np.uint64, count=len(items))
        counts = countmin.query(keys)
        ranked = sorted(zip(counts.tolist(), items.values()), key=lambda pair: (-pair[0], pair[1]))
        return [{"ngram": text, "count": int(count)} for count, text in ranked[:limit]]

    def to_frame_parts(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta = {"orders": sorted(self.candidates)}
        arrays: dict[str, np.ndarray] = {}
        for order, items in self.candidates.items():
            encoded = [text.encode() for text in items.values()]
            offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
            offsets[1:] = np.cumsum([len(text) for text in encoded], dtype=np.int64)
            arrays[f"keys/{order}"] = np.fromiter(items.keys(), dtype=np.uint64, count=len(items))
            arrays[f"text_offsets/{order}"] = offsets
            arrays[f"text/{order}"] = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        return meta, arrays

    @classmethod
    def from_frame_parts(cls, meta: dict, arrays: dict[str, np.ndarray]) -> "HeavyHitterCandidates":
        candidates = {}
        for order in meta["orders"]:
            keys = arrays[f"keys/{order}"].tolist()
            offsets = arrays[f"text_offsets/{order}"]
            text = arrays[f"text/{order}"].tobytes()
            if len(offsets) != len(keys) + 1 or offsets[-1] != len(text):
                raise ValueError(f"heavy-hitter candidates of order {order} are inconsistent")
            candidates[order] = {
                key: text[offsets[index] : offsets[index + 1]].decode() for index, key in enumerate(keys)
            }
        return cls(candidates)

    def to_bytes(self) -> bytes:
        meta, arrays = self.to_frame_parts()
        return encode_frame(_KIND, meta, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> "HeavyHitterCandidates":
        return cls.from_frame_parts(*decode_frame(data, _KIND))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HeavyHitterCandidates) and other.candidates == self.candidates


def merge_candidates_into(target: dict[int, dict[int, str]], candidates: dict[int, dict[int, str]]) -> None:
    """Add candidates (order -> hash -> text) to `target` in place, as `HeavyHitterCandidates.merge` does."""
    for order, items in candidates.items():
        merged = target.setdefault(order, {})
        for key, text in items.items():
            # Two texts under one 64-bit hash are a collision; keep the smaller text so
            # the result does not depend on the merge order.
            if key not in merged or text < merged[key]:
                merged[key] = text
