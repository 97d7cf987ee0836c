"""Mergeable sketches: each one updates from arrays, merges associatively and
commutatively, estimates, and round-trips through `scanner.codec` frames."""

from scanner.sketches.countmin import CountMinSketch
from scanner.sketches.heavy_hitters import HeavyHitterCandidates
from scanner.sketches.hll import HyperLogLog
from scanner.sketches.likelihood import LikelihoodSketch
from scanner.sketches.minhash import MinHasher
from scanner.sketches.moments import Moments
from scanner.sketches.quantiles import QuantileSketch
from scanner.sketches.vocabulary import Vocabulary

__all__ = [
    "CountMinSketch",
    "HeavyHitterCandidates",
    "HyperLogLog",
    "LikelihoodSketch",
    "MinHasher",
    "Moments",
    "QuantileSketch",
    "Vocabulary",
]
