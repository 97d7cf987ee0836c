"""Reference profiles for the synthetic-share estimate.

A profile contains what a scan needs to score documents and to calibrate the
estimate:

- a vocabulary of words, each one token under the tokenizer rules;
- the share of human reference documents that contain each word (p_w) and,
  per generator g, the share of its documents that do (q_gw), both smoothed;
- calibration: the score histograms of held-out human documents and of each
  generator's held-out documents, with bootstrap replicates that resampled
  whole source documents, and the per-word human log-likelihood histograms.

A document's score under generator g is the log-likelihood ratio of the
word-occurrence model (Liang et al., "Monitoring AI-Modified Content at Scale",
ICML 2024): r_g = sum_w [x_w log(q_gw / p_w) + (1 - x_w) log((1 - q_gw) / (1 - p_w))],
with x_w = 1 when word w occurs in the document.

On disk a profile is one `scanner.codec` frame of kind "profile" (format version
in `FORMAT_VERSION`): JSON metadata and numpy arrays, never pickle.
"""

import hashlib
from dataclasses import dataclass, field

import numpy as np

from scanner.codec import decode_frame, encode_frame
from scanner.settings import SketchSettings
from scanner.storage import StorageOptions, filesystem_for

FORMAT_VERSION = 1
_KIND = "profile"


class ProfileMismatchError(ValueError):
    """A profile was built with tokenizer settings that differ from the scan's."""


@dataclass
class ReferenceProfile:
    """Vocabulary, word-occurrence probabilities and calibration of one reference set."""

    words: list[str]
    generators: list[str]
    human_probability: np.ndarray  # (V,)
    generator_probability: np.ndarray  # (G, V)
    tokenizer: dict  # keep_punctuation, tokenizer, normalization of the build
    skip_leading_words: int = 0
    unit: str = "document"  # "document" or "sentence": what one score belongs to
    grid: dict = field(default_factory=dict)  # parameters of the likelihood sketch
    calibration: dict[str, np.ndarray] = field(default_factory=dict)
    build: dict = field(default_factory=dict)

    def __post_init__(self):
        vocabulary = len(self.words)
        self.human_probability = np.asarray(self.human_probability, dtype=np.float64)
        self.generator_probability = np.asarray(self.generator_probability, dtype=np.float64).reshape(
            len(self.generators), vocabulary
        )
        if self.human_probability.shape != (vocabulary,):
            raise ValueError(f"human_probability has shape {self.human_probability.shape}, expected ({vocabulary},)")
        for name, values in (("human", self.human_probability), ("generator", self.generator_probability)):
            if np.any(values <= 0) or np.any(values >= 1):
                raise ValueError(f"{name} word probabilities must lie strictly between 0 and 1: smooth them")
        if not self.generators:
            raise ValueError("a profile needs at least one generator")
        if self.unit not in ("document", "sentence"):
            raise ValueError(f"invalid profile unit {self.unit!r}: use document or sentence")

    @property
    def log_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Return (deltas (G, V), bases (G,), human_deltas (V,), human_base).

        r_g = bases[g] + sum of deltas[g, w] over the words present, and the human
        log-likelihood is human_base + sum of human_deltas[w] over the words present.
        """
        p, q = self.human_probability, self.generator_probability
        present = np.log(q) - np.log(p)
        absent = np.log1p(-q) - np.log1p(-p)
        human_deltas = np.log(p) - np.log1p(-p)
        return present - absent, absent.sum(axis=1), human_deltas, float(np.log1p(-p).sum())

    def check_settings(self, settings: SketchSettings) -> None:
        """Raise ProfileMismatchError when the scan tokenizes differently from the build."""
        for name, built in self.tokenizer.items():
            scanning = getattr(settings, name)
            if scanning != built:
                raise ProfileMismatchError(
                    f"the profile was built with {name}={built!r} but the scan uses {name}={scanning!r}: "
                    "scan with the profile's setting or rebuild the profile"
                )

    def digest(self) -> str:
        """Return a short SHA-256 digest of the profile's file content, which bundles record."""
        return hashlib.sha256(self.to_bytes()).hexdigest()[:16]

    def to_bytes(self) -> bytes:
        meta = {
            "words": self.words,
            "generators": self.generators,
            "tokenizer": self.tokenizer,
            "skip_leading_words": self.skip_leading_words,
            "unit": self.unit,
            "grid": self.grid,
            "build": self.build,
            "profile_format_version": FORMAT_VERSION,
            "calibration": list(self.calibration),
        }
        arrays = {"human_probability": self.human_probability, "generator_probability": self.generator_probability}
        for name, array in self.calibration.items():
            arrays[f"calibration/{name}"] = array
        return encode_frame(_KIND, meta, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> "ReferenceProfile":
        meta, arrays = decode_frame(data, _KIND)
        if meta.get("profile_format_version") != FORMAT_VERSION:
            raise ValueError(
                f"profile format version {meta.get('profile_format_version')!r} is not supported "
                f"(this build reads version {FORMAT_VERSION}): rebuild the profile"
            )
        return cls(
            words=meta["words"],
            generators=meta["generators"],
            human_probability=arrays["human_probability"],
            generator_probability=arrays["generator_probability"],
            tokenizer=meta["tokenizer"],
            skip_leading_words=meta["skip_leading_words"],
            unit=meta.get("unit", "document"),
            grid=meta["grid"],
            calibration={name: arrays[f"calibration/{name}"] for name in meta["calibration"]},
            build=meta["build"],
        )

    def save(self, url: str, storage: StorageOptions = StorageOptions()) -> None:
        fs, path = filesystem_for(url, storage)
        parent = path.rsplit("/", 1)[0]
        if parent:
            fs.makedirs(parent, exist_ok=True)
        fs.pipe_file(path, self.to_bytes())

    @classmethod
    def load(cls, url: str, storage: StorageOptions = StorageOptions()) -> "ReferenceProfile":
        fs, path = filesystem_for(url, storage)
        try:
            data = fs.cat_file(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"profile {url} not found: build one with `corpus-scanner profile build`") from None
        return cls.from_bytes(data)


def tokenizer_settings(settings: SketchSettings) -> dict:
    """The settings a profile must share with the scans that use it."""
    return {
        "keep_punctuation": settings.keep_punctuation,
        "tokenizer": settings.tokenizer,
        "normalization": settings.normalization,
    }
