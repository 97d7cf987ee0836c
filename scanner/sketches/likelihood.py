"""Score histograms and the mixture log-likelihood curve of the synthetic-share estimate.

For each document the caller supplies its log-likelihood ratios r_g against
G generators, its human log-likelihood per vocabulary word l / V and a 64-bit
id (see `kernels.likelihood.score_documents`). The sketch keeps:

- `histogram`, (G, bins + 2): the bin of max_g r_g in the row of its argmax
  generator, on `bins` equal bins over `r_range` plus an underflow (column 0)
  and an overflow (last column) bin;
- `l_histogram`, (l_bins + 2,): the same for l / V over `l_range`;
- `curve`, (curve_points,): at the mixture shares a_k = k / (curve_points - 1),
  the sum over documents of log((1 - a_k) + a_k exp(r_mix)), where
  r_mix = log(mean_g exp(r_g)) is clipped to [-50, 50] before exp. It is the
  log-likelihood of the plain two-component mixture estimator, up to the
  constant human log-likelihood of the documents;
- `replicate_histograms`, (replicates, G, bins + 2), and `replicate_curve`,
  (replicates, curve_points): Poisson bootstrap replicates of both. Each
  document counts n times in a replicate, with n ~ Poisson(1) drawn from a
  hash of its id, the replicate and `seed`. A retried or resharded document
  therefore gets the same n;
- the number of documents and of documents without any vocabulary word.

Error: histograms and counts are exact. The curve is stored in fixed point
(units of 2**-24) with each document's term rounded to nearest, so
`curve_values()` is within 2**-25 per document (3e-8) of the float sum. All
state is integer and merges add it, so any split and merge order gives the
same bytes. The fixed-point sums stay exact in int64 up to about 10**10
documents.
"""

import math
import numbers

import numpy as np

from kernels.likelihood import CURVE_SCALE, accumulate_scores
from scanner.codec import decode_frame, encode_frame

_KIND = "likelihood"
_PARAMETERS = ("generators", "bins", "r_range", "l_bins", "l_range", "curve_points", "replicates", "seed")


def _check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"likelihood sketch {name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"likelihood sketch {name} {value} is out of range: use at least {minimum}")
    return int(value)


def _check_range(name: str, value: object) -> tuple[float, float]:
    try:
        low, high = (float(bound) for bound in value)
    except (TypeError, ValueError):
        raise ValueError(f"likelihood sketch {name} must be a pair of numbers (low, high), got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"likelihood sketch {name} {value!r} is invalid: use finite bounds with low < high")
    return low, high


class LikelihoodSketch:
    """Mergeable score histograms, mixture log-likelihood curve and their bootstrap replicates."""

    def __init__(
        self,
        generators: int,
        bins: int = 200,
        r_range: tuple[float, float] = (-30.0, 30.0),
        l_bins: int = 200,
        l_range: tuple[float, float] = (-1.0, 0.0),
        curve_points: int = 201,
        replicates: int = 100,
        seed: int = 0,
    ):
        self.generators = _check_count("generators", generators, 1)
        self.bins = _check_count("bins", bins, 1)
        self.r_range = _check_range("r_range", r_range)
        self.l_bins = _check_count("l_bins", l_bins, 1)
        self.l_range = _check_range("l_range", l_range)
        self.curve_points = _check_count("curve_points", curve_points, 2)
        self.replicates = _check_count("replicates", replicates, 0)
        self.seed = _check_count("seed", seed, 0)
        if self.seed >= 2**64:
            raise ValueError(f"likelihood sketch seed {seed} is out of range: use 0 to 2**64 - 1")

        self.documents = 0
        self.empty_documents = 0
        self.histogram = np.zeros((self.generators, self.bins + 2), dtype=np.int64)
        self.l_histogram = np.zeros(self.l_bins + 2, dtype=np.int64)
        self.curve = np.zeros(self.curve_points, dtype=np.int64)
        self.replicate_histograms = np.zeros((self.replicates, self.generators, self.bins + 2), dtype=np.int64)
        self.replicate_curve = np.zeros((self.replicates, self.curve_points), dtype=np.int64)

    def parameters(self) -> dict:
        """Return the constructor parameters, as `LikelihoodSketch(**parameters)` takes them."""
        return {name: getattr(self, name) for name in _PARAMETERS}

    def update(
        self,
        r: np.ndarray,
        l_per_word: np.ndarray,
        document_ids: np.ndarray,
        words_present: np.ndarray,
    ) -> None:
        """Add a batch of documents.

        r is (documents, generators). l_per_word, document_ids and words_present
        (distinct vocabulary words, which the empty-document count needs) are
        (documents,). A document's id must be the same in every run, because
        it alone decides the document's bootstrap weights. Raises ValueError on
        shapes that do not match, non-finite scores or negative ids.
        """
        r, l_per_word, document_ids, words_present = self._check_batch(r, l_per_word, document_ids, words_present)
        accumulate_scores(
            r,
            l_per_word,
            document_ids,
            self.histogram,
            self.l_histogram,
            self.curve,
            self.replicate_histograms,
            self.replicate_curve,
            self.r_range[0],
            self.r_range[1],
            self.l_range[0],
            self.l_range[1],
            np.uint64(self.seed),
        )
        self.documents += r.shape[0]
        self.empty_documents += int(np.count_nonzero(words_present == 0))

    def _check_batch(self, r, l_per_word, document_ids, words_present) -> tuple[np.ndarray, ...]:
        """Return the batch as contiguous float64 and uint64 arrays, or raise ValueError."""
        r = np.ascontiguousarray(r, dtype=np.float64)
        l_per_word = np.ascontiguousarray(l_per_word, dtype=np.float64)
        words_present = np.asarray(words_present)
        document_ids = self._check_ids(document_ids)
        if r.ndim != 2 or r.shape[1] != self.generators:
            raise ValueError(f"r has shape {r.shape}, expected (documents, {self.generators})")

        documents = r.shape[0]
        columns = {"l_per_word": l_per_word, "document_ids": document_ids, "words_present": words_present}
        for name, array in columns.items():
            if array.shape != (documents,):
                raise ValueError(f"{name} has shape {array.shape}, expected ({documents},) to match r")
        for name, array in (("r", r), ("l_per_word", l_per_word)):
            non_finite = int(np.count_nonzero(~np.isfinite(array)))
            if non_finite:
                raise ValueError(f"{name} has {non_finite} non-finite values: scores must be finite")
        return r, l_per_word, document_ids, words_present

    @staticmethod
    def _check_ids(document_ids: np.ndarray) -> np.ndarray:
        document_ids = np.asarray(document_ids)
        if document_ids.dtype.kind == "i":
            if document_ids.size and document_ids.min() < 0:
                raise ValueError("document_ids must be non-negative: pass uint64 ids")
        elif document_ids.dtype.kind != "u":
            raise ValueError(f"document_ids have dtype {document_ids.dtype}, expected uint64")
        return np.ascontiguousarray(document_ids, dtype=np.uint64)

    def mixture_shares(self) -> np.ndarray:
        """Return the mixture shares a_k = k / (curve_points - 1) at which the curve is kept."""
        return np.arange(self.curve_points, dtype=np.float64) / (self.curve_points - 1)

    def curve_values(self) -> np.ndarray:
        """Return the mixture log-likelihood curve as float64, one value per mixture share."""
        return self.curve / CURVE_SCALE

    def replicate_curves(self) -> np.ndarray:
        """Return the (replicates, curve_points) float64 curves of the bootstrap replicates."""
        return self.replicate_curve / CURVE_SCALE

    def merge(self, other: "LikelihoodSketch") -> "LikelihoodSketch":
        """Return the sketch of both inputs' documents.

        Raises ValueError naming the first parameter that differs, with both values.
        """
        for name in _PARAMETERS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                raise ValueError(f"cannot merge likelihood sketches with different {name}: {mine!r} and {theirs!r}")
        merged = LikelihoodSketch(**self.parameters())
        merged.documents = self.documents + other.documents
        merged.empty_documents = self.empty_documents + other.empty_documents
        merged.histogram = self.histogram + other.histogram
        merged.l_histogram = self.l_histogram + other.l_histogram
        merged.curve = self.curve + other.curve
        merged.replicate_histograms = self.replicate_histograms + other.replicate_histograms
        merged.replicate_curve = self.replicate_curve + other.replicate_curve
        return merged

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "histogram": self.histogram,
            "l_histogram": self.l_histogram,
            "curve": self.curve,
            "replicate_histograms": self.replicate_histograms,
            "replicate_curve": self.replicate_curve,
        }

    def to_frame_parts(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta = self.parameters()
        meta["r_range"] = list(self.r_range)
        meta["l_range"] = list(self.l_range)
        meta["documents"] = self.documents
        meta["empty_documents"] = self.empty_documents
        return meta, self._arrays()

    @classmethod
    def from_frame_parts(cls, meta: dict, arrays: dict[str, np.ndarray]) -> "LikelihoodSketch":
        """Rebuild a sketch from `to_frame_parts` output.

        Raises ValueError when an array is missing or does not match the parameters.
        """
        sketch = cls(**{name: meta[name] for name in _PARAMETERS})
        for name, empty in sketch._arrays().items():
            if name not in arrays:
                raise ValueError(f"likelihood sketch frame is missing the array {name!r}")
            array = arrays[name]
            if array.shape != empty.shape or array.dtype != np.int64:
                raise ValueError(
                    f"likelihood sketch array {name!r} is {array.dtype} {array.shape}, "
                    f"expected int64 {empty.shape} for these parameters"
                )
            setattr(sketch, name, np.array(array, dtype=np.int64))
        sketch.documents = int(meta["documents"])
        sketch.empty_documents = int(meta["empty_documents"])
        return sketch

    def to_bytes(self) -> bytes:
        return encode_frame(_KIND, *self.to_frame_parts())

    @classmethod
    def from_bytes(cls, data: bytes) -> "LikelihoodSketch":
        return cls.from_frame_parts(*decode_frame(data, _KIND))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LikelihoodSketch):
            return False
        if other.parameters() != self.parameters():
            return False
        if (other.documents, other.empty_documents) != (self.documents, self.empty_documents):
            return False
        theirs = other._arrays()
        return all(np.array_equal(theirs[name], array) for name, array in self._arrays().items())
