"""Tokenizing a text batch with the scan's settings."""

from dataclasses import dataclass

import numpy as np

from kernels.tokenize import ASCII_CLASSES, fold_ascii_case, token_capacity, tokenize
from scanner.batch import TextBatch
from scanner.settings import SketchSettings


@dataclass(frozen=True)
class Tokens:
    """Token hashes of a batch and where each token sits in the case-folded bytes."""

    hashes: np.ndarray  # uint64
    starts: np.ndarray  # int64 byte offsets into `folded`
    lengths: np.ndarray  # int32 byte lengths
    document_offsets: np.ndarray  # int64, tokens of document d are [d]:[d + 1]
    folded: np.ndarray  # uint8, the batch bytes with ASCII case folded

    def texts(self) -> list[list[str]]:
        """Return each document's tokens as strings (for tests and debugging, not hot paths)."""
        result = []
        for document in range(self.document_offsets.shape[0] - 1):
            first, stop = self.document_offsets[document], self.document_offsets[document + 1]
            result.append(
                [
                    self.folded[self.starts[index] : self.starts[index] + self.lengths[index]].tobytes().decode()
                    for index in range(first, stop)
                ]
            )
        return result


class TokenScratch:
    """Token arrays reused from batch to batch, grown when a batch needs more."""

    def __init__(self) -> None:
        self.hashes = np.empty(0, dtype=np.uint64)
        self.starts = np.empty(0, dtype=np.int64)
        self.lengths = np.empty(0, dtype=np.int32)

    def ensure(self, capacity: int) -> None:
        if self.hashes.shape[0] < capacity:
            self.hashes = np.empty(capacity, dtype=np.uint64)
            self.starts = np.empty(capacity, dtype=np.int64)
            self.lengths = np.empty(capacity, dtype=np.int32)


def tokenize_batch(batch: TextBatch, settings: SketchSettings, scratch: TokenScratch | None = None) -> Tokens:
    """Tokenize a batch; with `scratch`, the returned arrays are views valid until its next use."""
    scratch = scratch or TokenScratch()
    scratch.ensure(int(token_capacity(batch.offsets, settings.keep_punctuation)))
    folded = fold_ascii_case(batch.data)
    count, document_offsets = tokenize(
        folded,
        batch.offsets,
        np.uint64(settings.seed),
        settings.keep_punctuation,
        ASCII_CLASSES,
        scratch.hashes,
        scratch.starts,
        scratch.lengths,
    )
    return Tokens(
        scratch.hashes[:count], scratch.starts[:count], scratch.lengths[:count], document_offsets, folded
    )


def token_hashes_of(words: list[str], settings: SketchSettings) -> np.ndarray:
    """Hash each word as the tokenizer would; a word must be exactly one token."""
    tokens = tokenize_batch(TextBatch.from_strings(words), settings)
    per_document = np.diff(tokens.document_offsets)
    if np.any(per_document != 1):
        bad = words[int(np.flatnonzero(per_document != 1)[0])]
        raise ValueError(f"vocabulary word {bad!r} is not exactly one token under the tokenizer's rules")
    return tokens.hashes
