"""Drawing a dashboard's widgets with matplotlib: one PNG per widget, an overview of them all, an HTML page.

Figures are made with ``matplotlib.figure.Figure`` (no pyplot, no global state, no display needed).
A metric widget is drawn as the console would: its title, one line per series over the whole
window (gaps where there are no points), the left axis's label and range, horizontal annotations
(alarm thresholds) as dashed lines; a series without a point in the window is left out of the
legend, and a widget with none says "no data". Text widgets are drawn as their text.
"""

from __future__ import annotations

import html
import io
import re
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import matplotlib
import matplotlib.dates as mdates
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from vector_relay_cli.dashboard_body import Placement, TextWidget, UnsupportedWidget
from vector_relay_cli.dashboard_data import Series, WidgetData

if TYPE_CHECKING:
    from matplotlib.axes import Axes

Drawn = WidgetData | TextWidget | UnsupportedWidget

# CloudWatch's graph colours (the d3 / matplotlib "tab10" palette), in its order.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
INK = "#16191f"
MUTED = "#5f6b7a"
GRID = "#e9ebed"
ANNOTATION = "#d13212"
DPI = 120
OVERVIEW_WIDTH_INCHES = 22.0  # the dashboard's 24 columns
OVERVIEW_ROW_INCHES = 0.52
STYLE: Any = {  # matplotlib's rcParams while a figure is drawn
    "font.size": 9.0,
    "axes.titlesize": 10.5,
    "axes.labelsize": 8.5,
    "legend.fontsize": 8.0,
    "axes.edgecolor": "#aab7b8",
    "axes.grid": True,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "grid.color": GRID,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "figure.facecolor": "white",
}


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime
    since: str  # as the operator gave it: "1h"

    def describe(self) -> str:
        start, end = self.start.astimezone(UTC), self.end.astimezone(UTC)
        day = "" if start.date() == end.date() else f"{end:%Y-%m-%d} "
        return f"last {self.since}: {start:%Y-%m-%d %H:%M} to {day}{end:%H:%M} UTC"


def title_of(item: Drawn) -> str:
    return item.widget.title if isinstance(item, WidgetData) else item.title


def placement_of(item: Drawn) -> Placement:
    return item.widget.placement if isinstance(item, WidgetData) else item.placement


# ---------------------------------------------------------------- one widget per image


def widget_png(item: Drawn, window: Window) -> bytes:
    """One widget as a PNG of its own, sized by its place on the dashboard, with the legend under the graph."""
    placement = placement_of(item)
    width = min(max(placement.width * 0.62, 6.4), 13.0)
    height = min(max(placement.height * 0.62, 3.4), 6.0)
    if isinstance(item, WidgetData) and item.widget.view == "timeSeries":
        labels = [s.label for s in item.with_data]
        height += 0.24 * (-(-len(labels) // _legend_columns(labels, width)) if labels else 0)
    elif isinstance(item, TextWidget):
        lines = sum(max(1, -(-len(line) // _characters(width, 9.5))) for _, line in _markdown_lines(item.markdown))
        height = 0.5 + 0.2 * lines
    with _style():
        figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
        axes = figure.add_subplot()
        _draw(axes, item, window, compact=False, width_inches=width)
        return _png(figure)


def overview_png(items: Sequence[Drawn], window: Window, title: str) -> bytes:
    """Every widget at its place on the dashboard's grid, in one image."""
    rows = max((p.y + p.height for p in map(placement_of, items)), default=1)
    header = 0.9
    width, height = OVERVIEW_WIDTH_INCHES, rows * OVERVIEW_ROW_INCHES + header
    column = width / 24
    with _style():
        figure = Figure(figsize=(width, height), dpi=DPI)
        figure.text(0.2 / width, 1 - 0.3 / height, title, fontsize=15, fontweight="bold", color=INK, va="center")
        figure.text(0.2 / width, 1 - 0.58 / height, window.describe(), fontsize=9.5, color=MUTED, va="center")
        for item in items:
            p = placement_of(item)
            is_text = isinstance(item, TextWidget)
            pad_left, pad_right = (0.15, 0.12) if is_text else (0.7, 0.2)
            pad_top, pad_bottom = (0.12, 0.08) if is_text else (0.42, 0.42)
            left = (p.x * column + pad_left) / width
            bottom = (height - header - (p.y + p.height) * OVERVIEW_ROW_INCHES + pad_bottom) / height
            cell_width = p.width * column - pad_left - pad_right
            cell_height = p.height * OVERVIEW_ROW_INCHES - pad_top - pad_bottom
            axes = figure.add_axes((left, bottom, cell_width / width, cell_height / height))
            _draw(axes, item, window, compact=True, width_inches=cell_width)
        return _png(figure)


def _draw(axes: Axes, item: Drawn, window: Window, *, compact: bool, width_inches: float) -> None:
    if isinstance(item, TextWidget):
        _draw_text(axes, item.markdown, width_inches)
    elif isinstance(item, UnsupportedWidget):
        _blank(axes, item.title, f"not drawn: {item.reason}", width_inches, color=ANNOTATION)
    elif item.error is not None:
        _blank(axes, item.widget.title, f"could not read its metrics: {item.error}", width_inches, color=ANNOTATION)
    elif item.widget.view == "singleValue":
        _draw_single_values(axes, item, window)
    else:
        _draw_time_series(axes, item, window, compact=compact, width_inches=width_inches)


def _draw_time_series(axes: Axes, data: WidgetData, window: Window, *, compact: bool, width_inches: float) -> None:
    widget = data.widget
    _titles(axes, widget.title, _statistics(data))
    series = data.with_data
    colors, styles = _colors(data.series), _line_styles(data.series)
    if widget.stacked and series:
        times = sorted({t for s in series for t in s.timestamps})
        stacks = [[dict(zip(s.timestamps, s.values, strict=True)).get(t, 0.0) for t in times] for s in series]
        axes.stackplot(
            _days(times),
            *stacks,
            labels=[s.label for s in series],
            colors=[colors[s.label] for s in series],
            alpha=0.85,
        )
    else:
        for s in series:
            few = len(s.values) <= 30
            axes.plot(
                _days(s.timestamps),
                s.values,
                label=s.label,
                color=colors[s.label],
                linestyle=styles[s.label],
                linewidth=1.7,
                marker="o" if few else None,
                markersize=3.2,
            )
    highest = max((v for s in series for v in s.values), default=0.0)
    if widget.stacked and series:
        highest = max(sum(values) for values in zip(*stacks, strict=True))
    for annotation in widget.annotations:
        axes.axhline(annotation.value, color=annotation.color or ANNOTATION, linestyle="--", linewidth=1.0, alpha=0.8)
        axes.annotate(
            f"{annotation.label} ({_number(annotation.value)})",
            xy=(1.0, annotation.value),
            xycoords=("axes fraction", "data"),
            xytext=(-3, 2),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize=7.5,
            color=annotation.color or ANNOTATION,
        )
        highest = max(highest, annotation.value)
    axes.set_xlim(*_days((window.start, window.end)))
    bottom = widget.y_min if widget.y_min is not None else 0.0
    top = widget.y_max if widget.y_max is not None else (highest * 1.12 if highest > bottom else bottom + 1)
    axes.set_ylim(bottom - (top - bottom) * 0.02, top)  # a line at the bottom stays visible above the axis
    locator = mdates.AutoDateLocator(tz=UTC, minticks=3, maxticks=7 if compact else 9)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    formatter = mdates.ConciseDateFormatter(locator, tz=UTC, show_offset=False)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_formatter(formatter)
    whole = all(float(v).is_integer() for s in series for v in s.values)
    axes.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=whole or highest >= 5))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: _number(value)))
    if widget.y_label:
        axes.set_ylabel(widget.y_label, color=MUTED)
    if not compact:
        axes.set_xlabel("UTC", color=MUTED, fontsize=7.5, loc="right")
    if not series:
        found_nothing = not data.series
        message = (
            f"no metric found with data in the last {window.since}"
            if found_nothing
            else f"no data in the last {window.since}"
        )
        axes.text(0.5, 0.5, message, transform=axes.transAxes, ha="center", va="center", color=MUTED, fontsize=9.5)
    elif compact:
        axes.legend(loc="upper left", fontsize=7, ncol=2 if len(series) > 4 else 1, framealpha=0.85, borderaxespad=0.3)
    else:
        columns = _legend_columns([s.label for s in series], width_inches)
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=columns, frameon=False, fontsize=8.5)


def _draw_single_values(axes: Axes, data: WidgetData, window: Window) -> None:
    _titles(axes, data.widget.title, _statistics(data))
    axes.set_axis_off()
    series = data.with_data
    if not series:
        axes.text(0.5, 0.5, f"no data in the last {window.since}", ha="center", va="center", color=MUTED)
        return
    colors = _colors(data.series)
    step = 1 / len(series)
    for index, s in enumerate(series):
        x = step * (index + 0.5)
        axes.text(x, 0.55, _number(s.values[-1]), ha="center", va="center", fontsize=22, color=colors[s.label])
        axes.text(x, 0.22, s.label, ha="center", va="center", fontsize=8.5, color=MUTED)


def _draw_text(axes: Axes, markdown: str, width_inches: float) -> None:
    """A heading on the first line is the title; the rest is one block of wrapped text under it."""
    axes.set_axis_off()
    lines = _markdown_lines(markdown)
    if lines and lines[0][0]:
        axes.set_title(lines[0][1], loc="left", fontweight="bold", color=INK, fontsize=13, pad=4)
        lines = lines[1:]
    characters = _characters(width_inches, 9.5)
    body = "\n".join(piece for _, line in lines for piece in (textwrap.wrap(line, characters) or [""]))
    axes.text(0.0, 1.0, body.strip("\n"), transform=axes.transAxes, va="top", ha="left", fontsize=9.5, color=INK)


def _blank(axes: Axes, title: str, message: str, width_inches: float, *, color: str) -> None:
    _titles(axes, title, "")
    axes.set_axis_off()
    wrapped = "\n".join(textwrap.wrap(message, max(int(width_inches * 72 / 8.5 * 1.8), 30)))
    axes.text(0.5, 0.5, wrapped, transform=axes.transAxes, ha="center", va="center", color=color, fontsize=8.5)


def _titles(axes: Axes, title: str, statistics: str) -> None:
    axes.set_title(title, loc="left", fontweight="bold", color=INK, pad=6)
    if statistics:
        axes.set_title(statistics, loc="right", color=MUTED, fontsize=8, pad=7)


def _statistics(data: WidgetData) -> str:
    """``Sum per minute``, ``p50, p99 per minute``: what the widget's numbers are (as asked, when nothing was found)."""
    asked = data.series or data.widget.queries
    stats = list(dict.fromkeys(s.stat for s in asked))
    periods = list(dict.fromkeys(s.period for s in asked))
    if not stats:
        return ""
    per = " / ".join(_period(p) for p in periods)
    return f"{', '.join(stats)} per {per}"


def _period(seconds: int) -> str:
    if seconds % 3600 == 0:
        return "hour" if seconds == 3600 else f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return "minute" if seconds == 60 else f"{seconds // 60} min"
    return f"{seconds} s"


def _days(times: Sequence[datetime]) -> list[float]:
    """Times as matplotlib's date numbers (what its date axes plot)."""
    return [float(mdates.date2num(t)) for t in times]  # type: ignore[no-untyped-call]


def _number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == int(value):
        return f"{int(value)}"
    return f"{value:.3g}"


def _colors(series: Sequence[Series]) -> dict[str, str]:
    """A colour per label, in the widget's order (series without data keep theirs, so colours do not shift).

    Series of one metric (p50 and p99 of a tenant's latency) share a colour; :func:`_line_styles` tells them apart.
    """
    by_metric: dict[tuple[str, str, tuple[tuple[str, str], ...]], str] = {}
    colors: dict[str, str] = {}
    for s in series:
        if s.metric not in by_metric:
            by_metric[s.metric] = PALETTE[len(by_metric) % len(PALETTE)]
        colors.setdefault(s.label, s.color or by_metric[s.metric])
    return colors


def _line_styles(series: Sequence[Series]) -> dict[str, str]:
    """Solid for a metric's first series, then dashed, dotted, dash-dotted."""
    seen: dict[tuple[str, str, tuple[tuple[str, str], ...]], int] = {}
    styles: dict[str, str] = {}
    for s in series:
        styles.setdefault(s.label, ("-", "--", ":", "-.")[min(seen.get(s.metric, 0), 3)])
        seen[s.metric] = seen.get(s.metric, 0) + 1
    return styles


def _legend_columns(labels: Sequence[str], width_inches: float) -> int:
    """As many columns as the longest label leaves room for (8.5 pt: about 0.07 in a character, and the line)."""
    entry = max(len(label) for label in labels) * 0.075 + 0.7
    return max(1, min(len(labels), int(width_inches * 0.95 // entry)))


def _characters(width_inches: float, size: float) -> int:
    """Characters of a line of text ``size`` points high that fit in ``width_inches``."""
    return max(int(width_inches * 72 / size * 1.9), 20)


@contextmanager
def _style() -> Iterator[None]:
    """The house look while a figure is drawn and saved (rcParams are process-wide: set only meanwhile)."""
    with matplotlib.rc_context(STYLE):
        yield


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return buffer.getvalue()


# ---------------------------------------------------------------- text widgets


_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def _markdown_lines(markdown: str) -> list[tuple[int, str]]:
    """(heading level or 0, plain text) per line: links as their text, no code or emphasis marks."""
    lines: list[tuple[int, str]] = []
    for raw in markdown.splitlines():
        stripped = raw.strip()
        level = len(stripped) - len(stripped.lstrip("#")) if stripped.startswith("#") else 0
        text = stripped.lstrip("#").strip()
        if text.startswith(("* ", "- ")):
            text = "\u2022 " + text[2:]
        text = _LINK.sub(r"\1", text).replace("`", "").replace("**", "")
        lines.append((level, text))
    return lines


def markdown_html(markdown: str) -> str:
    """A text widget's markdown as HTML: headings, paragraphs, bullet lists, links, inline code, bold."""
    out: list[str] = []
    in_list = False
    for raw in markdown.splitlines():
        stripped = raw.strip()
        bullet = stripped.startswith(("* ", "- "))
        if in_list and not bullet:
            out.append("</ul>")
            in_list = False
        if not stripped:
            continue
        if stripped.startswith("#"):
            level = min(len(stripped) - len(stripped.lstrip("#")) + 1, 6)
            out.append(f"<h{level}>{_inline(stripped.lstrip('#').strip())}</h{level}>")
        elif bullet:
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{_inline(stripped[2:])}</li>")
        else:
            out.append(f"<p>{_inline(stripped)}</p>")
    if in_list:
        out.append("</ul>")
    return "\n".join(out)


def _inline(text: str) -> str:
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    escaped = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)
    return _LINK.sub(lambda m: f'<a href="{m.group(2)}">{m.group(1)}</a>', escaped)


# ---------------------------------------------------------------- the HTML page


def html_page(items: Sequence[Drawn], images: Sequence[bytes | None], window: Window, title: str) -> str:
    """One self-contained page: the widgets on the dashboard's grid, graphs as embedded PNGs."""
    import base64

    cells = []
    for item, image in zip(items, images, strict=True):
        p = placement_of(item)
        area = f"grid-column: {p.x + 1} / span {p.width}; grid-row: {p.y + 1} / span {p.height};"
        if isinstance(item, TextWidget) or image is None:
            inner = markdown_html(item.markdown) if isinstance(item, TextWidget) else html.escape(title_of(item))
            cells.append(f'<section class="text" style="{area}">{inner}</section>')
        else:
            encoded = base64.b64encode(image).decode("ascii")
            alt = html.escape(title_of(item), quote=True)
            cells.append(f'<figure style="{area}"><img alt="{alt}" src="data:image/png;base64,{encoded}"></figure>')
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
  body {{ font-family: system-ui, sans-serif; color: {INK}; margin: 1.5rem; background: #f2f3f3; }}
  header p {{ color: {MUTED}; margin-top: 0.2rem; }}
  main {{ display: grid; grid-template-columns: repeat(24, 1fr); grid-auto-rows: 46px; gap: 8px; }}
  figure, section {{ margin: 0; background: white; border: 1px solid #d5dbdb; border-radius: 4px; overflow: hidden; }}
  figure img {{ width: 100%; height: 100%; object-fit: contain; }}
  section.text {{ padding: 0.2rem 0.9rem; overflow: auto; }}
  code {{ background: #f2f3f3; padding: 0 0.2rem; }}
</style>
</head>
<body>
<header><h1>{html.escape(title)}</h1><p>{html.escape(window.describe())}</p></header>
<main>
{chr(10).join(cells)}
</main>
</body>
</html>
"""
