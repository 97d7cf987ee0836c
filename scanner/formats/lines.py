"""Split a decompressed byte stream into lines with their byte offsets.

Lines end at b"\\n" only, so U+2028, U+2029 and a lone b"\\r" stay inside a
line (str.splitlines would split there). A shard that reads the byte range
[start, end) of an uncompressed object owns the lines that start in that
range: it skips to the first line start at or after `start` and reads through
the line that crosses `end`. Together, the shards of one object therefore
read every line exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from scanner.formats.compression import RAW_CHUNK_BYTES, StreamError


@dataclass(frozen=True)
class Line:
    """One line of the stream, without its b"\\n".

    offset: byte offset of the line start in the decompressed stream.
    number: 1-based line number, or None when the read began inside the object.
    size: length in bytes without the b"\\n".
    data: the bytes, or None when `size` exceeds the limit given to `iter_lines`.
    error: set on the last item when the stream failed. Then `data` is the
        incomplete line read before the fault (possibly empty).
    """

    offset: int
    number: int | None
    size: int
    data: bytes | None
    error: StreamError | None = None


def iter_lines(
    chunks: Iterator[bytes],
    *,
    max_line_bytes: int,
    first_offset: int = 0,
    first_number: int | None = 1,
    end: int | None = None,
) -> Iterator[Line]:
    """Yield the lines of `chunks`, keeping at most `max_line_bytes` of one line in memory.

    Stops after the last line that starts before `end`, when `end` is given.
    A StreamError from `chunks` ends the iteration with one Line whose
    `error` is set, instead of propagating.
    """
    pieces: list[bytes] = []
    size = 0
    offset = first_offset
    number = first_number

    def finish_line(last_piece: bytes) -> Line:
        line_size = size + len(last_piece)
        data = None if line_size > max_line_bytes else b"".join(pieces) + last_piece
        return Line(offset=offset, number=number, size=line_size, data=data)

    if end is not None and offset >= end:
        return
    try:
        for chunk in chunks:
            position = 0
            while True:
                newline = chunk.find(b"\n", position)
                if newline < 0:
                    rest = chunk[position:]
                    size += len(rest)
                    if size > max_line_bytes:
                        pieces.clear()
                    elif rest:
                        pieces.append(rest)
                    break

                yield finish_line(chunk[position:newline])
                offset += size + (newline - position) + 1
                number = None if number is None else number + 1
                pieces.clear()
                size = 0
                position = newline + 1
                if end is not None and offset >= end:
                    return
    except StreamError as error:
        partial = None if size > max_line_bytes else b"".join(pieces)
        yield Line(offset=offset, number=number, size=size, data=partial, error=error)
        return

    if size:
        yield finish_line(b"")


def read_chunks(raw: BinaryIO, first_chunk: bytes = b"") -> Iterator[bytes]:
    """Yield `first_chunk` (if not empty) and then the rest of `raw` in RAW_CHUNK_BYTES pieces."""
    if first_chunk:
        yield first_chunk
    while chunk := raw.read(RAW_CHUNK_BYTES):
        yield chunk


def seek_first_line(raw: BinaryIO, start: int) -> tuple[int, bytes]:
    """Position `raw` at the first line that starts at or after byte `start`.

    Returns that line's offset and the bytes already read from it onwards
    (pass them to `read_chunks`). The line that contains byte start - 1
    belongs to the previous range unless that byte is a newline. At the end of
    the object the returned offset is the object size and the bytes are empty.
    """
    if start <= 0:
        raw.seek(0)
        return 0, b""

    raw.seek(start - 1)
    position = start - 1
    while chunk := raw.read(RAW_CHUNK_BYTES):
        newline = chunk.find(b"\n")
        if newline >= 0:
            return position + newline + 1, chunk[newline + 1 :]
        position += len(chunk)
    return position, b""
