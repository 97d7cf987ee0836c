"""ReadReport: counting, bounds, merging and JSON round trips."""

import json

import pytest

from scanner.formats.report import MAX_SAMPLES, MAX_WARNINGS, ReadReport


def test_report_skip_counts_by_reason():
    report = ReadReport()
    report.skip("invalid_json", "a.jsonl:line 3", "Expecting value")
    report.skip("invalid_json", "a.jsonl:line 9")
    report.skip("missing_text_field", "a.jsonl:line 4")

    assert report.skipped == {"invalid_json": 2, "missing_text_field": 1}
    assert report.samples[0] == {"reason": "invalid_json", "location": "a.jsonl:line 3", "detail": "Expecting value"}


def test_report_samples_are_bounded():
    report = ReadReport()
    for line in range(MAX_SAMPLES + 5):
        report.skip("invalid_json", f"a.jsonl:line {line}")

    assert report.skipped["invalid_json"] == MAX_SAMPLES + 5
    assert len(report.samples) == MAX_SAMPLES


def test_report_warnings_deduplicated_and_bounded():
    report = ReadReport()
    report.warn("same")
    report.warn("same")
    for index in range(MAX_WARNINGS + 3):
        report.warn(f"warning {index}")

    assert report.warnings.count("same") == 1
    assert len(report.warnings) == MAX_WARNINGS
    assert report.dropped_warnings == 4


def test_report_merge_adds_counts():
    first = ReadReport()
    first.skip("invalid_json", "a:line 1")
    first.count("blank_lines", 2)
    second = ReadReport()
    second.skip("invalid_json", "b:line 1")
    second.skip("null_text", "b:line 2")
    second.count("blank_lines")
    second.truncated = True

    merged = first.merge(second)

    assert merged.skipped == {"invalid_json": 2, "null_text": 1}
    assert merged.counters == {"blank_lines": 3}
    assert merged.truncated is True
    assert [sample["location"] for sample in merged.samples] == ["a:line 1", "b:line 1", "b:line 2"]


def test_report_merge_leaves_inputs_unchanged():
    first = ReadReport()
    first.count("blank_lines")
    second = ReadReport()
    second.count("blank_lines")

    first.merge(second)

    assert first.counters == {"blank_lines": 1}
    assert second.counters == {"blank_lines": 1}


def test_report_merge_is_associative_for_counts():
    reports = []
    for index in range(3):
        report = ReadReport()
        report.skip("invalid_json", f"f{index}:line 1")
        report.count("blank_lines", index)
        reports.append(report)

    left = reports[0].merge(reports[1]).merge(reports[2])
    right = reports[0].merge(reports[1].merge(reports[2]))

    assert left == right


def test_report_json_round_trip():
    report = ReadReport()
    report.skip("truncated_record", "x.warc.gz#record 0", "read 10 of 20 bytes")
    report.warn("x.jsonl.zst: zstd file name but the content is uncompressed")
    report.count("decode_replacements", 3)
    report.truncated = True

    restored = ReadReport.from_dict(json.loads(json.dumps(report.to_dict())))

    assert restored == report
    assert restored.truncated is True


def test_report_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown keys"):
        ReadReport.from_dict({"skipped": {}, "pickle": "x"})
