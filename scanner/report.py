"""`report.html`: one static page that summarizes a scan for people.

The page works offline: it has no scripts and loads no external style sheet,
font or image, and its Content-Security-Policy forbids all of them. Text that
comes from the corpus or the command line (n-grams, URLs, error messages,
group names) goes through `html.escape`, because n-grams come from untrusted
documents.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

from scanner.bundle import GROUP_COUNTERS
from scanner.charts import interval_bar_chart
from scanner.result import ScanResult

# Rows per table on the page. tables/*.parquet and result.json contain all rows.
MAX_SHARD_ROWS = 100
MAX_GROUP_ROWS = 50
MAX_WARNING_ROWS = 50

_BAR_WIDTH = 240
_BAR_HEIGHT = 14

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1a1a1a; max-width: 72rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { padding: 0.2rem 0.6rem; text-align: left; vertical-align: top; border-bottom: 1px solid #eee; }
td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; }
.headline td { font-size: 1.1rem; }
.problem { background: #fff3cd; border: 1px solid #e0b000; padding: 0.5rem 1rem; }
.ngram-tables { display: flex; flex-wrap: wrap; gap: 1.5rem; }
code { white-space: pre-wrap; word-break: break-all; }
.note { color: #555; font-size: 0.9rem; }
"""


def render_report(result: ScanResult, shard_rows: Sequence[dict] = ()) -> str:
    """Render the HTML page for a result, with `shard_rows` from the shards table."""
    sections = [
        _headline(result),
        _ngram_section(result),
        _top_ngram_section(result),
        _feature_section(result),
        _shard_section(result, shard_rows),
        _error_section(result),
        _share_section(result),
        _indicator_section(result),
        _contamination_section(result),
        _group_section(result),
    ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
            "<title>corpus-scanner report</title>",
            f"<style>{_STYLE}</style></head><body>",
            *sections,
            f'<p class="note">corpus-scanner {_text(result.scanner_version)}, '
            f"result schema {result.schema_version}.</p>",
            "</body></html>",
        ]
    )


def _headline(result: ScanResult) -> str:
    rows = [
        ("documents", _integer(result.documents)),
        ("empty documents", _integer(result.empty_documents)),
        ("text bytes", _integer(result.bytes)),
        ("tokens", _integer(result.tokens)),
        ("input", f"{_integer(result.input.objects)} objects, {_integer(result.input.bytes)} bytes"),
        ("shards", f"{_integer(result.shards.completed)} completed, {_integer(result.shards.failed)} failed "
                   f"of {_integer(result.shards.total)}"),
        ("skipped records", _integer(result.errors.count)),
        ("seconds", f"{result.seconds:.1f}"),
    ]
    parts = ["<h1>corpus-scanner report</h1>"]
    if result.problems:
        items = "".join(f"<li>{_text(problem)}</li>" for problem in result.problems)
        parts.append(f'<div class="problem"><strong>Incomplete scan</strong><ul>{items}</ul></div>')
    sources = ", ".join(f"<code>{_text(source)}</code>" for source in result.sources)
    parts.append(f"<p>Sources: {sources}</p>")
    body = "".join(f'<tr><th>{label}</th><td class="number">{value}</td></tr>' for label, value in rows)
    parts.append(f'<table class="headline">{body}</table>')
    return "\n".join(parts)


def _share_text(share) -> str:
    if share is None:
        return "-"
    low, high = share.ci95
    return f"{share.estimate:.3f} [{low:.3f}, {high:.3f}]"


def _share_section(result: ScanResult) -> str:
    share = result.synthetic_share
    if share is None:
        return ""
    parts = ["<h2>Synthetic share</h2>"]
    if share.fit.warning:
        parts.append(f'<div class="problem"><strong>Poor fit</strong><p>{_text(share.fit.warning)}</p></div>')
    rows = [["all generators", _share_text(share)]]
    rows += [[_text(name), _share_text(value)] for name, value in share.generators.items()]
    rows.append(["plain maximum likelihood (uncalibrated)", f"{share.plain_mle:.3f}"])
    parts.append(_table(["", "estimate [95% interval]"], rows, numeric_from=1))
    parts.append(
        f"<p>{_integer(share.documents)} documents scored, {_integer(share.documents_without_vocabulary)} "
        f"without any profile word; fit p-value {share.fit.p_value:.3g}.</p>"
    )
    lineage = result.lineage
    if lineage is not None:
        rows = [["human", _share_text(lineage.human)]]
        rows += [[f"generator {_text(name)}", _share_text(part)] for name, part in lineage.generators.items()]
        rows.append(["synthetic, generator not named", _share_text(lineage.unattributed_synthetic)])
        parts.append("<h3>Lineage</h3>")
        parts.append(_table(["origin", "share [95% interval]"], rows, numeric_from=1))
        if not lineage.attributed:
            parts.append('<p class="note">The profile does not fit, so no generator is named.</p>')
    return "\n".join(parts)


def _contamination_section(result: ScanResult) -> str:
    contamination = result.contamination
    if contamination is None:
        return ""
    rows = [
        [
            _text(name),
            _integer(item.registered_documents),
            f"{item.near_duplicate_share:.4f}",
            f"{item.long_ngram_share:.4f}",
            f"{item.ngram_false_positive_rate:.2g}",
            f"{item.false_match_share_bound:.2g}",
        ]
        for name, item in contamination.registry.items()
    ]
    headers = [
        "dataset", "registered documents", "near-duplicate share", "long n-gram share",
        "false-positive rate per n-gram", "false-match share bound",
    ]
    return (
        "<h2>Contamination</h2>\n"
        f"<p>Registry {_text(contamination.registry_url)}. A document is a near duplicate when its estimated "
        f"Jaccard similarity with a registered document is at least {contamination.near_duplicate_threshold:g}. "
        "It contains a long n-gram when one of its word n-grams tests positive in the dataset's Bloom filter. "
        "False positives alone flag at most the bound's share of documents, in expectation.</p>\n"
        + _table(headers, rows, numeric_from=1)
    )


def _ngram_section(result: ScanResult) -> str:
    rows = []
    for order, stats in result.ngrams.items():
        ratio = result.indicators.distinct_ratio.get(order)
        rows.append(
            [
                _text(order),
                _integer(stats.total),
                _integer(round(stats.distinct)),
                f"{stats.distinct_rse:.2%}",
                "" if ratio is None else f"{ratio:.4f}",
            ]
        )
    headers = ["order", "total", "distinct (estimate)", "relative std. error", "distinct / total"]
    table = _table(headers, rows, numeric_from=1)
    return "<h2>N-grams</h2>\n" + table


def _top_ngram_section(result: ScanResult) -> str:
    parts = ["<h2>Top n-grams</h2>"]
    bound = next(iter(result.top_ngrams_error_bound.values()), 0.0)
    parts.append(
        f'<p class="note">Counts are Count-Min estimates: never below the true count, and above it by at most '
        f"{_integer(round(bound))} with probability at least 1 - 1/e.</p>"
    )
    parts.append('<div class="ngram-tables">')
    for order, items in result.top_ngrams.items():
        largest = max((item.count for item in items), default=0)
        rows = [
            [str(rank), f"<code>{_text(item.ngram)}</code>", _integer(item.count), _bar(item.count, largest)]
            for rank, item in enumerate(items, start=1)
        ]
        table = _table(["#", "n-gram", "count", ""], rows, numeric_from=2)
        parts.append(f"<div><h3>order {_text(order)}</h3>{table}</div>")
    parts.append("</div>")
    return "\n".join(parts)


def _feature_section(result: ScanResult) -> str:
    rows = []
    for name, summary in result.features.items():
        values = [summary.p50, summary.p90, summary.p99, summary.max]
        largest = max((value for value in values if value is not None), default=0.0)
        bars = "<br>".join(
            f"{label} {_bar(value or 0.0, largest)}" for label, value in zip(("p50", "p90", "p99", "max"), values)
        )
        numbers = (summary.p50, summary.p90, summary.p99, summary.mean, summary.min, summary.max)
        rows.append([_text(name), _integer(summary.count), *(_decimal(value) for value in numbers), bars])
    headers = ["feature", "documents", "p50", "p90", "p99", "mean", "min", "max", "p50 / p90 / p99 / max"]
    note = (
        '<p class="note">Quantiles are within the relative accuracy of the quantile sketch. '
        "Mean, min and max are exact.</p>"
    )
    return "<h2>Per-document features</h2>\n" + note + _table(headers, rows, numeric_from=1)


def _shard_section(result: ScanResult, shard_rows: Sequence[dict]) -> str:
    parts = ["<h2>Shards</h2>"]
    if result.shards.failures:
        rows = [
            [f"<code>{_text(failure.shard_id)}</code>", f"<code>{_text(failure.url)}</code>", _text(failure.error)]
            for failure in result.shards.failures
        ]
        parts.append("<h3>Failed shards</h3>" + _table(["shard", "url", "error"], rows))
    rows = [
        [
            f"<code>{_text(row['shard_id'])}</code>",
            _text(row["status"]),
            _text(row["part"]),
            _optional_integer(row.get("documents")),
            _optional_integer(row.get("tokens")),
            _optional_integer(row.get("skipped")),
            "" if row.get("seconds") is None else f"{row['seconds']:.2f}",
        ]
        for row in list(shard_rows)[:MAX_SHARD_ROWS]
    ]
    parts.append(_table(["shard", "status", "part", "documents", "tokens", "skipped", "seconds"], rows, numeric_from=3))
    parts.append(_more_note(len(shard_rows), MAX_SHARD_ROWS, "tables/shards.parquet"))
    if result.truncated_objects:
        items = "".join(f"<li><code>{_text(url)}</code></li>" for url in result.truncated_objects)
        parts.append(f"<h3>Objects that ended early</h3><ul>{items}</ul>")
    return "\n".join(parts)


def _error_section(result: ScanResult) -> str:
    errors = result.errors
    parts = [f"<h2>Skipped records: {_integer(errors.count)}</h2>"]
    if errors.by_reason:
        rows = [[_text(reason), _integer(count)] for reason, count in errors.by_reason.items()]
        parts.append(_table(["reason", "records"], rows, numeric_from=1))
    if errors.samples:
        rows = [[_text(s.reason), f"<code>{_text(s.location)}</code>", _text(s.detail)] for s in errors.samples]
        parts.append("<h3>First skipped records</h3>" + _table(["reason", "location", "detail"], rows))
    if result.warnings:
        items = "".join(f"<li>{_text(warning)}</li>" for warning in result.warnings[:MAX_WARNING_ROWS])
        parts.append(f"<h3>Warnings</h3><ul>{items}</ul>")
    return "\n".join(parts)


# Indicators on the page: (field, label, field of its error, what the error is).
_INDICATORS = (
    ("unigram_entropy_bits", "unigram entropy (bits)", "unigram_entropy_se", "std. error"),
    ("hapax_share", "words seen once, share of distinct words", "hapax_share_se", "std. error"),
    ("hapax_token_share", "words seen once, share of tokens", "hapax_token_share_se", "std. error"),
    ("tail_mass", "tokens outside the top 100 words", "tail_mass_error_bound", "lower bound within"),
    ("zipf_exponent", "Zipf exponent (top 100 ranks)", "zipf_exponent_se", "std. error"),
    ("near_duplicate_rate", "documents with a near-duplicate", "near_duplicate_rate_se", "std. error"),
    ("compression_ratio", "compression ratio (zlib bytes / text bytes)", "compression_ratio_se", "std. error"),
    ("profile_divergence_bits", "divergence from the profile's human text (bits)", "profile_divergence_se", "std. error"),
)
_GROUP_INDICATORS = (
    ("unigram_entropy_bits", "entropy"),
    ("hapax_token_share", "once-seen tokens"),
    ("tail_mass", "tail mass"),
    ("near_duplicate_rate", "near-duplicates"),
    ("compression_ratio", "compression"),
    ("profile_divergence_bits", "profile divergence"),
)


def _indicator_section(result: ScanResult) -> str:
    indicators = result.indicators
    methods = indicators.methods or {}
    rows = []
    for field, label, error_field, error_kind in _INDICATORS:
        value = getattr(indicators, field)
        if value is None:
            continue
        error = getattr(indicators, error_field)
        error_text = "" if error is None else f"{error_kind} {_decimal(error)}"
        rows.append([_text(label), _decimal(value), _text(error_text), f'<span class="note">{_text(methods.get(field, ""))}</span>'])
    parts = ["<h2>Diversity and collapse indicators</h2>"]
    parts.append(_table(["indicator", "value", "error", "method"], rows, numeric_from=1))
    groups = [(name, counts) for name, counts in sorted(result.groups.items()) if counts.indicators is not None]
    if groups:
        orders = list(result.ngrams)
        order = orders[min(2, len(orders) - 1)] if orders else None
        headers = [_text(result.group_by)]
        if order is not None:
            headers.append(f"distinct / total, order {_text(order)}")
        headers += [label for _, label in _GROUP_INDICATORS]
        group_rows = []
        for name, counts in groups[:MAX_GROUP_ROWS]:
            row = [_text(name)]
            if order is not None:
                row.append(_decimal(counts.indicators.distinct_ratio.get(order)))
            row += [_decimal(getattr(counts.indicators, field)) for field, _ in _GROUP_INDICATORS]
            group_rows.append(row)
        parts.append(f"<h3>By {_text(result.group_by)}</h3>")
        parts.append(_table(headers, group_rows, numeric_from=1))
        parts.append(_more_note(len(groups), MAX_GROUP_ROWS, "result.json"))
    return "\n".join(parts)


def _group_section(result: ScanResult) -> str:
    if result.group_by == "none":
        return ""
    ranked = sorted(result.groups.items(), key=lambda item: (-item[1].documents, item[0]))
    with_share = any(counts.synthetic_share is not None for _, counts in ranked)
    rows = []
    for name, counts in ranked[:MAX_GROUP_ROWS]:
        row = [_text(name), *(_integer(getattr(counts, counter)) for counter in GROUP_COUNTERS)]
        if with_share:
            row.append(_share_text(counts.synthetic_share))
        rows.append(row)
    headers = [_text(result.group_by), "documents", "empty", "bytes", "tokens"]
    if with_share:
        headers.append("synthetic share (95% interval)")
    table = _table(headers, rows, numeric_from=1)
    note = _more_note(len(ranked), MAX_GROUP_ROWS, "tables/groups.parquet")
    chart = _group_share_chart(result, ranked) if with_share else ""
    return f"<h2>Groups by {_text(result.group_by)}</h2>\n{chart}{table}{note}"


def _group_share_chart(result: ScanResult, ranked: Sequence) -> str:
    """Return an inline SVG bar chart of the synthetic share per group, largest groups first."""
    items = [
        (name, counts.synthetic_share.estimate, *counts.synthetic_share.ci95)
        for name, counts in ranked[:MAX_GROUP_ROWS]
        if counts.synthetic_share is not None
    ]
    return interval_bar_chart(items, title=f"Synthetic share per {result.group_by} (bars: estimate, whiskers: 95% interval)")


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric_from: int | None = None) -> str:
    """Build a table from cells that are already HTML; columns from `numeric_from` on are right-aligned."""

    def cell(tag: str, index: int, content: str) -> str:
        numeric = numeric_from is not None and index >= numeric_from
        return f'<{tag} class="number">{content}</{tag}>' if numeric else f"<{tag}>{content}</{tag}>"

    head = "".join(cell("th", index, header) for index, header in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(cell("td", index, value) for index, value in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _bar(value: float, largest: float) -> str:
    """Return an inline SVG bar of value / largest times _BAR_WIDTH pixels."""
    share = value / largest if largest > 0 and math.isfinite(value) else 0.0
    width = max(0.0, min(1.0, share)) * _BAR_WIDTH
    return (
        f'<svg width="{_BAR_WIDTH}" height="{_BAR_HEIGHT}" role="img" aria-hidden="true">'
        f'<rect width="{width:.1f}" height="{_BAR_HEIGHT}" fill="#4a7ab5"></rect></svg>'
    )


def _more_note(count: int, limit: int, table: str) -> str:
    if count <= limit:
        return ""
    return f'<p class="note">The first {limit} of {_integer(count)} rows. All rows are in {table}.</p>'


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def _integer(value: int) -> str:
    return f"{value:,}"


def _optional_integer(value: int | None) -> str:
    return "" if value is None else _integer(value)


def _decimal(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
