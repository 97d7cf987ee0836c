"""Scanning one shard, or a pack of shards, on a worker: storage -> records -> kernels -> bundle.

This runs inside a Ray task, never on the driver. It opens each shard's object
with the scan's storage options, reads record batches with `scanner.formats`,
feeds their text to a `ShardAccumulator`, and checkpoints the bundle and a
summary before returning them.
"""

import logging
import os
import time
from collections.abc import Sequence

from scanner.accumulator import ShardAccumulator
from scanner.allocator import release_free_memory
from scanner.checkpoints import CheckpointStore
from scanner.config import ScanConfig
from scanner.formats import ReadReport
from scanner.grouping import group_codes
from scanner.packing import pack_id_for
from scanner.plan import Shard, read_shard
from scanner.profile import ReferenceProfile
from scanner.registry import RegistryMatcher, load_registry
from scanner.scoring import ProfileScorer
from scanner.storage import storage_retry_count
from scanner.tokens import TokenScratch

logger = logging.getLogger(__name__)

# Test-only fault hook, inert unless the variable is set: a directory in which the
# task leaves one marker per checkpoint id (a shard id, or a pack id). The first
# time a shard or pack is checkpointed, the task creates the marker and ends its
# worker process before returning, which is a worker killed after its shard
# finished but before it reported. Ray then runs the task again, and the second
# run finds the marker and returns normally.
CRASH_AFTER_CHECKPOINT_VARIABLE = "CORPUS_SCANNER_TEST_CRASH_AFTER_CHECKPOINT"


_scorers: dict[tuple[str, str], ProfileScorer] = {}
# A worker runs one shard at a time, so its shards share the token arrays. A new set
# per shard cost about 3% of a 4.8 MB shard's CPU time, in 900 more page faults.
_token_scratch = TokenScratch()


def scorer_for(config: ScanConfig) -> ProfileScorer | None:
    """Return the scorer of the scan's profile, loaded once per worker process."""
    if config.profile is None:
        return None
    key = (config.profile, config.sketch.model_dump_json())
    if key not in _scorers:
        _scorers[key] = ProfileScorer(ReferenceProfile.load(config.profile, config.storage), config.sketch)
    return _scorers[key]


_matchers: dict[tuple[str, str, float], RegistryMatcher] = {}


def matcher_for(config: ScanConfig) -> RegistryMatcher | None:
    """Return the matcher of the scan's registry, read by this worker and kept while its manifests stay the same."""
    if config.registry is None:
        return None
    manifests = load_registry(config.registry, config.storage, arrays=False)
    key = (config.registry, manifests.digest, config.near_duplicate_threshold)
    if key not in _matchers:
        _matchers.clear()
        registry = load_registry(config.registry, config.storage)
        _matchers[key] = RegistryMatcher(registry, config.near_duplicate_threshold)
    return _matchers[key]


def scan_shard(shard: Shard, config: ScanConfig) -> tuple[dict, bytes]:
    """Scan one shard; return (summary, bundle bytes) and checkpoint both.

    The summary contains the shard's counters, its read report and the seconds it
    took. Exceptions from storage or a reader propagate to the caller.
    """
    started = time.perf_counter()
    accumulator = _new_accumulator(config, shard.shard_id)
    summary = _read_shard_into(accumulator, shard, config)

    bundle_bytes = accumulator.finish().to_bytes()
    summary["seconds"] = round(time.perf_counter() - started, 6)
    CheckpointStore(config.resolved_state_dir, config).save(shard.shard_id, bundle_bytes, summary)
    _crash_after_checkpoint_for_tests(shard.shard_id)
    logger.debug("shard %s done: %d documents", shard.shard_id, summary["documents"])
    del accumulator
    release_free_memory()
    return summary, bundle_bytes


def scan_shards(pack: Sequence[Shard], config: ScanConfig) -> tuple[list[dict], bytes]:
    """Scan the shards of a pack into one bundle; return (shard summaries, bundle bytes) and checkpoint both.

    Each summary has the fields of a `scan_shard` summary, counted for its shard
    alone, and the bundle equals the merge of the bundles that `scan_shard`
    returns for the shards. A shard's seconds cover reading and sketching it,
    but not encoding and checkpointing the pack's bundle. The checkpoint is
    saved under `pack_id_for` of the shard ids, with the summary
    {"shard_id": pack id, "shards": [shard summaries]}. Exceptions from storage
    or a reader propagate to the caller, and the pack then leaves no checkpoint.
    """
    if not pack:
        raise ValueError("invalid empty pack: give at least one shard")
    shard_ids = [shard.shard_id for shard in pack]
    pack_id = pack_id_for(shard_ids)
    accumulator = _new_accumulator(config, shard_ids)
    summaries = []
    for index, shard in enumerate(pack):
        started = time.perf_counter()
        summary = _read_shard_into(accumulator, shard, config)
        if index < len(pack) - 1:
            accumulator.finish_shard()
        summary["seconds"] = round(time.perf_counter() - started, 6)
        summaries.append(summary)

    bundle_bytes = accumulator.finish().to_bytes()
    pack_summary = {"shard_id": pack_id, "shards": summaries}
    CheckpointStore(config.resolved_state_dir, config).save(pack_id, bundle_bytes, pack_summary)
    _crash_after_checkpoint_for_tests(pack_id)
    logger.debug("pack %s done: %d shards", pack_id, len(pack))
    del accumulator
    release_free_memory()
    return summaries, bundle_bytes


def _new_accumulator(config: ScanConfig, shard_ids: str | Sequence[str]) -> ShardAccumulator:
    return ShardAccumulator(
        config.sketch,
        shard_ids,
        scorer_for(config),
        matcher_for(config),
        group_indicators=config.group_by == "snapshot",
        token_scratch=_token_scratch,
    )


def _read_shard_into(accumulator: ShardAccumulator, shard: Shard, config: ScanConfig) -> dict:
    """Read one shard into the accumulator; return its summary without "seconds".

    The counters are what this shard added to the accumulator, so they count
    this shard alone when the accumulator also contains other shards of a pack.
    """
    retries_before = storage_retry_count()
    counters_before = _counters(accumulator)
    overflow_before = accumulator.heavy_hitter_overflow
    report = ReadReport()
    for warning in shard.warnings:
        report.warn(f"{shard.url}: {warning}")

    batches = read_shard(shard, config.storage, config.read.options(), report)
    for batch in batches:
        if batch.num_rows:
            accumulator.add_texts(batch.column("text"), group_codes(batch, config.group_by))

    overflow = accumulator.heavy_hitter_overflow - overflow_before
    if overflow:
        report.warn(
            f"{shard.url}: {overflow} heavy-hitter candidates dropped; "
            "raise --heavy-hitter-capacity for complete top n-gram lists"
        )
    counters = {name: value - counters_before[name] for name, value in _counters(accumulator).items()}
    return {
        "shard_id": shard.shard_id,
        "url": shard.url,
        "byte_range": shard.byte_range,
        "row_groups": shard.row_groups,
        "estimated_bytes": shard.estimated_bytes,
        **counters,
        "storage_retries": storage_retry_count() - retries_before,
        "report": report.to_dict(),
    }


def _counters(accumulator: ShardAccumulator) -> dict[str, int]:
    return {name: getattr(accumulator, name) for name in ("documents", "empty_documents", "bytes", "tokens")}


def _crash_after_checkpoint_for_tests(checkpoint_id: str) -> None:
    marker_directory = os.environ.get(CRASH_AFTER_CHECKPOINT_VARIABLE)
    if not marker_directory:
        return
    marker = os.path.join(marker_directory, checkpoint_id.replace("/", "_"))
    try:
        with open(marker, "x"):
            pass
    except FileExistsError:
        return
    os._exit(1)
