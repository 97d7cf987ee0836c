"""Recognize compressed streams by magic bytes and decompress them in bounded chunks.

`iter_decompressed` reads every member or frame of a concatenated stream
(multi-member gzip, multi-frame zstd, multi-stream bz2/xz). It raises
`TruncatedStreamError` or `CorruptStreamError` only after it has yielded every
byte it could recover, so a reader keeps the complete records before the fault.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Literal

try:
    from isal import isal_zlib as _gzip_zlib
except ImportError:  # isal is optional: zlib gives the same output, more slowly.
    _gzip_zlib = zlib  # type: ignore[assignment]

Compression = Literal["gzip", "zstd", "bz2", "xz", "lz4", None]

COMPRESSION_EXTENSIONS: dict[str, Compression] = {
    ".gz": "gzip",
    ".gzip": "gzip",
    ".zst": "zstd",
    ".zstd": "zstd",
    ".bz2": "bz2",
    ".xz": "xz",
    ".lz4": "lz4",
}

_MAGIC: tuple[tuple[bytes, Compression], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x04\x22\x4d\x18", "lz4"),
)

# Raw bytes read per call, and the bound on bytes produced per decompress call.
RAW_CHUNK_BYTES = 1 << 20
OUTPUT_CHUNK_BYTES = 4 << 20


class StreamError(Exception):
    """A compressed stream that cannot be read to its end."""

    def __init__(self, message: str, raw_offset: int) -> None:
        super().__init__(message)
        self.raw_offset = raw_offset


class TruncatedStreamError(StreamError):
    """The compressed stream ends inside a member or frame."""


class CorruptStreamError(StreamError):
    """The compressed stream contains data that the codec rejects."""


def sniff_compression(head: bytes) -> Compression:
    """Return the compression that the magic bytes at the start of `head` name, or None."""
    for magic, codec in _MAGIC:
        if head.startswith(magic):
            return codec
    # A zstd skippable frame (magic 0x184D2A50-0x184D2A5F, little-endian) may precede the data.
    if len(head) >= 4 and head[1:4] == b"\x2a\x4d\x18" and head[0] & 0xF0 == 0x50:
        return "zstd"
    return None


def decompress_head(head: bytes, compression: Compression) -> tuple[bytes, str | None]:
    """Decompress as much of a partial stream as `head` allows.

    Returns the decompressed bytes, and a warning when the head could not be
    decompressed. Then the bytes are empty, and format detection falls back
    to the file name.
    """
    if compression is None:
        return head, None
    try:
        decompressor = _new_decompressor(compression)
        return _decompress_some(decompressor, head), None
    except ImportError as error:
        return b"", f"cannot inspect the {compression} content: {error}"
    except _codec_errors() as error:
        return b"", f"cannot decompress the start of the {compression} stream: {error}"


def iter_decompressed(raw: BinaryIO, compression: Compression) -> Iterator[bytes]:
    """Yield the decompressed content of `raw` in chunks of at most a few MB.

    Raises TruncatedStreamError when the stream ends inside a member or frame,
    and CorruptStreamError when the codec rejects the data. Either is raised
    only after every recoverable byte was yielded. Zero bytes after the last
    member are accepted as padding.
    """
    if compression is None:
        while chunk := raw.read(RAW_CHUNK_BYTES):
            yield chunk
        return

    decompressor = _new_decompressor(compression)
    member_open = False
    raw_offset = 0
    while chunk := raw.read(RAW_CHUNK_BYTES):
        data = chunk
        while data:
            if decompressor.eof:
                if not data.strip(b"\0"):
                    break
                decompressor = _new_decompressor(compression)
            member_open = True
            try:
                yield from decompressor.feed(data)
            except _codec_errors() as error:
                # NOTE: there is no resync to the next gzip member after a corrupt
                # one, so readable members after it are lost.
                raise CorruptStreamError(
                    f"invalid {compression} data near raw byte {raw_offset}: {error}", raw_offset
                ) from error
            data = decompressor.unused_data if decompressor.eof else b""
            if decompressor.eof:
                member_open = False
        raw_offset += len(chunk)

    if member_open:
        raise TruncatedStreamError(
            f"the {compression} stream ends inside a member after {raw_offset} raw bytes", raw_offset
        )


def _new_decompressor(compression: Compression) -> _Member:
    factories: dict[str, Callable[[], Any]] = {
        "gzip": lambda: _gzip_zlib.decompressobj(16 + zlib.MAX_WBITS),
        "zstd": _new_zstd_decompressor,
        "bz2": bz2.BZ2Decompressor,
        "xz": lzma.LZMADecompressor,
        "lz4": _new_lz4_decompressor,
    }
    return _Member(compression, factories[compression]())  # type: ignore[index]


def _new_zstd_decompressor() -> Any:
    try:
        import zstandard
    except ImportError as error:
        raise ImportError("reading zstd needs the zstandard package (pip install zstandard)") from error
    # One frame per decompressor, so that `eof` marks each frame end as it does for gzip members.
    return zstandard.ZstdDecompressor().decompressobj()


def _new_lz4_decompressor() -> Any:
    try:
        import lz4.frame
    except ImportError as error:
        raise ImportError("reading LZ4 frames needs the lz4 package (pip install lz4)") from error
    return lz4.frame.LZ4FrameDecompressor()


def _codec_errors() -> tuple[type[Exception], ...]:
    """Return the exception types that the codecs raise on invalid data."""
    errors: list[type[Exception]] = [OSError, EOFError, ValueError, zlib.error, _gzip_zlib.error, lzma.LZMAError]
    try:
        import zstandard
    except ImportError:
        return tuple(errors)
    return (*errors, zstandard.ZstdError)


class _Member:
    """One gzip member, zstd frame, bz2/xz stream or LZ4 frame being decompressed.

    `unused_data` is the input after the member's end, once `eof` is set.
    """

    # zstandard's decompressobj has no output bound, so input goes in slices of this size.
    _ZSTD_INPUT_SLICE = 64 << 10

    def __init__(self, compression: Compression, decompressor: Any) -> None:
        self.compression = compression
        self._decompressor = decompressor
        self.unused_data = b""

    @property
    def eof(self) -> bool:
        return bool(self._decompressor.eof)

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Decompress `data`, yielding at most about OUTPUT_CHUNK_BYTES per piece."""
        if self.compression == "gzip":
            yield from self._feed_zlib(data)
        elif self.compression == "zstd":
            yield from self._feed_zstd(data)
        else:
            yield from self._feed_needs_input(data)
        if self.eof and self.compression != "zstd":
            self.unused_data = self._decompressor.unused_data

    def _feed_zlib(self, data: bytes) -> Iterator[bytes]:
        decompressor = self._decompressor
        output = decompressor.decompress(data, OUTPUT_CHUNK_BYTES)
        while True:
            if output:
                yield output
            if decompressor.eof or not decompressor.unconsumed_tail:
                return
            output = decompressor.decompress(decompressor.unconsumed_tail, OUTPUT_CHUNK_BYTES)

    def _feed_needs_input(self, data: bytes) -> Iterator[bytes]:
        decompressor = self._decompressor
        output = decompressor.decompress(data, max_length=OUTPUT_CHUNK_BYTES)
        while True:
            if output:
                yield output
            if decompressor.eof or decompressor.needs_input:
                return
            output = decompressor.decompress(b"", max_length=OUTPUT_CHUNK_BYTES)

    def _feed_zstd(self, data: bytes) -> Iterator[bytes]:
        # NOTE: one highly compressible slice can still expand to many MB.
        decompressor = self._decompressor
        for start in range(0, len(data), self._ZSTD_INPUT_SLICE):
            end = start + self._ZSTD_INPUT_SLICE
            output = decompressor.decompress(data[start:end])
            if output:
                yield output
            if decompressor.eof:
                self.unused_data = decompressor.unused_data + data[end:]
                return


def _decompress_some(member: _Member, head: bytes) -> bytes:
    pieces = []
    size = 0
    for piece in member.feed(head):
        pieces.append(piece)
        size += len(piece)
        if size >= OUTPUT_CHUNK_BYTES:
            break
    return b"".join(pieces)
