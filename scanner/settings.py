"""Settings that decide what a sketch bundle contains.

Two bundles merge only when every field here is equal, because a HyperLogLog
of precision 12 and one of precision 14, or hashes under two seeds, describe
different things. `SketchSettings.mismatch` names the first field that differs.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_SEED = 0x5C4E_2026

TOKENIZER_VERSION = "words-v1"
NORMALIZATION_VERSION = "nfkc-casefold-zw-v1"


class SketchSettings(BaseModel):
    """Sketch parameters shared by every shard of one scan."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(DEFAULT_SEED, ge=0, lt=2**64, description="seed of every token and n-gram hash")
    min_order: int = Field(1, ge=1, le=8, description="smallest word n-gram order")
    max_order: int = Field(5, ge=1, le=8, description="largest word n-gram order")
    hll_precision: int = Field(14, ge=4, le=18, description="HyperLogLog precision p: 2**p registers per order")
    countmin_blocks_log2: int = Field(
        14, ge=4, le=24, description="log2 of the Count-Min block count; a block is 16 counters, 64 bytes"
    )
    countmin_depth: Literal[2, 4] = Field(4, description="Count-Min rows, half in each of two cache lines")
    heavy_hitter_capacity: int = Field(
        1024, ge=1, le=1 << 16, description="k: every n-gram above 1/(k+1) of its order's n-grams is reported"
    )
    quantile_relative_accuracy: float = Field(
        0.01, gt=0.0, lt=0.5, description="relative error bound of feature quantiles"
    )
    repeat_order: int = Field(3, ge=1, le=8, description="n-gram order of the repeated n-gram share feature")
    keep_punctuation: bool = Field(False, description="emit punctuation and symbols as tokens")
    tokenizer: Literal["words-v1"] = TOKENIZER_VERSION
    normalization: Literal["nfkc-casefold-zw-v1"] = NORMALIZATION_VERSION

    @model_validator(mode="after")
    def _check_orders(self) -> "SketchSettings":
        if self.min_order > self.max_order:
            raise ValueError(
                f"min_order {self.min_order} is above max_order {self.max_order}: "
                "give n-gram orders as MIN-MAX with MIN <= MAX, for example 1-5"
            )
        return self

    @property
    def orders(self) -> range:
        return range(self.min_order, self.max_order + 1)

    def mismatch(self, other: "SketchSettings") -> str | None:
        """Describe the first setting that differs from `other`, or return None."""
        for name in type(self).model_fields:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                return f"{name}: {mine!r} != {theirs!r}"
        return None


def parse_orders(text: str) -> tuple[int, int]:
    """Parse an n-gram order range such as "1-5" or "3" into (min, max)."""
    parts = text.split("-")
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or not all(1 <= number <= 8 for number in numbers):
        raise ValueError(f"invalid n-gram orders {text!r}: expected N or MIN-MAX with 1 <= MIN <= MAX <= 8")
    low, high = numbers[0], numbers[-1]
    if low > high:
        raise ValueError(f"invalid n-gram orders {text!r}: MIN is above MAX")
    return low, high
