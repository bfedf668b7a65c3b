"""``vector-relay dashboard``: the deployment's CloudWatch dashboard drawn as PNGs (and an HTML page).

One source of truth: the dashboard as deployed (``GetDashboard`` of the ``DashboardName`` output,
the body ``template.yaml`` defines), read by :mod:`vector_relay_cli.dashboard_body`; its metric
queries are answered by ``GetMetricData`` (:mod:`vector_relay_cli.dashboard_data`) and drawn with
matplotlib (:mod:`vector_relay_cli.dashboard_render`). The same code draws a deployment in AWS
and the local stack (moto's CloudWatch).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from botocore.exceptions import BotoCoreError, ClientError

from vector_relay_cli.context import Context
from vector_relay_cli.errors import CannotRun
from vector_relay_cli.progress import bar

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

    from vector_relay_cli.dashboard_body import Widget
    from vector_relay_cli.dashboard_render import Drawn, Window

OVERVIEW_FILE = "overview.png"
_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class Drawing:
    """What the report says of one widget."""

    title: str
    kind: str  # "metric", "text", "not drawn"
    status: str  # "data", "no data", "error", "text", "not drawn"
    series: int
    series_with_data: int
    points: int
    detail: str  # the reason a widget was not drawn or could not be read
    file: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "kind": self.kind,
            "status": self.status,
            "series": self.series,
            "series_with_data": self.series_with_data,
            "points": self.points,
            "detail": self.detail or None,
            "file": self.file,
        }


def since_seconds(text: str) -> int:
    """``90s``, ``30m``, ``1h``, ``7d`` in seconds."""
    found = _DURATION.fullmatch(text.strip())
    if found is None or int(found.group(1)) == 0:
        raise click.BadParameter(f"{text!r}: a whole number and a unit, s m h or d (30m, 1h, 7d)", param_hint="--since")
    return int(found.group(1)) * _UNITS[found.group(2)]


@click.command()
@click.option(
    "--png",
    "png_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write overview.png and one PNG per widget into this directory (made if missing).",
)
@click.option(
    "--html",
    "html_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write one self-contained HTML page with every widget at its place.",
)
@click.option("--since", default="1h", show_default=True, help="How far back: 30m, 1h, 6h, 7d.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
@click.pass_obj
def dashboard(ctx: Context, png_dir: Path | None, html_file: Path | None, since: str, as_json: bool) -> None:
    """Draw the deployment's CloudWatch dashboard from its metrics: PNGs (--png DIR) or a page (--html FILE).

    The dashboard is the one deployed (output DashboardName), read back with GetDashboard: each
    metric widget's queries, SEARCH expressions included, are read with GetMetricData over the last
    --since at the widget's period and statistic, and drawn with its title, labels, axis and alarm
    lines. Text widgets are drawn as text. A widget using what this command does not draw is shown
    as such, with the reason. The report says which widgets had data.
    """
    if png_dir is None and html_file is None:
        raise click.UsageError("give --png DIR, --html FILE, or both")
    seconds = since_seconds(since)
    try:
        from vector_relay_cli import dashboard_render as render
    except ImportError as error:  # matplotlib is in the cli extra
        raise CannotRun(f"drawing needs matplotlib ({error}): pip install '.[cli]'") from None
    from vector_relay_cli.dashboard_body import Unsupported, parse_dashboard
    from vector_relay_cli.dashboard_data import WidgetData

    name = ctx.deployment().output("DashboardName")
    cloudwatch = ctx.cloudwatch()
    try:
        body = cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"]
    except (ClientError, BotoCoreError) as error:
        raise CannotRun(f"cannot read dashboard {name}: {error}") from None
    try:
        widgets = parse_dashboard(body)
    except Unsupported as error:
        raise CannotRun(f"dashboard {name}: {error}") from None

    end = _whole_minute(datetime.now(UTC)) + timedelta(minutes=1)
    window = render.Window(start=end - timedelta(seconds=seconds), end=end, since=since)
    drawn = _read(cloudwatch, widgets, window, quiet=as_json)
    read = [item for item in drawn if isinstance(item, WidgetData)]
    if read and all(item.error for item in read):  # no credentials, no permission, no endpoint: nothing to draw
        raise CannotRun(f"cannot read the dashboard's metrics: {read[0].error}")

    title = f"vector-relay dashboard {name}"
    files: list[str | None] = [None] * len(drawn)
    images = [render.widget_png(item, window) for item in drawn]
    overview_path = None
    if png_dir is not None:
        png_dir.mkdir(parents=True, exist_ok=True)
        for index, (item, image) in enumerate(zip(drawn, images, strict=True)):
            path = png_dir / f"{index + 1:02d}-{_slug(render.title_of(item))}.png"
            path.write_bytes(image)
            files[index] = str(path)
        overview_path = png_dir / OVERVIEW_FILE
        overview_path.write_bytes(render.overview_png(drawn, window, title))
    if html_file is not None:
        html_file.parent.mkdir(parents=True, exist_ok=True)
        html_file.write_text(render.html_page(drawn, images, window, title), encoding="utf-8")

    report = [_drawing(item, file) for item, file in zip(drawn, files, strict=True)]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "dashboard": name,
                    "start": window.start.isoformat(),
                    "end": window.end.isoformat(),
                    "widgets": [r.as_json() for r in report],
                    "overview": str(overview_path) if overview_path else None,
                    "html": str(html_file) if html_file else None,
                },
                indent=2,
            )
        )
        return
    _print_report(name, window, report, overview_path, png_dir, html_file)


def _read(cloudwatch: CloudWatchClient, widgets: list[Widget], window: Window, *, quiet: bool) -> list[Drawn]:
    """Each metric widget with its data; one of another region than the client's is not drawn, and says so."""
    from vector_relay_cli.dashboard_body import MetricWidget, UnsupportedWidget
    from vector_relay_cli.dashboard_data import MetricReader

    reader = MetricReader(cloudwatch)
    region = cloudwatch.meta.region_name
    metric_widgets = sum(isinstance(w, MetricWidget) for w in widgets)
    progress = bar("reading metrics", quiet=quiet)
    task = progress.add_task("read", total=metric_widgets)
    drawn: list[Drawn] = []
    with progress:
        for widget in widgets:
            if isinstance(widget, MetricWidget) and widget.region not in (None, region):
                reason = f"its metrics are in {widget.region}, and this command reads {region} (--region)"
                drawn.append(UnsupportedWidget(widget.title, widget.placement, reason))
            elif isinstance(widget, MetricWidget):
                drawn.append(reader.read(widget, window.start, window.end))
            else:
                drawn.append(widget)
            if isinstance(widget, MetricWidget):
                progress.advance(task)
    return drawn


def _drawing(item: Drawn, file: str | None) -> Drawing:
    from vector_relay_cli.dashboard_body import TextWidget, UnsupportedWidget

    if isinstance(item, TextWidget):
        return Drawing(item.title, "text", "text", 0, 0, 0, "", file)
    if isinstance(item, UnsupportedWidget):
        return Drawing(item.title, "not drawn", "not drawn", 0, 0, 0, item.reason, file)
    with_data = len(item.with_data)
    status = "error" if item.error else ("data" if with_data else "no data")
    return Drawing(
        item.widget.title, "metric", status, len(item.series), with_data, item.points, item.error or "", file
    )


def _print_report(
    name: str, window: Window, report: list[Drawing], overview: Path | None, png_dir: Path | None, html: Path | None
) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False)
    metric = [r for r in report if r.kind == "metric"]
    with_data = sum(r.status == "data" for r in metric)
    out.print(f"dashboard {name}, {window.describe()}: {with_data} of {len(metric)} graphs have data", soft_wrap=True)
    table = Table("widget", "status", "series with data", "points", box=None, pad_edge=False)
    for r in report:
        series = f"{r.series_with_data} of {r.series}" if r.kind == "metric" else ""
        points = f"{r.points:,}" if r.kind == "metric" else ""
        status = f"{r.status}: {r.detail}" if r.detail else r.status
        table.add_row(r.title, status, series, points)
    out.print(table)
    if png_dir is not None and overview is not None:
        out.print(f"wrote {overview} and {len(report)} widget PNGs in {png_dir}", soft_wrap=True)
    if html is not None:
        out.print(f"wrote {html}", soft_wrap=True)


def _whole_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "widget"
