"""Text batches: Arrow string arrays turned into the byte buffers kernels read.

A batch contains the normalized UTF-8 bytes of its documents in one uint8 buffer
with int64 offsets, plus each document's byte length before normalization.
ASCII documents go through unchanged (the kernel folds their case). Documents
with other characters lose their zero-width characters (U+200B to U+200D,
U+2060, U+FEFF), then are NFKC-normalized, case-folded and NFKC-normalized
again (Unicode's NFKC_Casefold recipe), so precomposed and decomposed forms of
one word give one token. Only those documents cost a Python call each; ASCII
text is never copied into Python objects.
"""

import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")


def normalize_text(text: str) -> str:
    """Apply the normalization that documents with non-ASCII characters get."""
    text = _ZERO_WIDTH.sub("", text)
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


@dataclass(frozen=True)
class TextBatch:
    """Normalized document bytes, ready for the kernels."""

    data: np.ndarray  # uint8, the documents back to back
    offsets: np.ndarray  # int64, len(documents) + 1, starting at 0
    source_bytes: np.ndarray  # int64 per document: UTF-8 bytes before normalization

    @property
    def documents(self) -> int:
        return self.offsets.shape[0] - 1

    @classmethod
    def from_arrow(cls, texts: pa.Array | pa.ChunkedArray) -> "TextBatch":
        """Build a batch from a string or large_string array without nulls."""
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks() if texts.num_chunks else pa.array([], type=pa.large_string())
        if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
            raise TypeError(f"text batch needs a string array, got {texts.type}")
        if texts.null_count:
            raise ValueError(f"text batch has {texts.null_count} null values; count and drop them before")

        source_bytes = _byte_lengths(texts)
        ascii_mask = pc.string_is_ascii(texts)
        if not pc.all(ascii_mask).as_py() and len(texts):
            texts = _normalize_non_ascii(texts, ascii_mask)
        data, offsets = _buffers(texts)
        return cls(data, offsets, source_bytes)

    @classmethod
    def from_strings(cls, texts: list[str]) -> "TextBatch":
        return cls.from_arrow(pa.array(texts, type=pa.large_string()))


def _normalize_non_ascii(texts: pa.Array, ascii_mask: pa.Array) -> pa.Array:
    needs_work = pc.invert(ascii_mask)
    replacements = [normalize_text(text) for text in texts.filter(needs_work).to_pylist()]
    return pc.replace_with_mask(texts, needs_work, pa.array(replacements, type=texts.type))


def _offsets_of(texts: pa.Array) -> np.ndarray:
    dtype = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    raw = np.frombuffer(texts.buffers()[1], dtype=dtype)
    return raw[texts.offset : texts.offset + len(texts) + 1].astype(np.int64)


def _byte_lengths(texts: pa.Array) -> np.ndarray:
    if len(texts) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.diff(_offsets_of(texts))


def _buffers(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    if len(texts) == 0:
        return np.zeros(0, dtype=np.uint8), np.zeros(1, dtype=np.int64)
    offsets = _offsets_of(texts)
    data_buffer = texts.buffers()[2]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    start = int(offsets[0])
    return data[start : int(offsets[-1])], offsets - start
