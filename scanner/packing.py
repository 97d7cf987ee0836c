"""Packing small shards into fewer Ray tasks.

Every shard task has a fixed cost that does not depend on the shard's size: a
new `ShardAccumulator`, encoding the bundle, writing the checkpoint, merging the
bundle, and Ray's own task overhead. For a corpus of thousands of small files
that cost dominates, so the runner groups consecutive shards (in plan order)
into packs, and one task reads all shards of a pack into one accumulator.

A pack of one shard is an ordinary shard task. A pack of several shards is
checkpointed once, under `pack_id_for` of its member shard ids.
"""

import hashlib
from collections.abc import Iterable, Sequence

from scanner.plan import Shard

# Tasks wanted per worker. More tasks than workers let fast workers take over
# the work of slow ones near the end of a scan. On 200 MB of gzip JSONL in 42
# files, with Ray already running, 4 gave 31.3 and 55.3 MB/s on 1 and 2 workers,
# 8 gave 30.8 and 52.2, and 16 gave 28.8 and 47.7 (benchmarks/RESULTS.md).
TASKS_PER_WORKER = 4
# Lower bound of the pack size limit, so a small corpus gets a few packs instead
# of many whose fixed cost is close to their work.
# NOTE: 1 MiB is a judgment, not a measured optimum. With one local worker, a task
# cost 13 to 16 ms beyond its text, and 1 MiB of text takes at least 20 ms to scan
# (benchmarks/RESULTS.md).
MIN_PACK_BYTES = 1 << 20
# Maximum shards in one pack. The byte estimate leaves out the cost of opening
# each object, which is most of the work for empty and tiny objects.
MAX_PACK_SHARDS = 256

PACK_ID_PREFIX = "pack-"
_PACK_ID_DIGEST_CHARS = 16


def pack_limit_bytes(total_bytes: int, workers: int, max_pack_bytes: int, min_pack_bytes: int = MIN_PACK_BYTES) -> int:
    """Return the byte limit of a pack: the total spread over TASKS_PER_WORKER tasks per worker.

    The limit is at least `min_pack_bytes` and at most `max_pack_bytes`.
    """
    spread = total_bytes // (TASKS_PER_WORKER * workers)
    return min(max(spread, min_pack_bytes), max_pack_bytes)


def plan_packs(
    shards: Sequence[Shard],
    workers: int,
    max_pack_bytes: int,
    min_pack_bytes: int = MIN_PACK_BYTES,
    max_pack_shards: int = MAX_PACK_SHARDS,
) -> list[tuple[Shard, ...]]:
    """Group shards into packs of consecutive shards; return the packs in the shards' order.

    Shards are packed only when there are more than TASKS_PER_WORKER * `workers`
    of them; otherwise every shard is a pack of its own. A pack takes the next
    shard while its summed `estimated_bytes` stays within `pack_limit_bytes` and
    it has fewer than `max_pack_shards` shards. A shard larger than the limit is
    a pack alone. Every pack of two or more shards is within the limit, so when
    no shard exceeds the limit there are at least total / limit packs: at least
    TASKS_PER_WORKER * `workers`, unless `min_pack_bytes` raised the limit.

    Raises ValueError for a non-positive `workers`, `max_pack_bytes` or `max_pack_shards`.
    """
    if workers < 1:
        raise ValueError(f"invalid worker count {workers}: use at least 1")
    if max_pack_bytes < 1:
        raise ValueError(f"invalid maximum pack size {max_pack_bytes}: use a positive number of bytes")
    if max_pack_shards < 1:
        raise ValueError(f"invalid maximum shards per pack {max_pack_shards}: use at least 1")
    if len(shards) <= TASKS_PER_WORKER * workers:
        return [(shard,) for shard in shards]

    total = sum(shard.estimated_bytes for shard in shards)
    limit = pack_limit_bytes(total, workers, max_pack_bytes, min_pack_bytes)
    packs: list[tuple[Shard, ...]] = []
    current: list[Shard] = []
    current_bytes = 0
    for shard in shards:
        full = len(current) >= max_pack_shards or current_bytes + shard.estimated_bytes > limit
        if current and full:
            packs.append(tuple(current))
            current = []
            current_bytes = 0
        current.append(shard)
        current_bytes += shard.estimated_bytes
    if current:
        packs.append(tuple(current))
    return packs


def pack_id_for(shard_ids: Iterable[str]) -> str:
    """Return the checkpoint id of a pack: "pack-" and a SHA-256 prefix of its sorted shard ids.

    The id does not depend on the order of `shard_ids`, so the same shards give the same id.
    """
    material = "\n".join(sorted(shard_ids))
    return PACK_ID_PREFIX + hashlib.sha256(material.encode("utf-8")).hexdigest()[:_PACK_ID_DIGEST_CHARS]
