"""HyperLogLog distinct counting over 64-bit hashes.

Error: the relative standard error of the estimate is about 1.04 / sqrt(2**p)
(0.81% at the default p = 14), from Flajolet et al. (2007); Ertl's improved
estimator (Ertl, "New cardinality estimation algorithms for HyperLogLog
sketches", 2017) keeps that error and stays unbiased from a
handful of items up to far beyond 2**64 / 2**p, with no bias tables and no
switch between linear counting and the raw estimate.
"""

import math

import numpy as np

from kernels.ngrams import hll_update_batch
from scanner.codec import decode_frame, encode_frame

_KIND = "hyperloglog"


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    power = 1.0
    total = x
    while True:
        x *= x
        previous = total
        total += x * power
        power += power
        if total == previous:
            return total


def _tau(x: float) -> float:
    if x == 0.0 or x == 1.0:
        return 0.0
    power = 1.0
    total = 1.0 - x
    while True:
        x = math.sqrt(x)
        previous = total
        power *= 0.5
        total -= (1.0 - x) ** 2 * power
        if total == previous:
            return total / 3.0


def estimate_from_registers(registers: np.ndarray, precision: int) -> float:
    """Ertl's improved HyperLogLog estimate for uint8 registers with values 0..65 - p."""
    m = 1 << precision
    q = 64 - precision
    histogram = np.bincount(registers, minlength=q + 2).astype(np.float64)
    z = m * _tau(1.0 - histogram[q + 1] / m)
    for k in range(q, 0, -1):
        z = 0.5 * (z + histogram[k])
    z += m * _sigma(histogram[0] / m)
    return m * m / (2.0 * math.log(2.0)) / z


class HyperLogLog:
    """Distinct count of 64-bit hashes with 2**precision uint8 registers."""

    def __init__(self, precision: int = 14, registers: np.ndarray | None = None):
        if not 4 <= precision <= 18:
            raise ValueError(f"HyperLogLog precision {precision} is out of range: use 4 to 18")
        self.precision = precision
        size = 1 << precision
        if registers is None:
            registers = np.zeros(size, dtype=np.uint8)
        elif registers.shape != (size,) or registers.dtype != np.uint8:
            raise ValueError(f"HyperLogLog registers must be {size} uint8 values for precision {precision}")
        self.registers = registers

    @property
    def relative_standard_error(self) -> float:
        return 1.04 / math.sqrt(1 << self.precision)

    def update_batch(self, hashes: np.ndarray) -> None:
        hll_update_batch(self.registers, self.precision, np.ascontiguousarray(hashes, dtype=np.uint64))

    def merge(self, other: "HyperLogLog") -> "HyperLogLog":
        if other.precision != self.precision:
            raise ValueError(
                f"cannot merge HyperLogLog sketches of precision {self.precision} and {other.precision}"
            )
        return HyperLogLog(self.precision, np.maximum(self.registers, other.registers))

    def estimate(self) -> float:
        return estimate_from_registers(self.registers, self.precision)

    def to_bytes(self) -> bytes:
        return encode_frame(_KIND, {"precision": self.precision}, {"registers": self.registers})

    @classmethod
    def from_bytes(cls, data: bytes) -> "HyperLogLog":
        meta, arrays = decode_frame(data, _KIND)
        return cls(meta["precision"], arrays["registers"])

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, HyperLogLog)
            and other.precision == self.precision
            and np.array_equal(other.registers, self.registers)
        )
