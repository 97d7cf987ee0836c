"""Group keys for --group-by, and group counters in bundles."""

import datetime
import io

import numpy as np
import pyarrow as pa
import pytest

from scanner.accumulator import ShardAccumulator
from scanner.bundle import Bundle, merge_all
from scanner.grouping import UNKNOWN, group_codes, registered_domain
from scanner.progress import Progress
from scanner.settings import SketchSettings

UTC = datetime.timezone.utc


def record_batch(texts, urls, dates) -> pa.RecordBatch:
    return pa.record_batch(
        {
            "text": pa.array(texts, type=pa.large_string()),
            "url": pa.array(urls, type=pa.string()),
            "date": pa.array(dates, type=pa.timestamp("s", tz="UTC")),
            "record": pa.array(range(len(texts)), type=pa.int64()),
        }
    )


@pytest.mark.parametrize(
    ("url", "domain"),
    [
        ("https://www.bbc.co.uk/news/1", "bbc.co.uk"),
        ("http://an.wikipedia.org/wiki/Escopete", "wikipedia.org"),
        ("HTTP://Example.COM./path", "example.com"),
        ("<http://example.org/wget-wrapped>", "example.org"),
        ("http://192.168.10.4:8080/x", "192.168.10.4"),
        ("http://localhost/x", "localhost"),
        ("not a url", UNKNOWN),
        ("www.example.net/no-scheme", "example.net"),
    ],
)
def test_registered_domain(url, domain):
    assert registered_domain(url) == domain


def test_snapshot_groups_by_utc_month():
    batch = record_batch(
        ["a", "b", "c"],
        [None, None, None],
        [datetime.datetime(2024, 5, 31, 23, tzinfo=UTC), None, datetime.datetime(2019, 7, 1, tzinfo=UTC)],
    )

    codes, names = group_codes(batch, "snapshot")

    assert [names[code] for code in codes] == ["2024-05", UNKNOWN, "2019-07"]


def test_domain_groups():
    batch = record_batch(["a", "b"], ["https://news.example.co.uk/1", None], [None, None])

    codes, names = group_codes(batch, "domain")

    assert [names[code] for code in codes] == ["example.co.uk", UNKNOWN]


def test_no_grouping():
    assert group_codes(record_batch(["a"], [None], [None]), "none") is None


def test_group_counters_merge_across_shards():
    settings = SketchSettings(hll_precision=8, countmin_blocks_log2=6)
    first = ShardAccumulator(settings, "one")
    first.add_texts(pa.array(["a b", "", "c"]), (np.array([0, 0, 1]), ["x.org", "y.org"]))
    second = ShardAccumulator(settings, "two")
    second.add_texts(pa.array(["d e f"]), (np.array([0]), ["y.org"]))

    merged = merge_all([first.finish(), second.finish()])
    restored = Bundle.from_bytes(merged.to_bytes())

    assert restored.groups["x.org"].tolist() == [2, 1, 3, 2]
    assert restored.groups["y.org"].tolist() == [2, 0, 6, 4]


class FakeTerminal(io.StringIO):
    def __init__(self, terminal: bool):
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


def test_progress_draws_on_a_terminal():
    stream = FakeTerminal(terminal=True)
    progress = Progress(2, stream=stream)

    progress.shard_done({"documents": 5, "bytes": 100})
    progress.close()

    assert "shards 1/2" in stream.getvalue()
    assert "documents 5" in stream.getvalue()


def test_progress_is_silent_without_a_terminal():
    stream = FakeTerminal(terminal=False)
    progress = Progress(2, stream=stream)

    progress.shard_done({"documents": 5, "bytes": 100})
    progress.close()

    assert stream.getvalue() == ""
