"""A one-line progress display on stderr, shown only when stderr is a terminal."""

import sys
import time


class Progress:
    """Shards done, documents, throughput and failures, redrawn at most 5 times a second."""

    def __init__(self, total_shards: int, enabled: bool | None = None, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = total_shards
        self.done = 0
        self.failed = 0
        self.documents = 0
        self.bytes = 0
        self.started = time.monotonic()
        self._last_draw = 0.0

    def shard_done(self, summary: dict) -> None:
        self.done += 1
        self.documents += summary["documents"]
        self.bytes += summary["bytes"]
        self._draw()

    def shard_failed(self) -> None:
        self.failed += 1
        self._draw()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.2:
            return
        self._last_draw = now
        rate = self.bytes / max(now - self.started, 1e-9) / 1e6
        self.stream.write(
            f"\rshards {self.done + self.failed}/{self.total} | documents {self.documents:,} | "
            f"{rate:.1f} MB/s | failures {self.failed}  "
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
