"""Running a scan on Ray: plan, shard tasks, checkpoints and a streaming tree merge.

The driver lists the sources and plans shards, then keeps at most
2 x workers shard tasks in flight. Each task reads its shard straight from
storage, checkpoints the bundle and returns (summary, bundle bytes) as two Ray
objects; the driver fetches only the small summary. When there are many small
shards, the driver groups them into packs (`scanner.packing`), and one task
scans a pack into one bundle and returns the summaries of its shards. Bundles
are merged by Ray tasks, `MERGE_FAN_IN` at a time, as soon as enough are ready,
so the driver holds object references, never a growing list of bundles.

A worker that crashes has its task retried (`task_retries`); storage errors
(OSError) are retried the same way, after botocore and s3fs have retried the
request itself (see `scanner.storage`). A shard that still fails is reported,
not merged. A pack that still fails is split: each of its shards runs again
as a task of its own, so one unreadable object fails alone. Every shard id
enters the merge at most once, and `Bundle.merge` rejects a second copy, so a
shard that Ray ran twice is counted once.
"""

import logging
import os
import pathlib
import time
from dataclasses import dataclass, field

import ray

from scanner.allocator import release_free_memory
from scanner.bundle import Bundle, BundleMismatchError
from scanner.checkpoints import Checkpoint, CheckpointStore, select_checkpoints
from scanner.config import ScanConfig
from scanner.packing import pack_id_for, pack_limit_bytes, plan_packs
from scanner.plan import Plan, Shard, build_plan
from scanner.profile import ReferenceProfile
from scanner.registry import RegistryError, load_registry
from scanner.progress import Progress
from scanner.scoring import ProfileScorer
from scanner.shard_task import scan_shard, scan_shards
from scanner.sources import list_objects
from scanner.storage import storage_retry_count

logger = logging.getLogger(__name__)

MERGE_FAN_IN = 8


@dataclass
class ScanOutcome:
    """Outcome of a scan: the merged bundle, per-shard summaries and failures."""

    config: ScanConfig
    plan: Plan
    bundle: Bundle | None
    summaries: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    resumed_shards: int = 0
    driver_storage_retries: int = 0  # S3 request retries of the driver: listing, planning, profile and registry
    seconds: float = 0.0
    profile: ReferenceProfile | None = None
    registry: dict[str, dict] | None = None  # per dataset, `Registry.summary()` of the scan's registry


def _merge_bytes(*parts: bytes) -> bytes:
    # Decoding one part at a time keeps two decoded bundles in memory, not all of them.
    merged = Bundle.from_bytes(parts[0])
    for part in parts[1:]:
        merged = merged.merge(Bundle.from_bytes(part))
    data = merged.to_bytes()
    del merged
    release_free_memory()
    return data


def _load_checkpoint(config: ScanConfig, checkpoint_id: str, shard_ids: tuple[str, ...]) -> bytes:
    return CheckpointStore(config.resolved_state_dir, config).load_bundle_bytes(checkpoint_id, shard_ids)


_scan_task = ray.remote(num_returns=2)(scan_shard)
_pack_task = ray.remote(num_returns=2)(scan_shards)
_merge_task = ray.remote(_merge_bytes)
_load_task = ray.remote(_load_checkpoint)


class _TreeMerge:
    """Merges bundle references level by level as they arrive.

    `merge_task` is a Ray task that merges any number of serialized values into
    one; the default merges scan bundles.
    """

    def __init__(self, merge_task=None):
        self.levels: list[list] = [[]]
        self.merge_task = merge_task or _merge_task

    def add(self, reference, level: int = 0) -> None:
        while len(self.levels) <= level:
            self.levels.append([])
        pending = self.levels[level]
        pending.append(reference)
        if len(pending) == MERGE_FAN_IN:
            self.levels[level] = []
            self.add(self.merge_task.remote(*pending), level + 1)

    def result(self) -> Bundle | None:
        reference = self.result_reference()
        return None if reference is None else Bundle.from_bytes(ray.get(reference))

    def result_reference(self):
        """Merge what is pending; return the reference of the merged bytes, or None when nothing was added."""
        remaining = [reference for level in self.levels for reference in level]
        if not remaining:
            return None
        while len(remaining) > 1:
            remaining = [
                self.merge_task.remote(*remaining[i : i + MERGE_FAN_IN]) if len(remaining[i : i + MERGE_FAN_IN]) > 1
                else remaining[i]
                for i in range(0, len(remaining), MERGE_FAN_IN)
            ]
        return remaining[0]


_PACKAGE_PARENT = pathlib.Path(__file__).resolve().parent.parent


def start_ray(address: str | None, num_workers: int | None) -> bool:
    """Connect to the Ray cluster at `address`, or start an embedded local one; return True when started here."""
    if ray.is_initialized():
        return False
    # Ray puts the driver's current directory on the workers' import path. A `scanner`
    # folder there (an old checkout, say) would shadow the installed package in the
    # workers only. So `ray.init` runs from the directory that contains this package.
    previous = os.getcwd()
    os.chdir(_PACKAGE_PARENT)
    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        else:
            ray.init(
                address="local",
                num_cpus=num_workers or os.cpu_count(),
                include_dashboard=False,
                logging_level=logging.WARNING,
            )
    finally:
        os.chdir(previous)
    return True


def _workers(config: ScanConfig) -> int:
    if config.num_workers:
        return config.num_workers
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def run_scan(config: ScanConfig, progress_enabled: bool | None = None) -> ScanOutcome:
    """Plan and run a scan; return its outcome. Raises SourceError when sources match nothing."""
    started = time.monotonic()
    retries_before = storage_retry_count()
    profile = None
    if config.profile is not None:
        # Fail before any work when the profile is missing, unreadable or built for other settings.
        profile = ReferenceProfile.load(config.profile, config.storage)
        ProfileScorer(profile, config.sketch)
    registry = None
    if config.registry is not None:
        # The driver reads only the manifests, and each worker reads the arrays itself.
        registry = load_registry(config.registry, config.storage, arrays=False)
        registry.check_settings(config.sketch)
    objects = list_objects(config.sources, config.storage)
    plan = build_plan(
        objects, config.storage, declared_format=config.read.format, target_shard_bytes=config.target_shard_bytes
    )
    logger.info("scan planned: %d objects, %d shards, %d bytes", plan.total_objects, len(plan.shards), plan.total_bytes)

    store = CheckpointStore(config.resolved_state_dir, config)
    store.check_writable()
    checkpointed: list[Checkpoint] = []
    if config.resume:
        planned_ids = {shard.shard_id for shard in plan.shards}
        checkpointed = select_checkpoints(store.completed().values(), planned_ids)
        resumed = sum(len(checkpoint.summaries) for checkpoint in checkpointed)
        logger.info(
            "resuming: %d of %d shards already checkpointed, in %d checkpoints",
            resumed,
            len(plan.shards),
            len(checkpointed),
        )

    started_ray = start_ray(config.address, config.num_workers)
    try:
        outcome = _execute(config, plan, checkpointed, progress_enabled)
    finally:
        if started_ray:
            ray.shutdown()
    outcome.profile = profile
    if registry is not None:
        _check_registry_unchanged(outcome, registry.digest)
        outcome.registry = registry.summary()
    outcome.driver_storage_retries = storage_retry_count() - retries_before
    outcome.seconds = time.monotonic() - started
    logger.info(
        "scan finished in %.1f s: %d shards merged, %d failed",
        outcome.seconds,
        len(outcome.summaries),
        len(outcome.failures),
    )
    return outcome


def _execute(config: ScanConfig, plan: Plan, checkpointed: list[Checkpoint], progress_enabled) -> ScanOutcome:
    resumed = sum(len(checkpoint.summaries) for checkpoint in checkpointed)
    outcome = ScanOutcome(config=config, plan=plan, bundle=None, resumed_shards=resumed)
    progress = Progress(len(plan.shards), enabled=progress_enabled)
    merge = _TreeMerge()
    merged_ids: set[str] = set()

    for checkpoint in checkpointed:
        merge.add(_load_task.remote(config, checkpoint.checkpoint_id, checkpoint.shard_ids))
        merged_ids.update(checkpoint.shard_ids)
        for summary in checkpoint.summaries:
            outcome.summaries.append(summary)
            progress.shard_done(summary)

    workers = _workers(config)
    pending = [shard for shard in plan.shards if shard.shard_id not in merged_ids]
    queue = _packs_for(pending, config, workers)
    limit = 2 * workers
    in_flight: dict = {}
    options = {"max_retries": config.task_retries, "retry_exceptions": [OSError, TimeoutError]}

    while queue or in_flight:
        while queue and len(in_flight) < limit:
            pack = queue.pop(0)
            summaries_ref, bundle_ref = _submit(pack, config, options)
            in_flight[summaries_ref] = (pack, bundle_ref)

        ready, _ = ray.wait(list(in_flight), num_returns=1)
        for summaries_ref in ready:
            pack, bundle_ref = in_flight.pop(summaries_ref)
            try:
                summaries = ray.get(summaries_ref)
            except Exception as error:  # noqa: BLE001 - any task failure is reported per shard
                _discard(bundle_ref)
                if len(pack) > 1:
                    queue[:0] = _split_failed_pack(pack, error)
                else:
                    _report_failed_shard(pack[0], error, outcome, progress)
                continue
            if len(pack) == 1:
                summaries = [summaries]
            repeated = [shard.shard_id for shard in pack if shard.shard_id in merged_ids]
            if repeated:
                logger.warning("shard %s reported twice; merged once", repeated[0])
                continue
            merged_ids.update(shard.shard_id for shard in pack)
            merge.add(bundle_ref)
            for summary in summaries:
                outcome.summaries.append(summary)
                progress.shard_done(summary)

    progress.close()
    try:
        outcome.bundle = merge.result()
    except BundleMismatchError as error:
        # Ray wraps the merge task's error; raise the original message without the remote traceback.
        raise BundleMismatchError(str(getattr(error, "cause", None) or error)) from None
    outcome.summaries.sort(key=lambda summary: summary["shard_id"])
    return outcome


def _split_failed_pack(pack: tuple[Shard, ...], error: Exception) -> list[tuple[Shard, ...]]:
    """Log a pack whose task failed after its retries; return its shards as packs of one."""
    logger.warning(
        "pack %s of %d shards (first %s) failed after its retries, so each shard runs again alone: %s",
        pack_id_for(shard.shard_id for shard in pack),
        len(pack),
        pack[0].url,
        _failure_message(error),
    )
    return [(shard,) for shard in pack]


def _report_failed_shard(shard: Shard, error: Exception, outcome: ScanOutcome, progress: Progress) -> None:
    message = _failure_message(error)
    logger.error("shard %s (%s) failed: %s", shard.shard_id, shard.url, message)
    outcome.failures.append({"shard_id": shard.shard_id, "url": shard.url, "error": message})
    progress.shard_failed()


def _submit(pack: tuple[Shard, ...], config: ScanConfig, options: dict) -> tuple:
    """Start the task of a pack; return the references of its summaries and its bundle bytes.

    A pack of one shard runs `scan_shard`, whose first return is a single summary.
    """
    if len(pack) == 1:
        return _scan_task.options(**options).remote(pack[0], config)
    return _pack_task.options(**options).remote(list(pack), config)


def _packs_for(shards: list[Shard], config: ScanConfig, workers: int) -> list[tuple[Shard, ...]]:
    """Group the shards to scan into packs, or one shard per pack when packing is off."""
    if not config.pack_shards:
        return [(shard,) for shard in shards]
    packs = plan_packs(shards, workers, config.target_shard_bytes)
    if len(packs) < len(shards):
        total = sum(shard.estimated_bytes for shard in shards)
        logger.info(
            "packed %d shards into %d tasks of at most %d bytes each",
            len(shards),
            len(packs),
            pack_limit_bytes(total, workers, config.target_shard_bytes),
        )
    return packs


def _check_registry_unchanged(outcome: ScanOutcome, digest: str) -> None:
    if outcome.bundle is not None and outcome.bundle.registry_digest != digest:
        raise RegistryError(
            f"the registry {outcome.config.registry} changed during the scan (manifest digest "
            f"{digest} at the start, {outcome.bundle.registry_digest} in the shards): scan again"
        )


def _discard(reference) -> None:
    """Fetch a failed task's second return, so Ray does not log its error again as unhandled."""
    try:
        ray.get(reference)
    except Exception:  # noqa: BLE001 - the same error was already reported for the shard
        pass


def _failure_message(error: Exception) -> str:
    cause = getattr(error, "cause", None)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}"
