"""The monitor's trend report: one static HTML page with inline SVG charts over the run history.

Like `report.html`, the page has no scripts and loads nothing, and its
Content-Security-Policy forbids both. Group names, generator names and error
messages are escaped, because group names come from the corpus.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable, Sequence

from scanner.charts import Band, Series, interval_bar_chart, line_chart
from scanner.history import SUCCESSFUL_STATUSES
from scanner.monitor_config import DISTINCT_RATIO_METRICS

# Lines per chart of per-group shares: the groups with the most documents over all runs.
MAX_GROUP_LINES = 8
MAX_HISTORY_ROWS = 200

_INDICATOR_CHARTS = (
    ("unigram_entropy_bits", "Unigram entropy (bits)"),
    ("hapax_token_share", "Words seen once, share of tokens"),
    ("tail_mass", "Tokens outside the top 100 words"),
    ("near_duplicate_rate", "Documents with a near-duplicate"),
    ("compression_ratio", "Compression ratio (zlib bytes / text bytes)"),
    ("zipf_exponent", "Zipf exponent"),
    ("profile_divergence_bits", "Divergence from the profile's human text (bits)"),
)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1a1a1a; max-width: 72rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { padding: 0.2rem 0.6rem; text-align: left; vertical-align: top; border-bottom: 1px solid #eee; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
.alert { background: #fde2e1; border: 1px solid #c0392b; padding: 0.5rem 1rem; }
.note { color: #555; font-size: 0.9rem; }
"""


def render_trend_report(monitor: str, rows: Sequence[dict]) -> str:
    """Render the trend page for the history `rows` (oldest first)."""
    successful = [row for row in rows if row["status"] in SUCCESSFUL_STATUSES]
    x_format = _time_format(successful)
    sections = [
        _summary(monitor, rows),
        _share_section(successful, x_format),
        _group_section(successful, x_format),
        _contamination_section(successful, x_format),
        _indicator_section(successful, x_format),
        _history_table(rows),
    ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
            f"<title>corpus-scanner monitor {_text(monitor)}</title>",
            f"<style>{_STYLE}</style></head><body>",
            *[section for section in sections if section],
            "</body></html>",
        ]
    )


def _summary(monitor: str, rows: Sequence[dict]) -> str:
    parts = [f"<h1>Monitor {_text(monitor)}</h1>"]
    if not rows:
        parts.append("<p>No runs yet.</p>")
        return "\n".join(parts)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    status_text = ", ".join(f"{count} {_text(status)}" for status, count in sorted(counts.items()))
    first, last = rows[0]["started_at"], rows[-1]["started_at"]
    parts.append(f"<p>{len(rows)} runs ({status_text}) from {_time(first)} to {_time(last)} UTC.</p>")
    if rows[-1].get("alerts"):
        items = "".join(f"<li>{_text(alert)}</li>" for alert in rows[-1]["alerts"])
        parts.append(f'<div class="alert"><strong>Alerts in the last run</strong><ul>{items}</ul></div>')
    return "\n".join(parts)


def _share_section(rows: Sequence[dict], x_format: Callable[[float], str]) -> str:
    points = [row for row in rows if row.get("synthetic_share") is not None]
    if not points:
        return '<h2>Synthetic share</h2><p class="note">No run had a profile, so there is no synthetic share.</p>'
    line = Series("all generators", [(_seconds(row), row["synthetic_share"]) for row in points])
    band = Band([(_seconds(row), row["synthetic_share_low"], row["synthetic_share_high"]) for row in points])
    top = min(1.0, max(row["synthetic_share_high"] for row in points) + 0.05)
    charts = [
        line_chart([line], title="Synthetic share with its 95% interval", y_label="share", band=band,
                   y_range=(0.0, top), x_format=x_format)
    ]
    generators = sorted({item["name"] for row in points for item in row.get("generators") or []})
    if generators:
        series = [
            Series(name, [(_seconds(row), _share_of(row.get("generators"), name)) for row in points])
            for name in generators
        ]
        charts.append(line_chart(series, title="Synthetic share per generator", y_label="share",
                                 y_range=(0.0, top), x_format=x_format))
    return "<h2>Synthetic share</h2>\n" + _charts(charts)


def _group_section(rows: Sequence[dict], x_format: Callable[[float], str]) -> str:
    totals: dict[str, int] = {}
    for row in rows:
        for item in row.get("groups") or []:
            totals[item["name"]] = totals.get(item["name"], 0) + (item["documents"] or 0)
    if not totals:
        return ""
    largest = sorted(totals, key=lambda name: (-totals[name], name))[:MAX_GROUP_LINES]
    charts = []
    with_share = [row for row in rows if any(item["estimate"] is not None for item in row.get("groups") or [])]
    if with_share:
        series = [
            Series(name, [(_seconds(row), _share_of(row.get("groups"), name)) for row in with_share])
            for name in largest
        ]
        charts.append(line_chart(series, title="Synthetic share per group", y_label="share",
                                 y_range=(0.0, 1.0), x_format=x_format))
        last = with_share[-1]
        items = [
            (item["name"], item["estimate"], item["low"], item["high"])
            for item in sorted(last.get("groups") or [], key=lambda item: -(item["documents"] or 0))
            if item["estimate"] is not None
        ][:20]
        charts.append(interval_bar_chart(items, title=f"Share per group in run {last['run_id']}"))
    series = [
        Series(name, [(_seconds(row), _documents_of(row.get("groups"), name)) for row in rows]) for name in largest
    ]
    charts.append(line_chart(series, title="Documents per group and run", y_label="documents", x_format=x_format))
    note = f'<p class="note">The {len(largest)} groups with the most documents over all runs.</p>'
    return "<h2>Groups</h2>\n" + note + _charts(charts)


def _contamination_section(rows: Sequence[dict], x_format: Callable[[float], str]) -> str:
    points = [(_seconds(row), row["contamination"]) for row in rows if row.get("contamination") is not None]
    if not points:
        return ""
    chart = line_chart([Series("largest overlap", points)], title="Contamination: largest overlap with a registered dataset",
                       y_label="share", y_range=(0.0, 1.0), x_format=x_format)
    return "<h2>Contamination</h2>\n" + _charts([chart])


def _indicator_section(rows: Sequence[dict], x_format: Callable[[float], str]) -> str:
    charts = []
    for field, title in _INDICATOR_CHARTS:
        points = [(_seconds(row), row.get(field)) for row in rows if row.get(field) is not None]
        if points:
            charts.append(line_chart([Series(field, points)], title=title, x_format=x_format, width=460, height=200))
    distinct = [
        Series(f"order {name.rsplit('_', 1)[1]}", [(_seconds(row), row.get(name)) for row in rows])
        for name in DISTINCT_RATIO_METRICS
        if any(row.get(name) is not None for row in rows)
    ]
    if distinct:
        charts.append(line_chart(distinct, title="Distinct / total n-grams", x_format=x_format, width=460, height=200))
    failed = [(_seconds(row), float(row.get("failed_shards") or 0)) for row in rows]
    if failed:
        charts.append(line_chart([Series("failed shards", failed)], title="Failed shards", x_format=x_format,
                                 width=460, height=200))
    if not charts:
        return ""
    return "<h2>Diversity and collapse indicators</h2>\n" + _charts(charts)


def _history_table(rows: Sequence[dict]) -> str:
    headers = ["run", "started (UTC)", "status", "objects", "documents", "share [95% interval]", "failed shards", "alerts"]
    body = []
    for row in list(reversed(rows))[:MAX_HISTORY_ROWS]:
        share = "" if row.get("synthetic_share") is None else (
            f"{row['synthetic_share']:.3f} [{row['synthetic_share_low']:.3f}, {row['synthetic_share_high']:.3f}]"
        )
        notes = list(row.get("alerts") or [])
        if row.get("error"):
            notes.append(f"error: {row['error']}")
        cells = [
            (f"<code>{_text(row['run_id'])}</code>", False),
            (_time(row["started_at"]), False),
            (_text(row["status"]), False),
            (f"{row.get('objects') or 0:,}", True),
            ("" if row.get("documents") is None else f"{row['documents']:,}", True),
            (share, True),
            ("" if row.get("failed_shards") is None else str(row["failed_shards"]), True),
            ("<br>".join(_text(note) for note in notes), False),
        ]
        body.append(
            "<tr>"
            + "".join(f'<td class="number">{cell}</td>' if numeric else f"<td>{cell}</td>" for cell, numeric in cells)
            + "</tr>"
        )
    head = "".join(f"<th>{header}</th>" for header in headers)
    more = ""
    if len(rows) > MAX_HISTORY_ROWS:
        more = f'<p class="note">The last {MAX_HISTORY_ROWS} of {len(rows)} runs; `monitor history` prints all.</p>'
    return f"<h2>Runs, newest first</h2>\n<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _charts(charts: Sequence[str]) -> str:
    return '<div class="charts">' + "".join(f"<div>{chart}</div>" for chart in charts) + "</div>"


def _share_of(items: Sequence[dict] | None, name: str) -> float | None:
    for item in items or []:
        if item["name"] == name:
            return item["estimate"]
    return None


def _documents_of(items: Sequence[dict] | None, name: str) -> float | None:
    for item in items or []:
        if item["name"] == name:
            return float(item["documents"] or 0)
    return 0.0


def _time_format(rows: Sequence[dict]) -> Callable[[float], str]:
    """Return a tick label format that fits the time span of the runs."""
    if len(rows) < 2:
        span = 0.0
    else:
        span = _seconds(rows[-1]) - _seconds(rows[0])
    if span < 3600:
        pattern = "%H:%M:%S"
    elif span < 3 * 86400:
        pattern = "%m-%d %H:%M"
    else:
        pattern = "%Y-%m-%d"
    return lambda seconds: dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime(pattern)


def _seconds(row: dict) -> float:
    return row["started_at"].timestamp()


def _time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)
