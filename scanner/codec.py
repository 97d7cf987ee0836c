"""The binary file format of sketches and bundles.

A file is one frame:

    offset  size  field
    0       8     magic b"CSKETCH\\x01"
    8       4     header length H, unsigned little-endian
    12      H     header: UTF-8 JSON, keys sorted, no whitespace
    12+H    ...   array payloads in the zlib format (ISA-L level 1), in header order
    end-32  32    SHA-256 of every byte before it

The header contains `kind` (what the frame contains), `format_version`, `meta`
(JSON values the reader interprets) and `arrays`: for each array its name,
numpy dtype (little-endian, from a fixed allowlist), shape and compressed size.
Nothing in a frame is executable: no pickle, no object arrays. The same
content always encodes to the same bytes.
"""

import hashlib
import json
import struct
from typing import Any

import numpy as np
from isal import isal_zlib

MAGIC = b"CSKETCH\x01"
FORMAT_VERSION = 1
_CHECKSUM_BYTES = 32
_ALLOWED_DTYPES = {"|u1", "<u4", "<u8", "<i4", "<i8", "<f8"}
# On a shard's bundle, ISA-L compressed the arrays 3 to 8 times faster than zlib at
# level 1 (measured here), in the same zlib format. Every shard and merge writes a bundle.
_COMPRESSION_LEVEL = 1


class FrameError(ValueError):
    """A frame is truncated, corrupted, or of another kind or version."""


def encode_frame(kind: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """Encode `meta` and `arrays` (in the given order) as one frame."""
    entries = []
    payloads = []
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        dtype_text = np.dtype(dtype).str
        if dtype_text not in _ALLOWED_DTYPES:
            raise TypeError(f"array {name!r} has dtype {dtype_text}, which frames do not store")
        payload = isal_zlib.compress(array.astype(dtype_text, copy=False).reshape(-1).view(np.uint8), _COMPRESSION_LEVEL)
        entries.append({"name": name, "dtype": dtype_text, "shape": list(array.shape), "size": len(payload)})
        payloads.append(payload)

    header = {"kind": kind, "format_version": FORMAT_VERSION, "meta": meta, "arrays": entries}
    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    body = b"".join([MAGIC, struct.pack("<I", len(header_bytes)), header_bytes, *payloads])
    return body + hashlib.sha256(body).digest()


def decode_frame(data: bytes, expected_kind: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Decode a frame of `expected_kind`; return (meta, arrays).

    Raises FrameError when the data is truncated, fails its checksum, or is of
    another kind or format version.
    """
    data = memoryview(data).cast("B")
    minimum = len(MAGIC) + 4 + _CHECKSUM_BYTES
    if len(data) < minimum:
        raise FrameError(f"sketch file is truncated: {len(data)} bytes, a frame has at least {minimum}")
    if bytes(data[: len(MAGIC)]) != MAGIC:
        raise FrameError("not a corpus-scanner sketch file: the magic bytes are missing")

    body, checksum = data[:-_CHECKSUM_BYTES], data[-_CHECKSUM_BYTES:]
    if hashlib.sha256(body).digest() != checksum:
        raise FrameError("sketch file is corrupted or truncated: its SHA-256 checksum does not match")

    (header_length,) = struct.unpack_from("<I", body, len(MAGIC))
    header_start = len(MAGIC) + 4
    try:
        header = json.loads(bytes(body[header_start : header_start + header_length]))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FrameError(f"sketch file header is not valid JSON: {error}") from None
    if header.get("format_version") != FORMAT_VERSION:
        raise FrameError(
            f"sketch file format version {header.get('format_version')!r} is not supported "
            f"(this build reads version {FORMAT_VERSION})"
        )
    if header.get("kind") != expected_kind:
        raise FrameError(f"sketch file contains a {header.get('kind')!r}, expected a {expected_kind!r}")

    arrays = {}
    position = header_start + header_length
    for entry in header["arrays"]:
        if entry["dtype"] not in _ALLOWED_DTYPES:
            raise FrameError(f"sketch file array {entry['name']!r} has unsupported dtype {entry['dtype']}")
        payload = body[position : position + entry["size"]]
        position += entry["size"]
        expected = int(np.prod(entry["shape"], dtype=np.int64))
        raw = _decompress(entry["name"], payload, expected * np.dtype(entry["dtype"]).itemsize)
        array = np.frombuffer(raw, dtype=entry["dtype"])
        if array.size != expected:
            raise FrameError(
                f"sketch file array {entry['name']!r} has {array.size} values, expected {expected} from its shape"
            )
        arrays[entry["name"]] = array.reshape(entry["shape"]).copy()
    if position != len(body):
        raise FrameError(f"sketch file has {len(body) - position} unexpected bytes after its arrays")
    return header["meta"], arrays


def _decompress(name: str, payload: memoryview, expected_bytes: int) -> bytes:
    """Decompress one array payload, reading at most one byte more than its shape needs."""
    decompressor = isal_zlib.decompressobj()
    try:
        raw = decompressor.decompress(payload, expected_bytes + 1)
    except isal_zlib.error as error:
        raise FrameError(f"sketch file array {name!r} failed to decompress: {error}") from None
    if not decompressor.eof and len(raw) <= expected_bytes:
        raise FrameError(f"sketch file array {name!r} failed to decompress: its compressed data is truncated")
    return raw
