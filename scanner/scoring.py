"""Scoring documents against a reference profile, for scans and for calibration."""

import numpy as np

from kernels.hashing import hash_bytes_batch
from kernels.likelihood import score_documents
from scanner.batch import TextBatch
from scanner.profile import ReferenceProfile
from scanner.settings import SketchSettings
from scanner.sketches.likelihood import LikelihoodSketch
from scanner.sketches.vocabulary import Vocabulary
from scanner.tokens import Tokens

# Seed of the content hash that identifies documents for bootstrap weights. It is
# fixed, not the scan's seed, so a document keeps its weights across settings.
DOCUMENT_ID_SEED = np.uint64(0xB0075)


class ProfileScorer:
    """A profile's vocabulary and log weights, hashed with one scan's settings."""

    def __init__(self, profile: ReferenceProfile, settings: SketchSettings):
        profile.check_settings(settings)
        self.profile = profile
        self.digest = profile.digest()
        self.vocabulary = Vocabulary.from_words(profile.words, settings)
        self.deltas, self.bases, self.human_deltas, self.human_base = profile.log_weights

    def new_sketch(self) -> LikelihoodSketch:
        grid = self.profile.grid
        return LikelihoodSketch(
            generators=len(self.profile.generators),
            bins=grid["bins"],
            r_range=tuple(grid["score_range"]),
            replicates=grid["replicates"],
        )

    def score(self, tokens: Tokens) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (r (documents, G), human log-likelihood per vocabulary word, words present)."""
        table_keys, table_slots = self.vocabulary.tables
        r, human, present = score_documents(
            tokens.hashes,
            tokens.document_offsets,
            table_keys,
            table_slots,
            self.deltas,
            self.bases,
            self.human_deltas,
            self.human_base,
        )
        return r, human / len(self.vocabulary), present


def content_ids(batch: TextBatch) -> np.ndarray:
    """Return a 64-bit id per document from its normalized text.

    The id depends only on the text, so a scan of the same documents from
    another location, with another sharding or after a retry gives each
    document the same bootstrap weights.
    """
    return hash_bytes_batch(batch.data, batch.offsets, DOCUMENT_ID_SEED)
