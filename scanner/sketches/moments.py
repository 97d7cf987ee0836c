"""Count, sum, mean, variance, minimum and maximum of a feature, merged exactly.

Each batch is summarized in float64 as (n, mean, M2) with numpy. Batches and
shards are combined with the parallel formulas of Chan, Golub and LeVeque
(1979) in exact rational arithmetic: the state kept is S1 = n * mean and
S2 = M2 + n * mean**2 as fractions, which add. The merge therefore adds no
rounding, and any split or order of merging gives the same state and bytes.
Mean and variance are rounded to float64 only when read.
"""

import math
from fractions import Fraction

import numpy as np


class Moments:
    """Exact-merge moments of the finite values given to `update_batch`."""

    def __init__(
        self,
        count: int = 0,
        sum_: Fraction = Fraction(0),
        sum_squares: Fraction = Fraction(0),
        minimum: float = math.inf,
        maximum: float = -math.inf,
    ):
        self.count = count
        self.sum = Fraction(sum_)
        self.sum_squares = Fraction(sum_squares)
        self.minimum = minimum
        self.maximum = maximum

    def update_batch(self, values: np.ndarray) -> None:
        """Add the finite values of a batch; NaN values are ignored."""
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return
        mean = float(values.mean())
        m2 = float(np.square(values - mean).sum())
        count = int(values.size)
        exact_mean = Fraction(mean)
        self.count += count
        self.sum += count * exact_mean
        self.sum_squares += Fraction(m2) + count * exact_mean * exact_mean
        self.minimum = min(self.minimum, float(values.min()))
        self.maximum = max(self.maximum, float(values.max()))

    def merge(self, other: "Moments") -> "Moments":
        return Moments(
            self.count + other.count,
            self.sum + other.sum,
            self.sum_squares + other.sum_squares,
            min(self.minimum, other.minimum),
            max(self.maximum, other.maximum),
        )

    @property
    def mean(self) -> float:
        return float(self.sum / self.count) if self.count else math.nan

    @property
    def variance(self) -> float:
        """Population variance (divided by n), or NaN when empty."""
        if not self.count:
            return math.nan
        return float(max(self.sum_squares - self.sum * self.sum / self.count, Fraction(0)) / self.count)

    def to_dict(self) -> dict:
        return {
            "count": self.count,
            "sum": f"{self.sum.numerator}/{self.sum.denominator}",
            "sum_squares": f"{self.sum_squares.numerator}/{self.sum_squares.denominator}",
            "min": None if self.count == 0 else self.minimum,
            "max": None if self.count == 0 else self.maximum,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Moments":
        if data["count"] == 0:
            return cls()
        return cls(
            data["count"], Fraction(data["sum"]), Fraction(data["sum_squares"]), data["min"], data["max"]
        )

    def summary(self) -> dict:
        return {
            "count": self.count,
            "sum": float(self.sum),
            "mean": self.mean,
            "variance": self.variance,
            "min": self.minimum if self.count else math.nan,
            "max": self.maximum if self.count else math.nan,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Moments) and other.to_dict() == self.to_dict()
