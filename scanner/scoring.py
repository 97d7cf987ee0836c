"""Scoring documents against a reference profile, for scans and for calibration.

A profile's unit is the document or the sentence. With sentences, each
document is split after ., ! or ? followed by whitespace, after the
ideographic full stop, exclamation and question marks, and at line breaks.
Each sentence is scored on its own, and the estimate is a share of sentences.
"""

import re

import numpy as np
import pyarrow as pa

from kernels.hashing import hash_bytes_batch
from kernels.likelihood import score_documents
from scanner.batch import TextBatch
from scanner.profile import ReferenceProfile
from scanner.settings import SketchSettings
from scanner.sketches.likelihood import LikelihoodSketch
from scanner.sketches.vocabulary import Vocabulary
from scanner.tokens import Tokens, tokenize_batch

_SENTENCE_BOUNDARY = re.compile(r"(?<=[.!?])\s+|(?<=[\u3002\uff01\uff1f])\s*|\n+")


def split_sentences(text: str) -> list[str]:
    """Split a text into its non-empty sentences."""
    return [piece.strip() for piece in _SENTENCE_BOUNDARY.split(text) if piece.strip()]


def sentence_units(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Return the sentences of `texts` and, per sentence, the index of its text."""
    sentences: list[str] = []
    owners: list[int] = []
    for index, text in enumerate(texts):
        pieces = split_sentences(text)
        sentences.extend(pieces)
        owners.extend([index] * len(pieces))
    return sentences, np.asarray(owners, dtype=np.int64)

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

    @property
    def unit(self) -> str:
        return self.profile.unit

    def score_units(
        self, batch: TextBatch, tokens: Tokens, settings: SketchSettings, document_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Score a batch by the profile's unit; return (r, human, present, ids, owners).

        `owners` gives the document of each unit, so group counts can follow it.
        `document_ids` are the batch's `content_ids` when the caller has them already.
        """
        if self.unit == "document":
            r, human, present = self.score(tokens)
            ids = content_ids(batch) if document_ids is None else document_ids
            return r, human, present, ids, np.arange(batch.documents, dtype=np.int64)
        texts = pa.LargeStringArray.from_buffers(
            batch.documents, pa.py_buffer(batch.offsets), pa.py_buffer(batch.data)
        ).to_pylist()
        sentences, owners = sentence_units(texts)
        sentence_batch = TextBatch.from_strings(sentences)
        r, human, present = self.score(tokenize_batch(sentence_batch, settings))
        return r, human, present, content_ids(sentence_batch), owners

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
