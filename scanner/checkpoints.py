"""Shard checkpoints in the state directory, local or in object storage.

Layout under `STATE/scan-<key>/`, where the key is a digest of everything that
changes a shard's bundle (sketch settings, read settings and grouping):

    shards/<shard id>.bundle   the shard's sketch bundle (a `scanner.codec` frame)
    shards/<shard id>.json     the shard's summary, written after the bundle
    shards/<pack id>.bundle    one bundle of all shards of a pack (`scanner.packing`)
    shards/<pack id>.json      {"shard_id": pack id, "shards": [shard summaries]}

A shard is checkpointed when its summary, or the summary of a pack that
contains it, exists. Local writes go to a temporary name first and are
renamed, so a crash never leaves a partial file under the final name. An
object store write is atomic per object. Writing the
same shard twice (a task that Ray ran again) replaces equal content.

A checkpoint is used only when its bundle was made with the scan's sketch
settings. The key already separates settings, so a mismatch means files copied
or left from elsewhere; loading one raises `BundleMismatchError` naming the
setting, and the scan produces no numbers.
"""

import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from fsspec.implementations.local import LocalFileSystem

from scanner.bundle import Bundle, BundleMismatchError
from scanner.config import ScanConfig
from scanner.packing import pack_id_for
from scanner.storage import check_local_directory_writable, filesystem_for, unwritable_error


def scan_key(config: ScanConfig) -> str:
    """Digest of the settings that decide a shard's result."""
    settings = {
        "sketch": config.sketch.model_dump(mode="json"),
        "read": config.read.model_dump(mode="json"),
        "group_by": config.group_by,
        "profile": config.profile,
    }
    if config.registry is not None:
        # Added only with a registry, so the checkpoints of scans without one keep their key.
        settings["registry"] = [config.registry, config.near_duplicate_threshold]
    material = json.dumps(settings, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint in the state directory: of one shard, or of the shards of one pack."""

    checkpoint_id: str  # the shard id, or the pack id
    summaries: tuple[dict, ...]  # one summary per shard, as `scan_shard` returns it

    @property
    def shard_ids(self) -> tuple[str, ...]:
        return tuple(summary["shard_id"] for summary in self.summaries)


class CheckpointStore:
    """Reads and writes shard checkpoints of one scan configuration."""

    def __init__(self, state_dir: str, config: ScanConfig):
        self.fs, root = filesystem_for(state_dir, config.storage)
        self.settings = config.sketch
        self.root = f"{root.rstrip('/')}/scan-{scan_key(config)}/shards"

    def _path(self, shard_id: str, suffix: str) -> str:
        return f"{self.root}/{shard_id}{suffix}"

    def check_writable(self) -> None:
        """Raise UnwritableLocationError when a local state directory is read-only or full."""
        if isinstance(self.fs, LocalFileSystem):
            check_local_directory_writable(self.root, "--state-dir")

    def _write(self, path: str, data: bytes) -> None:
        if isinstance(self.fs, LocalFileSystem):
            temporary = f"{path}.tmp-{uuid.uuid4().hex}"
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(temporary, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, path)
            except OSError as error:
                # Not an OSError, so Ray reports the shard at once instead of retrying a full disk.
                _remove_quietly(temporary)
                raise unwritable_error(os.path.dirname(path), "--state-dir", error) from None
        else:
            self.fs.pipe_file(path, data)

    def save(self, shard_id: str, bundle_bytes: bytes, summary: dict) -> None:
        self._write(self._path(shard_id, ".bundle"), bundle_bytes)
        self._write(self._path(shard_id, ".json"), json.dumps(summary, sort_keys=True).encode())

    def completed(self) -> dict[str, Checkpoint]:
        """Return every checkpoint, of a shard or of a pack, by checkpoint id.

        Raises ValueError naming the file when a summary is not a shard or pack summary.
        """
        try:
            names = self.fs.find(self.root)
        except FileNotFoundError:
            return {}
        checkpoints = {}
        for name in names:
            if name.endswith(".json"):
                try:
                    checkpoint = _checkpoint_of(json.loads(self.fs.cat_file(name)))
                except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                    raise ValueError(
                        f"checkpoint {name} is not a shard summary ({type(error).__name__}): "
                        "remove the state directory, or scan without --resume"
                    ) from None
                checkpoints[checkpoint.checkpoint_id] = checkpoint
        return checkpoints

    def load_bundle_bytes(self, checkpoint_id: str, shard_ids: Iterable[str] | None = None) -> bytes:
        """Return a checkpointed bundle, of a shard or of a pack.

        Raises BundleMismatchError when it was made with other settings, or when
        `shard_ids` is given and the bundle contains other shards.
        """
        path = self._path(checkpoint_id, ".bundle")
        data = self.fs.cat_file(path)
        try:
            bundle = Bundle.from_bytes(data)
            difference = bundle.settings.mismatch(self.settings)
        except BundleMismatchError as error:
            difference = str(error)
        if difference is not None:
            raise BundleMismatchError(
                f"checkpoint {path} was made with other settings than this scan (checkpoint != scan: {difference}): "
                "scan without --resume, or delete the checkpoints under the state directory"
            )
        if shard_ids is not None and bundle.shard_ids != tuple(sorted(shard_ids)):
            raise BundleMismatchError(
                f"checkpoint {path} does not contain the shards that its summary lists "
                f"({len(bundle.shard_ids)} in the bundle): scan without --resume, or delete the checkpoints "
                "under the state directory"
            )
        return data


def select_checkpoints(checkpoints: Iterable[Checkpoint], planned_ids: set[str]) -> list[Checkpoint]:
    """Choose the checkpoints a resumed scan reuses; return them sorted by checkpoint id.

    A checkpoint is reused only when all its shards are planned, and no shard is
    in two chosen checkpoints. A state directory can contain a shard twice, for
    example alone from a scan with --no-pack and in a pack from a later scan
    without --resume. Larger checkpoints are chosen first, then by id, so the
    choice is deterministic.
    """
    candidates = [checkpoint for checkpoint in checkpoints if set(checkpoint.shard_ids) <= planned_ids]
    candidates.sort(key=lambda checkpoint: (-len(checkpoint.summaries), checkpoint.checkpoint_id))
    chosen = []
    covered: set[str] = set()
    for checkpoint in candidates:
        if covered.isdisjoint(checkpoint.shard_ids):
            chosen.append(checkpoint)
            covered.update(checkpoint.shard_ids)
    return sorted(chosen, key=lambda checkpoint: checkpoint.checkpoint_id)


def _checkpoint_of(summary: dict) -> Checkpoint:
    """Return the checkpoint that a summary file describes; raise ValueError or KeyError when it is malformed."""
    checkpoint_id = summary["shard_id"]
    if "shards" not in summary:
        return Checkpoint(checkpoint_id, (summary,))

    members = tuple(summary["shards"])
    shard_ids = [member["shard_id"] for member in members]
    if not members or len(set(shard_ids)) != len(shard_ids) or pack_id_for(shard_ids) != checkpoint_id:
        raise ValueError(f"pack {checkpoint_id} does not match the ids of its {len(members)} shards")
    return Checkpoint(checkpoint_id, members)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
