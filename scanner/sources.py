"""List the objects that a scan reads from source URLs, paths, globs and manifests.

A source is one of:
- a local file or `file://` URL, or an object URL such as `s3://bucket/key`;
- a directory or prefix (`s3://bucket/prefix/`): every object under it, recursively;
- a glob with `*`, `?`, `[...]` or `**`: every matching object, and every object
  under each matching directory. As in fsspec, and unlike the shell, `*` also
  matches names that start with a dot;
- `@MANIFEST`: a text file (local or remote) with one source per line. Blank lines
  and lines starting with `#` are skipped, and relative entries are resolved
  against the manifest's directory.

Zero-byte objects are kept (they become shards with no records), but S3
directory markers (keys ending in "/") are skipped. Hidden files are listed like
any other file.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import fsspec

from scanner.storage import StorageOptions, filesystem_for, protocol_of, redact_url, url_for

logger = logging.getLogger(__name__)

_GLOB_CHARACTERS = ("*", "?", "[")
_MANIFEST_PREFIX = "@"


class SourceError(ValueError):
    """A source that is invalid or matches no objects."""


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object: its URL, size in bytes, ETag and modification time (Unix seconds).

    `url` is protocol://path for remote objects and an absolute path for local files.
    """

    url: str
    size: int
    etag: str | None = None
    mtime: float | None = None


def list_objects(sources: Iterable[str], storage: StorageOptions) -> list[ObjectInfo]:
    """List every object that `sources` name, sorted by URL and without duplicates.

    Raises SourceError for a source or manifest entry that matches no objects.
    Other storage errors (connection failures, timeouts) propagate unchanged.
    """
    source_list = list(sources)
    if not source_list:
        raise SourceError("no sources given: pass at least one path, URL, glob or @MANIFEST")

    objects_by_url: dict[str, ObjectInfo] = {}
    for source in source_list:
        for info in _expand_source(source.strip(), storage, manifests_open=()):
            objects_by_url.setdefault(info.url, info)

    objects = [objects_by_url[url] for url in sorted(objects_by_url)]
    logger.info("listed %d objects from %d sources", len(objects), len(source_list))
    return objects


def list_location(source: str, storage: StorageOptions) -> list[ObjectInfo]:
    """List the objects at one path, URL, directory or glob; return an empty list when nothing matches.

    Unlike `list_objects`, a prefix without objects is no error, because a
    monitored prefix may still be empty.
    """
    return _expand_location(source, storage)


def _expand_source(
    source: str, storage: StorageOptions, manifests_open: tuple[str, ...]
) -> list[ObjectInfo]:
    if not source:
        raise SourceError("empty source: pass a path, URL, glob or @MANIFEST")
    if source.startswith(_MANIFEST_PREFIX):
        return _expand_manifest(source[len(_MANIFEST_PREFIX) :], storage, manifests_open)

    objects = _expand_location(source, storage)
    if not objects:
        raise SourceError(f"source {redact_url(source)!r} matched no objects: {_hint_for(source)}")
    return objects


def _expand_manifest(
    manifest: str, storage: StorageOptions, manifests_open: tuple[str, ...]
) -> list[ObjectInfo]:
    fs, path = filesystem_for(manifest, storage)
    manifest_url = url_for(fs, path)
    display_url = redact_url(manifest_url)
    if manifest_url in manifests_open:
        raise SourceError(f"manifest {display_url!r} includes itself: remove the @ line that leads back to it")

    try:
        text = fs.cat_file(path).decode("utf-8")
    except (FileNotFoundError, IsADirectoryError) as error:
        raise SourceError(f"manifest {display_url!r} not found: check the path after '@'") from error
    except UnicodeDecodeError as error:
        raise SourceError(
            f"manifest {display_url!r} is not UTF-8 text: write one path or URL per line"
        ) from error

    objects: list[ObjectInfo] = []
    entry_count = 0
    for line_number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        entry_count += 1
        resolved = _resolve_entry(entry, manifest_url)
        try:
            objects.extend(_expand_source(resolved, storage, manifests_open + (manifest_url,)))
        except SourceError as error:
            raise SourceError(f"{display_url} line {line_number}: {error}") from error

    if entry_count == 0:
        raise SourceError(
            f"manifest {display_url!r} lists no sources: write one path or URL per line "
            "(blank lines and lines starting with # are skipped)"
        )
    return objects


def _resolve_entry(entry: str, manifest_url: str) -> str:
    """Resolve a manifest entry: relative entries are relative to the manifest's directory."""
    is_manifest = entry.startswith(_MANIFEST_PREFIX)
    target = entry[len(_MANIFEST_PREFIX) :] if is_manifest else entry
    protocol, _ = fsspec.core.split_protocol(target)
    if protocol is None and not os.path.isabs(target) and not target.startswith("~"):
        manifest_protocol, manifest_path = fsspec.core.split_protocol(manifest_url)
        if protocol_of(manifest_url) is None:
            target = os.path.normpath(os.path.join(os.path.dirname(manifest_url), target))
        else:
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(manifest_path), target))
            target = f"{manifest_protocol}://{joined}"
    return _MANIFEST_PREFIX + target if is_manifest else target


def _expand_location(source: str, storage: StorageOptions) -> list[ObjectInfo]:
    """List the objects at one path, URL, directory or glob (not a manifest)."""
    fs, path = filesystem_for(source, storage)
    # Listings are cached per filesystem instance, and fsspec shares instances, so a
    # repeated listing (a monitor polling a prefix) would otherwise miss new objects.
    fs.invalidate_cache()

    try:
        return _list_matches(fs, path)
    except FileNotFoundError:
        return []
    except PermissionError as error:
        raise SourceError(
            f"permission denied listing {redact_url(source)!r}: {error}. "
            "Check the credentials, or pass --anon for a public bucket"
        ) from error


def _list_matches(fs: fsspec.AbstractFileSystem, path: str) -> list[ObjectInfo]:
    if any(character in path for character in _GLOB_CHARACTERS):
        matches = fs.glob(path, detail=True)
    else:
        matches = {path: fs.info(path)}

    objects: list[ObjectInfo] = []
    for name, info in sorted(matches.items()):
        if info.get("type") == "directory":
            for found_name, found_info in sorted(fs.find(name, detail=True).items()):
                if not _is_directory_marker(found_name, found_info):
                    objects.append(_object_info(fs, found_name, found_info))
        elif not _is_directory_marker(name, info):
            objects.append(_object_info(fs, name, info))
    return objects


def _is_directory_marker(name: str, info: Mapping[str, Any]) -> bool:
    return name.endswith("/") or str(info.get("name", "")).endswith("/") or info.get("type") == "directory"


def _object_info(fs: fsspec.AbstractFileSystem, name: str, info: Mapping[str, Any]) -> ObjectInfo:
    size = info.get("size")
    if size is None:
        size = fs.size(name)
    url = url_for(fs, name)
    if size is None:
        raise SourceError(
            f"object {redact_url(url)!r} has no known size: the server sends no Content-Length, "
            "so copy it to storage that does"
        )
    return ObjectInfo(url=url, size=int(size), etag=_etag_of(info), mtime=_mtime_of(info))


def _etag_of(info: Mapping[str, Any]) -> str | None:
    for field in ("ETag", "etag", "md5Hash"):
        value = info.get(field)
        if value:
            return str(value).strip('"')
    return None


def _mtime_of(info: Mapping[str, Any]) -> float | None:
    """Return the modification time in Unix seconds from whichever field the filesystem uses."""
    for field in ("mtime", "LastModified", "last_modified", "updated", "modified"):
        value = info.get(field)
        if value is None:
            continue
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.timezone.utc)
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return _mtime_of({"mtime": parsed})
    return None


def _hint_for(source: str) -> str:
    if protocol_of(source) is None:
        return "check that the path exists and that a glob matches at least one file"
    return (
        "check the bucket and prefix, that the credentials can list them, "
        "and --endpoint-url for storage other than AWS"
    )
