"""Cut listed objects into shards: the units of work that Ray tasks read.

Rules, applied per object after format detection on its first HEAD_BYTES:
- Parquet files are split into runs of whole row groups of about
  `target_shard_bytes` (compressed column-chunk bytes from the footer).
- Uncompressed JSONL and text files larger than `target_shard_bytes` are split
  into equal byte ranges of at most that size. The planner cuts at fixed offsets,
  and the reader of a range owns every line that starts inside it.
- Everything else, compressed files included, is one whole-file shard.

The same objects, options and detector give the same plan and shard ids.
"""

from __future__ import annotations

import dataclasses

import hashlib
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, model_validator

from scanner.formats import ReadOptions, ReadReport, iter_record_batches
from scanner.formats.compression import Compression
from scanner.formats.detect import HEAD_BYTES, RECORD_FORMATS, RecordFormat, detect_format
from scanner.sources import ObjectInfo
from scanner.storage import StorageOptions, filesystem_for, redact_url

logger = logging.getLogger(__name__)

PLAN_SCHEMA_VERSION = 1
DEFAULT_TARGET_SHARD_BYTES = 256 << 20
# Head reads are network round trips on object storage, so they run in parallel.
DEFAULT_PLAN_THREADS = 16

_RANGE_SPLIT_FORMATS = ("jsonl", "text")
# Read-ahead block for footer reads: small, so reading the footer fetches little row-group data.
_PARQUET_FOOTER_BLOCK_BYTES = 64 << 10
_SHARD_ID_DIGEST_CHARS = 16
_SHARD_NAME_MAX_CHARS = 48
_UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")


class Shard(BaseModel):
    """One unit of work: a whole object, a byte range of it, or a run of its Parquet row groups.

    `byte_range` and `row_groups` are half-open [start, end) intervals. At most one
    is set, and neither is set for a whole-file shard. `size` is the size of the
    whole object and `estimated_bytes` the bytes this shard reads from storage.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    shard_id: str
    url: str
    size: int
    etag: str | None
    mtime: float | None
    format: RecordFormat
    compression: Compression
    byte_range: tuple[int, int] | None = None
    row_groups: tuple[int, int] | None = None
    estimated_bytes: int
    warnings: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _check_ranges(self) -> Shard:
        if self.byte_range is not None and self.row_groups is not None:
            raise ValueError(f"shard {self.shard_id} sets both byte_range and row_groups: set at most one")
        for name in ("byte_range", "row_groups"):
            interval = getattr(self, name)
            if interval is not None and not 0 <= interval[0] <= interval[1]:
                raise ValueError(f"shard {self.shard_id} has invalid {name} {interval}: need 0 <= start <= end")
        return self

    def part_label(self) -> str:
        """Return the part of the object this shard covers, for tables: "whole", "bytes a-b" or "rg a-b"."""
        if self.byte_range is not None:
            return f"bytes {self.byte_range[0]}-{self.byte_range[1]}"
        if self.row_groups is not None:
            return f"rg {self.row_groups[0]}-{self.row_groups[1]}"
        return "whole"


class Plan(BaseModel):
    """The shards of one scan, in a fixed order (by URL, then by position in the object)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = PLAN_SCHEMA_VERSION
    declared_format: str
    target_shard_bytes: int
    total_objects: int
    total_bytes: int
    shards: list[Shard]

    @model_validator(mode="after")
    def _check_totals(self) -> Plan:
        sizes = {shard.url: shard.size for shard in self.shards}
        if self.total_objects != len(sizes) or self.total_bytes != sum(sizes.values()):
            raise ValueError(
                f"plan totals ({self.total_objects} objects, {self.total_bytes} bytes) do not match "
                f"its shards ({len(sizes)} objects, {sum(sizes.values())} bytes): rebuild the plan"
            )
        duplicates = [shard_id for shard_id, count in Counter(s.shard_id for s in self.shards).items() if count > 1]
        if duplicates:
            raise ValueError(f"plan has duplicate shard ids {duplicates[:5]}: rebuild the plan")
        return self

    def to_json(self) -> str:
        """Serialize the plan to JSON text (URLs as listed, no storage options)."""
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> Plan:
        """Parse a plan written by `to_json`. Raises pydantic.ValidationError (a ValueError) if invalid."""
        return cls.model_validate_json(text)

    def format_table(self) -> str:
        """Render the plan as a text table for people, with totals first and warnings last."""
        return _render_table(self)


def build_plan(
    objects: Iterable[ObjectInfo],
    storage: StorageOptions,
    *,
    declared_format: str = "auto",
    target_shard_bytes: int = DEFAULT_TARGET_SHARD_BYTES,
    threads: int = DEFAULT_PLAN_THREADS,
) -> Plan:
    """Detect the format of each object and cut it into shards.

    Reads the first HEAD_BYTES of every object, and the footer of each Parquet
    file, but no record data. Raises ValueError for an invalid `declared_format`
    or a non-positive `target_shard_bytes` or `threads`. Storage errors propagate
    with a note naming the object.
    """
    if declared_format != "auto" and declared_format not in RECORD_FORMATS:
        raise ValueError(f"invalid format {declared_format!r}: use one of auto, {', '.join(RECORD_FORMATS)}")
    if target_shard_bytes <= 0:
        raise ValueError(f"invalid target shard size {target_shard_bytes}: use a positive number of bytes")
    if threads <= 0:
        raise ValueError(f"invalid thread count {threads}: use a positive number")

    unique = {info.url: info for info in objects}
    ordered = [unique[url] for url in sorted(unique)]
    logger.info(
        "planning %d objects with target shard size %d bytes, storage %s",
        len(ordered),
        target_shard_bytes,
        storage.redacted(),
    )

    def plan_one(info: ObjectInfo) -> list[Shard]:
        return _plan_object(info, storage, declared_format, target_shard_bytes)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        shards = [shard for object_shards in pool.map(plan_one, ordered) for shard in object_shards]

    plan = Plan(
        declared_format=declared_format,
        target_shard_bytes=target_shard_bytes,
        total_objects=len(ordered),
        total_bytes=sum(info.size for info in ordered),
        shards=shards,
    )
    warned = sum(1 for shard in shards if shard.warnings)
    logger.info(
        "planned %d shards from %d objects (%d bytes), %d shards with warnings",
        len(shards),
        plan.total_objects,
        plan.total_bytes,
        warned,
    )
    return plan


def _plan_object(info: ObjectInfo, storage: StorageOptions, declared_format: str, target: int) -> list[Shard]:
    fs, path = filesystem_for(info.url, storage)
    unreadable: tuple[str, ...] = ()
    try:
        head = _read_head(fs, path, info.size)
    except OSError as error:
        # Storage has already retried the read. The object becomes one shard planned from
        # its name alone: its task reads it again and fails alone, reported like any
        # failed shard, instead of stopping the whole scan here.
        logger.warning("cannot read the first bytes of %s (%s); planning it from its name", redact_url(info.url), error)
        head = b""
        unreadable = (f"the first bytes could not be read while planning ({type(error).__name__}): planned from the name",)
    detected = detect_format(head, info.url, declared_format)
    if unreadable:
        detected = dataclasses.replace(detected, warnings=detected.warnings + unreadable)

    def make_shard(
        *,
        byte_range: tuple[int, int] | None = None,
        row_groups: tuple[int, int] | None = None,
        estimated_bytes: int = info.size,
        extra_warnings: tuple[str, ...] = (),
    ) -> Shard:
        return Shard(
            shard_id=shard_id_for(info, byte_range=byte_range, row_groups=row_groups),
            url=info.url,
            size=info.size,
            etag=info.etag,
            mtime=info.mtime,
            format=detected.format,
            compression=detected.compression,
            byte_range=byte_range,
            row_groups=row_groups,
            estimated_bytes=estimated_bytes,
            warnings=detected.warnings + extra_warnings,
        )

    if detected.format == "parquet" and detected.compression is None:
        return _plan_parquet(fs, path, info, target, make_shard)

    if detected.format in _RANGE_SPLIT_FORMATS and detected.compression is None and info.size > target:
        ranges = split_byte_ranges(info.size, target)
        return [make_shard(byte_range=interval, estimated_bytes=interval[1] - interval[0]) for interval in ranges]

    return [make_shard()]


def _read_head(fs: fsspec.AbstractFileSystem, path: str, size: int) -> bytes:
    if size == 0:
        return b""
    return fs.cat_file(path, start=0, end=min(size, HEAD_BYTES))


def _plan_parquet(
    fs: fsspec.AbstractFileSystem,
    path: str,
    info: ObjectInfo,
    target: int,
    make_shard: Callable[..., Shard],
) -> list[Shard]:
    try:
        row_group_bytes = read_row_group_sizes(fs, path)
    except (OSError, pa.ArrowException, ValueError) as error:
        warning = f"could not read the Parquet footer ({error}); planned as one shard"
        logger.warning("%s: %s", redact_url(info.url), warning)
        return [make_shard(extra_warnings=(warning,))]

    runs = group_row_groups(row_group_bytes, target)
    if len(runs) <= 1:
        return [make_shard()]
    return [make_shard(row_groups=run, estimated_bytes=sum(row_group_bytes[run[0] : run[1]])) for run in runs]


def read_row_group_sizes(fs: fsspec.AbstractFileSystem, path: str) -> list[int]:
    """Return the compressed size in bytes of each row group, read from the Parquet footer only."""
    with fs.open(path, "rb", block_size=_PARQUET_FOOTER_BLOCK_BYTES) as file:
        metadata = pq.read_metadata(file)
    sizes = []
    for index in range(metadata.num_row_groups):
        row_group = metadata.row_group(index)
        sizes.append(sum(row_group.column(column).total_compressed_size for column in range(row_group.num_columns)))
    return sizes


def group_row_groups(row_group_bytes: Sequence[int], target: int) -> list[tuple[int, int]]:
    """Group consecutive row groups into half-open runs of about `target` bytes each.

    A run closes before the row group that would take it past `target`, so a run
    exceeds `target` only when it is a single row group larger than `target`.
    """
    runs: list[tuple[int, int]] = []
    start = 0
    run_bytes = 0
    for index, size in enumerate(row_group_bytes):
        if index > start and run_bytes + size > target:
            runs.append((start, index))
            start = index
            run_bytes = 0
        run_bytes += size
    if len(row_group_bytes) > start:
        runs.append((start, len(row_group_bytes)))
    return runs


def split_byte_ranges(size: int, target: int) -> list[tuple[int, int]]:
    """Split [0, size) into the fewest equal half-open ranges of at most `target` bytes."""
    parts = max(1, math.ceil(size / target))
    offsets = [size * part // parts for part in range(parts + 1)]
    return list(zip(offsets[:-1], offsets[1:]))


def shard_id_for(
    info: ObjectInfo,
    *,
    byte_range: tuple[int, int] | None = None,
    row_groups: tuple[int, int] | None = None,
) -> str:
    """Return a stable id: a digest of URL, size, version and part, then the readable file name.

    The version is the ETag, or the modification time when there is no ETag, so a
    rewritten object gets new shard ids and no stale checkpoint matches it.
    """
    version = info.etag or (repr(info.mtime) if info.mtime is not None else "")
    part = ""
    suffix = ""
    if byte_range is not None:
        part = f"bytes={byte_range[0]}-{byte_range[1]}"
        suffix = f".b{byte_range[0]}"
    elif row_groups is not None:
        part = f"row_groups={row_groups[0]}-{row_groups[1]}"
        suffix = f".rg{row_groups[0]}-{row_groups[1]}"

    key = "\n".join((info.url, str(info.size), version, part))
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:_SHARD_ID_DIGEST_CHARS]
    name = info.url.rstrip("/").rsplit("/", 1)[-1]
    # The end of a long name keeps the part number and the extensions.
    name = _UNSAFE_NAME_CHARACTERS.sub("_", name)[-_SHARD_NAME_MAX_CHARS:]
    return f"{digest}-{name}{suffix}"


def _render_table(plan: Plan) -> str:
    formats = Counter(shard.format for shard in plan.shards)
    lines = [
        f"{plan.total_objects} objects, {_format_bytes(plan.total_bytes)}, {len(plan.shards)} shards "
        f"(target {_format_bytes(plan.target_shard_bytes)} per shard, format {plan.declared_format})",
        "shards by format: " + ", ".join(f"{name} {count}" for name, count in sorted(formats.items())),
        "",
    ]

    header = ("SHARD ID", "FORMAT", "COMPRESSION", "PART", "EST. BYTES", "URL")
    rows = [
        (
            shard.shard_id,
            shard.format,
            shard.compression or "none",
            shard.part_label(),
            _format_bytes(shard.estimated_bytes),
            redact_url(shard.url),
        )
        for shard in plan.shards
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        lines.append("  ".join([*cells, row[-1]]))

    # Shards of one object share its detection warnings, so each is listed once per object.
    warnings_by_url: dict[str, list[str]] = {}
    for shard in plan.shards:
        listed = warnings_by_url.setdefault(shard.url, [])
        listed.extend(warning for warning in shard.warnings if warning not in listed)
    warned = {url: warnings for url, warnings in warnings_by_url.items() if warnings}
    if warned:
        lines.append("")
        lines.append(f"warnings ({len(warned)} objects):")
        for url, warnings in warned.items():
            for warning in warnings:
                lines.append(f"  {redact_url(url)}: {warning}")
    return "\n".join(lines)


def _format_bytes(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} TiB"


def read_shard(shard: Shard, storage: StorageOptions, options: ReadOptions, report: ReadReport) -> Iterator[pa.RecordBatch]:
    """Yield the record batches of one shard: its byte range or row groups of its object."""
    fs, path = filesystem_for(shard.url, storage)
    return iter_record_batches(
        lambda: fs.open(path, "rb"),
        shard.url,
        options,
        report,
        byte_range=shard.byte_range,
        row_groups=shard.row_groups,
    )
