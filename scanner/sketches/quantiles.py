"""Quantiles of non-negative per-document features, in relative-error log buckets.

This is DDSketch without bucket collapsing (Masson, Rim and Lee, "DDSketch: a
fast and fully-mergeable quantile sketch with relative-error guarantees",
VLDB 2019): a value x > 0 goes to bucket ceil(log_gamma(x)) with
gamma = (1 + a) / (1 - a), and values below 1e-9 to a zero bucket. The q
quantile is the value of the item of rank floor(q * (n - 1)) within relative
error a (default 1%). Buckets are never collapsed, so the guarantee holds for
every quantile and merging (adding bucket counts) is exact; the bucket count
grows with the log of the value range, about 2,400 buckets from 1e-9 to 1e12
at a = 0.01.
"""

import math

import numpy as np

from scanner.codec import decode_frame, encode_frame

_KIND = "quantiles"
ZERO_THRESHOLD = 1e-9


class QuantileSketch:
    """Mergeable quantiles with relative error `relative_accuracy`."""

    def __init__(
        self,
        relative_accuracy: float = 0.01,
        keys: np.ndarray | None = None,
        counts: np.ndarray | None = None,
        zero_count: int = 0,
    ):
        if not 0.0 < relative_accuracy < 0.5:
            raise ValueError(f"quantile relative accuracy {relative_accuracy} is out of range: use (0, 0.5)")
        self.relative_accuracy = relative_accuracy
        self.gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy)
        self._log_gamma = math.log(self.gamma)
        self.keys = np.zeros(0, dtype=np.int64) if keys is None else np.asarray(keys, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64)
        self.zero_count = int(zero_count)

    @property
    def count(self) -> int:
        return self.zero_count + int(self.counts.sum())

    def update_batch(self, values: np.ndarray) -> None:
        """Add finite non-negative values; NaN values are ignored."""
        values = np.asarray(values, dtype=np.float64)
        values = values[~np.isnan(values)]
        if values.size == 0:
            return
        if not np.all(np.isfinite(values)) or values.min() < 0:
            raise ValueError("quantile sketch values must be finite and non-negative")
        positive = values[values >= ZERO_THRESHOLD]
        self.zero_count += int(values.size - positive.size)
        keys, counts = np.unique(np.ceil(np.log(positive) / self._log_gamma).astype(np.int64), return_counts=True)
        self._add_buckets(keys, counts)

    def _add_buckets(self, keys: np.ndarray, counts: np.ndarray) -> None:
        all_keys = np.concatenate([self.keys, keys])
        all_counts = np.concatenate([self.counts, counts.astype(np.int64)])
        merged_keys, inverse = np.unique(all_keys, return_inverse=True)
        merged_counts = np.zeros(merged_keys.size, dtype=np.int64)
        np.add.at(merged_counts, inverse, all_counts)
        self.keys, self.counts = merged_keys, merged_counts

    def merge(self, other: "QuantileSketch") -> "QuantileSketch":
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError(
                "cannot merge quantile sketches of relative accuracy "
                f"{self.relative_accuracy} and {other.relative_accuracy}"
            )
        merged = QuantileSketch(self.relative_accuracy, self.keys, self.counts, self.zero_count + other.zero_count)
        merged._add_buckets(other.keys, other.counts)
        return merged

    def quantile(self, q: float) -> float:
        """Return the q quantile (0 <= q <= 1), or NaN when the sketch is empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile {q} is out of range: use 0 to 1")
        total = self.count
        if total == 0:
            return math.nan
        rank = math.floor(q * (total - 1))
        if rank < self.zero_count:
            return 0.0
        cumulative = self.zero_count + np.cumsum(self.counts)
        bucket = int(np.searchsorted(cumulative, rank, side="right"))
        return 2.0 * self.gamma ** int(self.keys[bucket]) / (self.gamma + 1.0)

    def to_frame_parts(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta = {"relative_accuracy": self.relative_accuracy, "zero_count": self.zero_count}
        return meta, {"keys": self.keys, "counts": self.counts}

    @classmethod
    def from_frame_parts(cls, meta: dict, arrays: dict[str, np.ndarray]) -> "QuantileSketch":
        return cls(meta["relative_accuracy"], arrays["keys"], arrays["counts"], meta["zero_count"])

    def to_bytes(self) -> bytes:
        return encode_frame(_KIND, *self.to_frame_parts())

    @classmethod
    def from_bytes(cls, data: bytes) -> "QuantileSketch":
        return cls.from_frame_parts(*decode_frame(data, _KIND))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, QuantileSketch)
            and other.relative_accuracy == self.relative_accuracy
            and other.zero_count == self.zero_count
            and np.array_equal(other.keys, self.keys)
            and np.array_equal(other.counts, self.counts)
        )
