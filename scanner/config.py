"""Configuration of the `scan` command, validated before any work starts.

One pydantic model per command; storage and sketch settings are shared
sub-models. Every error names the field, the value and the fix.
"""

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from scanner.formats.options import ReadOptions
from scanner.settings import SketchSettings
from scanner.storage import StorageOptions

GroupBy = Literal["none", "snapshot", "domain"]


class ReadSettings(BaseModel):
    """Record-reading settings, the fields of `scanner.formats.ReadOptions`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["auto", "jsonl", "parquet", "warc", "wet", "arc", "text"] = "auto"
    text_field: str = Field("text", min_length=1)
    url_field: str | None = None
    date_field: str | None = None
    lines_as_documents: bool = False
    batch_bytes: int = Field(8 << 20, gt=0)
    max_record_bytes: int = Field(64 << 20, gt=0)

    def options(self) -> ReadOptions:
        return ReadOptions(**self.model_dump())


class ScanConfig(BaseModel):
    """Everything `corpus-scanner scan` needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: list[str] = Field(min_length=1, description="paths, globs, URLs or @manifest files")
    out: str = Field(description="output directory, local or in object storage")
    read: ReadSettings = ReadSettings()
    sketch: SketchSettings = SketchSettings()
    storage: StorageOptions = StorageOptions()
    group_by: GroupBy = "none"
    address: str | None = Field(None, description="Ray cluster address; None starts an embedded local Ray")
    num_workers: int | None = Field(None, ge=1, le=4096, description="parallel shard tasks; None: CPUs")
    state_dir: str | None = Field(None, description="checkpoint directory; None: OUT/state")
    resume: bool = False
    max_errors: int | None = Field(
        0, ge=0, description="skipped records tolerated before the exit code reports failure; None: no limit"
    )
    target_shard_bytes: int = Field(256 << 20, gt=0)
    top_ngrams: int = Field(50, ge=1, le=10_000)
    profile: str | None = Field(None, description="reference profile for the synthetic-share estimate")
    registry: str | None = Field(None, description="registry of generated datasets for the contamination estimate")
    near_duplicate_threshold: float = Field(
        0.8, gt=0.0, le=1.0, description="estimated Jaccard similarity at or above which a document is a near duplicate"
    )
    task_retries: int = Field(3, ge=0, le=20, description="retries of a shard whose worker crashed")
    pack_shards: bool = Field(
        True, description="scan many small shards in fewer tasks, several consecutive shards per task"
    )

    @field_validator("out", "state_dir", "profile", "registry")
    @classmethod
    def _absolute_local_path(cls, path: str | None) -> str | None:
        # Ray workers run in another directory than the driver, so a relative local
        # path must be made absolute here, where it was given.
        if path is None or "://" in path:
            return path
        return os.path.abspath(path)

    @field_validator("sources")
    @classmethod
    def _check_sources(cls, sources: list[str]) -> list[str]:
        empty = [source for source in sources if not source.strip()]
        if empty:
            raise ValueError("a source is empty: give a path, glob, URL or @manifest file")
        return sources

    @property
    def resolved_state_dir(self) -> str:
        return self.state_dir or self.out.rstrip("/") + "/state"
