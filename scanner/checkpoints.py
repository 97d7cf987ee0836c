"""Shard checkpoints in the state directory, local or in object storage.

Layout under `STATE/scan-<key>/`, where the key is a digest of everything that
changes a shard's bundle (sketch settings, read settings and grouping):

    shards/<shard id>.bundle   the shard's sketch bundle (a `scanner.codec` frame)
    shards/<shard id>.json     the shard's summary, written after the bundle

A shard is checkpointed when its summary exists. Local writes go to a
temporary name first and are renamed, so a crash never leaves a partial file
under the final name; an object store write is atomic per object. Writing the
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

from fsspec.implementations.local import LocalFileSystem

from scanner.bundle import Bundle, BundleMismatchError
from scanner.config import ScanConfig
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

    def completed(self) -> dict[str, dict]:
        """Return the summaries of every checkpointed shard, by shard id."""
        try:
            names = self.fs.find(self.root)
        except FileNotFoundError:
            return {}
        summaries = {}
        for name in names:
            if name.endswith(".json"):
                try:
                    summary = json.loads(self.fs.cat_file(name))
                    summaries[summary["shard_id"]] = summary
                except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
                    raise ValueError(
                        f"checkpoint {name} is not a shard summary ({type(error).__name__}): "
                        "remove the state directory, or scan without --resume"
                    ) from None
        return summaries

    def load_bundle_bytes(self, shard_id: str) -> bytes:
        """Return a checkpointed bundle. Raises BundleMismatchError when it was made with other settings."""
        path = self._path(shard_id, ".bundle")
        data = self.fs.cat_file(path)
        try:
            difference = Bundle.from_bytes(data).settings.mismatch(self.settings)
        except BundleMismatchError as error:
            difference = str(error)
        if difference is not None:
            raise BundleMismatchError(
                f"checkpoint {path} was made with other settings than this scan (checkpoint != scan: {difference}): "
                "scan without --resume, or delete the checkpoints under the state directory"
            )
        return data


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
