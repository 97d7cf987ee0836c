"""Inline SVG charts for the static HTML reports.

Each function returns one `<svg>` element as a string, with no script, style
sheet or external reference, so a page that embeds it still works offline and
under a Content-Security-Policy of `default-src 'none'`. Labels are escaped
with `html.escape`, because group names come from the corpus.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# Line colours, used in order. The first one also fills the bars of `interval_bar_chart`.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000")
BAND_COLOUR = "#0072b2"
BAND_OPACITY = 0.18

_MARGIN_LEFT = 56
_MARGIN_RIGHT = 36
_MARGIN_TOP = 28
_MARGIN_BOTTOM = 40
_LEGEND_ROW = 16
_TICKS = 5


@dataclass
class Series:
    """One line of a line chart: (x, y) points, where a None y breaks the line."""

    name: str
    points: list[tuple[float, float | None]]
    colour: str | None = None


@dataclass
class Band:
    """A shaded interval around a line: (x, low, high) points."""

    points: list[tuple[float, float, float]]
    colour: str = BAND_COLOUR
    opacity: float = BAND_OPACITY


@dataclass
class _Axis:
    low: float
    high: float
    start: float
    length: float
    inverted: bool = False
    ticks: list[float] = field(default_factory=list)

    def position(self, value: float) -> float:
        share = 0.5 if self.high == self.low else (value - self.low) / (self.high - self.low)
        if self.inverted:
            share = 1.0 - share
        return self.start + share * self.length


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    y_label: str = "",
    band: Band | None = None,
    y_range: tuple[float, float] | None = None,
    x_format: Callable[[float], str] = lambda value: f"{value:g}",
    width: int = 640,
    height: int = 240,
) -> str:
    """Draw lines with point markers over a shared x axis, with an optional interval band.

    `y_range` fixes the y axis (for shares, (0, 1) or a part of it); without it
    the axis spans the data. A chart without any point shows its title and
    "no data".
    """
    xs = [x for line in series for x, y in line.points if y is not None and math.isfinite(y)]
    ys = [y for line in series for _, y in line.points if y is not None and math.isfinite(y)]
    if band is not None:
        xs += [x for x, _, _ in band.points]
        ys += [value for _, low, high in band.points for value in (low, high) if math.isfinite(value)]
    legend_height = _LEGEND_ROW * (1 + (len(series) - 1) // 4) if len(series) > 1 else 0
    total_height = height + legend_height
    parts = [_open_svg(width, total_height, title)]
    if not xs:
        parts.append(_text(width / 2, total_height / 2, "no data", anchor="middle", css_class="empty"))
        parts.append("</svg>")
        return "".join(parts)

    x_axis = _Axis(min(xs), max(xs), _MARGIN_LEFT, width - _MARGIN_LEFT - _MARGIN_RIGHT)
    low, high = y_range if y_range is not None else _padded(min(ys), max(ys))
    y_axis = _Axis(low, high, _MARGIN_TOP, height - _MARGIN_TOP - _MARGIN_BOTTOM, inverted=True)
    x_axis.ticks = sorted(set(xs)) if len(set(xs)) <= _TICKS else _even_ticks(x_axis.low, x_axis.high)
    y_axis.ticks = _even_ticks(y_axis.low, y_axis.high)

    parts.append(_grid(x_axis, y_axis, x_format, y_label))
    if band is not None and band.points:
        parts.append(_band(band, x_axis, y_axis))
    for index, line in enumerate(series):
        colour = line.colour or PALETTE[index % len(PALETTE)]
        parts.append(_polyline(line, colour, x_axis, y_axis))
    if len(series) > 1:
        parts.append(_legend(series, width, height))
    parts.append("</svg>")
    return "".join(parts)


def interval_bar_chart(
    items: Sequence[tuple[str, float, float, float]],
    *,
    title: str,
    x_range: tuple[float, float] = (0.0, 1.0),
    width: int = 640,
    bar_height: int = 16,
) -> str:
    """Draw one horizontal bar per (label, estimate, low, high), with the interval as a whisker."""
    label_width = 160
    height = _MARGIN_TOP + len(items) * (bar_height + 6) + _MARGIN_BOTTOM
    parts = [_open_svg(width, height, title)]
    if not items:
        parts.append(_text(width / 2, height / 2, "no data", anchor="middle", css_class="empty"))
        parts.append("</svg>")
        return "".join(parts)

    x_axis = _Axis(x_range[0], x_range[1], label_width, width - label_width - _MARGIN_RIGHT)
    x_axis.ticks = _even_ticks(*x_range)
    bottom = height - _MARGIN_BOTTOM
    for tick in x_axis.ticks:
        x = x_axis.position(tick)
        parts.append(_line(x, _MARGIN_TOP, x, bottom, "#dddddd"))
        parts.append(_text(x, bottom + 14, f"{tick:g}", anchor="middle"))

    for index, (label, estimate, low, high) in enumerate(items):
        top = _MARGIN_TOP + index * (bar_height + 6)
        middle = top + bar_height / 2
        bar_end = x_axis.position(_clamp(estimate, *x_range))
        parts.append(_text(label_width - 6, middle + 4, _shorten(label, 24), anchor="end"))
        parts.append(
            f'<rect x="{x_axis.start:.1f}" y="{top:.1f}" width="{max(0.0, bar_end - x_axis.start):.1f}" '
            f'height="{bar_height}" fill="{PALETTE[0]}" fill-opacity="0.75"></rect>'
        )
        whisker_low = x_axis.position(_clamp(low, *x_range))
        whisker_high = x_axis.position(_clamp(high, *x_range))
        parts.append(_line(whisker_low, middle, whisker_high, middle, "#1a1a1a", 1.5))
        for x in (whisker_low, whisker_high):
            parts.append(_line(x, top + 3, x, top + bar_height - 3, "#1a1a1a", 1.5))
    parts.append("</svg>")
    return "".join(parts)


def _open_svg(width: int, height: int, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_escape(title)}" '
        'font-family="system-ui, sans-serif" font-size="11">'
        f"<title>{_escape(title)}</title>"
        f'<text x="{_MARGIN_LEFT}" y="16" font-size="13" font-weight="600">{_escape(title)}</text>'
    )


def _grid(x_axis: _Axis, y_axis: _Axis, x_format: Callable[[float], str], y_label: str) -> str:
    parts = []
    left, right = x_axis.start, x_axis.start + x_axis.length
    top, bottom = y_axis.start, y_axis.start + y_axis.length
    for tick in y_axis.ticks:
        y = y_axis.position(tick)
        parts.append(_line(left, y, right, y, "#e5e5e5"))
        parts.append(_text(left - 6, y + 4, f"{tick:.3g}", anchor="end"))
    for tick in x_axis.ticks:
        x = x_axis.position(tick)
        parts.append(_line(x, bottom, x, bottom + 4, "#888888"))
        parts.append(_text(x, bottom + 16, x_format(tick), anchor="middle"))
    parts.append(_line(left, bottom, right, bottom, "#888888"))
    parts.append(_line(left, top, left, bottom, "#888888"))
    if y_label:
        middle = (top + bottom) / 2
        parts.append(
            f'<text x="12" y="{middle:.1f}" text-anchor="middle" transform="rotate(-90 12 {middle:.1f})">'
            f"{_escape(y_label)}</text>"
        )
    return "".join(parts)


def _band(band: Band, x_axis: _Axis, y_axis: _Axis) -> str:
    points = sorted(band.points)
    upper = [(x_axis.position(x), y_axis.position(high)) for x, _, high in points]
    lower = [(x_axis.position(x), y_axis.position(low)) for x, low, _ in reversed(points)]
    if len(points) == 1:
        # A single interval is drawn as a short vertical bar, since a polygon of one x has no area.
        (x, top), (_, bottom) = upper[0], lower[0]
        return (
            f'<rect x="{x - 4:.1f}" y="{top:.1f}" width="8" height="{max(1.0, bottom - top):.1f}" '
            f'fill="{band.colour}" fill-opacity="{band.opacity}"></rect>'
        )
    coordinates = " ".join(f"{x:.1f},{y:.1f}" for x, y in upper + lower)
    return f'<polygon points="{coordinates}" fill="{band.colour}" fill-opacity="{band.opacity}"></polygon>'


def _polyline(line: Series, colour: str, x_axis: _Axis, y_axis: _Axis) -> str:
    parts = []
    segment: list[tuple[float, float]] = []
    for x, y in sorted(line.points, key=lambda point: point[0]):
        if y is None or not math.isfinite(y):
            parts.append(_segment(segment, colour))
            segment = []
            continue
        segment.append((x_axis.position(x), y_axis.position(y)))
        parts.append(
            f'<circle cx="{segment[-1][0]:.1f}" cy="{segment[-1][1]:.1f}" r="3" fill="{colour}">'
            f"<title>{_escape(line.name)}: {y:.4g}</title></circle>"
        )
    parts.append(_segment(segment, colour))
    return "".join(parts)


def _segment(points: list[tuple[float, float]], colour: str) -> str:
    if len(points) < 2:
        return ""
    coordinates = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline points="{coordinates}" fill="none" stroke="{colour}" stroke-width="2"></polyline>'


def _legend(series: Sequence[Series], width: int, height: int) -> str:
    parts = []
    column_width = (width - _MARGIN_LEFT) / 4
    for index, line in enumerate(series):
        colour = line.colour or PALETTE[index % len(PALETTE)]
        x = _MARGIN_LEFT + (index % 4) * column_width
        y = height + (index // 4) * _LEGEND_ROW
        parts.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{colour}"></rect>')
        parts.append(_text(x + 14, y, _shorten(line.name, 22)))
    return "".join(parts)


def _line(x1: float, y1: float, x2: float, y2: float, colour: str, stroke_width: float = 1.0) -> str:
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
        f'stroke="{colour}" stroke-width="{stroke_width}"></line>'
    )


def _text(x: float, y: float, content: str, anchor: str = "start", css_class: str | None = None) -> str:
    class_attribute = f' class="{css_class}"' if css_class else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{class_attribute}>{_escape(content)}</text>'


def _even_ticks(low: float, high: float) -> list[float]:
    if high == low:
        return [low]
    step = (high - low) / (_TICKS - 1)
    return [low + index * step for index in range(_TICKS)]


def _padded(low: float, high: float) -> tuple[float, float]:
    """Return a y range around the data with 5% room on each side, never below 0 for data that is not negative."""
    room = (high - low) * 0.05 if high > low else (abs(low) * 0.1 or 1.0)
    bottom = low - room
    if low >= 0:
        bottom = max(0.0, bottom)
    return bottom, high + room


def _clamp(value: float, low: float, high: float) -> float:
    if not math.isfinite(value):
        return low
    return max(low, min(high, value))


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(value: object) -> str:
    return html.escape(str(value), quote=True)
