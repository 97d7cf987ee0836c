"""Counted skips, warnings and counters from reading one shard.

A `ReadReport` is a small mergeable value: the runner returns one per shard
and the driver merges them into the `errors` section of `result.json`.
It serializes to plain JSON through `to_dict`/`from_dict`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

MAX_SAMPLES = 20
MAX_WARNINGS = 50
MAX_DETAIL_CHARS = 300


class ReadReport:
    """Skipped records, warnings and counters for one shard (or several, once merged).

    `skipped` counts skipped records by reason (a snake_case key such as
    "invalid_json"). `samples` keeps the first MAX_SAMPLES skips with their
    location. `counters` counts events that are not skips, such as
    "blank_lines". `truncated` is True when an object ended early or became
    unreadable, so records after that point are missing.
    """

    def __init__(self) -> None:
        self.skipped: dict[str, int] = {}
        self.samples: list[dict[str, str]] = []
        self.warnings: list[str] = []
        self.dropped_warnings = 0
        self.counters: dict[str, int] = {}
        self.truncated = False

    def skip(self, reason: str, location: str, detail: str = "") -> None:
        """Record one skipped record at `location`, such as "path:line 17" or "path@offset 1234"."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append({"reason": reason, "location": location, "detail": detail[:MAX_DETAIL_CHARS]})

    def warn(self, message: str) -> None:
        """Record a warning once. Warnings beyond MAX_WARNINGS are only counted, and repeats are dropped."""
        if message in self.warnings:
            return
        if len(self.warnings) >= MAX_WARNINGS:
            self.dropped_warnings += 1
            return
        self.warnings.append(message)

    def count(self, key: str, n: int = 1) -> None:
        """Add `n` to the counter `key` (an event that is not a skip, such as "blank_lines")."""
        self.counters[key] = self.counters.get(key, 0) + n

    @property
    def skipped_total(self) -> int:
        """Number of skipped records over all reasons."""
        return sum(self.skipped.values())

    def merge(self, other: ReadReport) -> ReadReport:
        """Return a new report with the counts of both. Samples and warnings of `self` come first."""
        merged = ReadReport()
        merged.skipped = dict(Counter(self.skipped) + Counter(other.skipped))
        merged.counters = dict(Counter(self.counters) + Counter(other.counters))
        merged.samples = (self.samples + other.samples)[:MAX_SAMPLES]
        merged.dropped_warnings = self.dropped_warnings + other.dropped_warnings
        for message in self.warnings + other.warnings:
            merged.warn(message)
        merged.truncated = self.truncated or other.truncated
        return merged

    def to_dict(self) -> dict[str, Any]:
        return {
            "skipped": dict(sorted(self.skipped.items())),
            "samples": [dict(sample) for sample in self.samples],
            "warnings": list(self.warnings),
            "dropped_warnings": self.dropped_warnings,
            "counters": dict(sorted(self.counters.items())),
            "truncated": self.truncated,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReadReport:
        """Rebuild a report from `to_dict` output. Raises ValueError on unknown keys."""
        unknown = set(data) - {"skipped", "samples", "warnings", "dropped_warnings", "counters", "truncated"}
        if unknown:
            raise ValueError(f"invalid read report: unknown keys {sorted(unknown)}")
        report = cls()
        report.skipped = {str(key): int(value) for key, value in data.get("skipped", {}).items()}
        report.samples = [
            {"reason": str(sample["reason"]), "location": str(sample["location"]), "detail": str(sample.get("detail", ""))}
            for sample in data.get("samples", [])
        ]
        report.warnings = [str(message) for message in data.get("warnings", [])]
        report.dropped_warnings = int(data.get("dropped_warnings", 0))
        report.counters = {str(key): int(value) for key, value in data.get("counters", {}).items()}
        report.truncated = bool(data.get("truncated", False))
        return report

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReadReport):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (
            f"ReadReport(skipped={self.skipped}, counters={self.counters}, "
            f"warnings={len(self.warnings)}, truncated={self.truncated})"
        )
