"""The monitoring dashboard: one self-contained HTML page per environment and monitored table.

Inline CSS and hand-made SVG, no script and no fetch (a Content-Security-Policy says so to the
browser too), so the file opens from disk anywhere, offline. Panels: drift (a columns x
windows heat map), quality over time, serving, alerts and, when given, the workflow timeline.
Every text that comes from data is HTML-escaped.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import to_hex

from lib.core.errors import ConfigError
from lib.monitoring import alerts, metrics, monitors, views
from lib.monitoring.alerts import ERROR, OK, TRIGGERED
from lib.platform.spark.builder import to_pandas
from lib.platform.workflows import replay

PANELS = ("drift", "quality", "serving", "alerts", "timeline")  # the <section> ids, in page order
HISTORY_ROWS = 200  # alert evaluations shown, newest first
NAN_FILL = "#c8c8c8"  # a drift cell whose statistic is undefined
_STATE_FILL = {OK: "#2e7d32", TRIGGERED: "#c62828", ERROR: "#ef6c00"}
# tab10 is a ListedColormap (it has .colors); matplotlib's stubs type the registry's items as Colormap.
_SERIES = [to_hex(c) for c in colormaps["tab10"].colors]  # type: ignore[attr-defined]
_CELL_W, _CELL_H = 44, 20
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{margin:0 0 4px} h2{margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta,.note,.empty{color:#666} .empty{font-style:italic}
nav a{margin-right:12px} .scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;white-space:nowrap}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.state{color:#fff;font-weight:600;padding:1px 6px;border-radius:3px}
svg text{font-size:11px;fill:#333}
"""


def path_for(root: Path, env_name: str, table: str) -> Path:
    """Where the dashboard of `table` in `env_name` lives: root/<env>/<table>.html."""
    for name in (env_name, table):
        if not name or name in {".", ".."} or "/" in name or "\\" in name:
            raise ConfigError(f"dashboard names must be plain file names, got {name!r}")
    return root / env_name / f"{table}.html"


def write(path: Path, html_text: str) -> Path:
    """Write the page atomically: a temp file in the same folder, then os.replace (a reader
    never sees half a page)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(html_text)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a dashboard is for reading
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def publish(lakehouse, env, monitor) -> Path:
    """Read what the page shows (the monitor's metric tables, its endpoint's serving metrics,
    the alert history and, after a replay, its timeline) and write the page; returns its path:
    <lakehouse>/dashboards/<env>/<table>.html."""

    granularity = monitor.granularities[0]
    timeline_table = env.table(replay.TABLE)
    timeline = (
        replay.display(to_pandas(lakehouse.read(timeline_table).orderBy("run"))) if lakehouse.exists(timeline_table) else None
    )
    page = render(
        env.name,
        monitor.table_name,
        drift=views.drift_over_time(lakehouse, monitor.output(env, "drift"), granularity),
        quality=views.quality_over_time(lakehouse, monitor.output(env, "profile"), granularity, monitor.problem_type),
        infra=views.serving_over_time(lakehouse, monitors.serving_metrics_table(env), granularity),
        alerts=alerts.history(lakehouse, env),
        timeline=timeline,
    )
    return write(path_for(env.home / "dashboards", env.name, monitor.table_name), page)


def render(
    env_name: str,
    table: str,
    *,
    drift: pd.DataFrame,
    quality: pd.DataFrame,
    infra: pd.DataFrame,
    alerts: pd.DataFrame,
    timeline: pd.DataFrame | None = None,
    generated_at: dt.datetime | None = None,
    statistic: str = "js_distance",
) -> str:
    """The whole page as one HTML string.

    Args:
        drift: `statistic` per column (index) and window start (columns); NaN is undefined.
        quality: window, model_id, count, labelled_count and two quality metrics: roc_auc and
            accuracy (a classifier: drawn on a scale that ends at 1), or root_mean_squared_error
            and mean_absolute_error (a regression: on the scale of its errors, from 0).
        infra: window, served_entity, requests, errors, error_rate, p50_ms, p99_ms.
        alerts: the alert history (lib.monitoring.alerts.history).
        timeline: one row per workflow step, any columns; None leaves the panel out.
    """
    generated = (generated_at or dt.datetime.now(dt.UTC)).isoformat(sep=" ", timespec="seconds")
    sections = [_drift_panel(drift, statistic), _quality_panel(quality), _serving_panel(infra), _alerts_panel(alerts)]
    if timeline is not None:
        sections.append(
            _section("timeline", "timeline", _table(timeline) if len(timeline) else _nothing("no workflow step recorded"))
        )
    nav = " ".join(f'<a href="#{i}">{i}</a>' for i in PANELS[: len(sections)])
    name = f"{_e(table)} ({_e(env_name)})"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>monitoring: {name}</title><style>{_CSS}</style></head><body>",
            f"<h1>monitoring: {name}</h1>",
            f'<p class="meta">generated {_e(generated)}</p>',
            f"<nav>{nav}</nav>",
            *sections,
            "</body></html>",
            "",
        ]
    )


# --- Panels -------------------------------------------------------------------------------------


def _drift_panel(pivot: pd.DataFrame, statistic: str) -> str:
    title = f"drift: {statistic}"
    if pivot.empty:
        return _section("drift", title, _nothing("no drift metrics (a monitor needs a baseline and a profiled window)"))
    note = f'<p class="note">{_e(statistic)} per column and window against the baseline; grey is undefined.</p>'
    return _section("drift", title, note + f'<div class="scroll">{_heatmap(pivot, statistic)}</div>')


def _quality_panel(quality: pd.DataFrame) -> str:
    if quality.empty:
        return _section("quality", "quality over time", _nothing("no window profiled"))
    frame = quality.sort_values(["window", "model_id"])
    shown, dashed = metrics.SHOWN_QUALITY[
        "PROBLEM_TYPE_CLASSIFICATION" if "roc_auc" in frame.columns else "PROBLEM_TYPE_REGRESSION"
    ]
    series = [
        (f"model {model} {metric}", rows, metric)
        for model, rows in frame.groupby("model_id", sort=True)
        for metric in (shown, dashed)
    ]
    scores = pd.to_numeric(pd.concat([frame[shown], frame[dashed]]), errors="coerce").dropna()
    y_range = None  # a regression's errors: from 0 to a little above the largest
    if shown == "roc_auc":
        low = max(0.0, float(np.floor(scores.min() * 10 - 0.5)) / 10) if len(scores) else 0.0  # 0..1 hides changes
        y_range = (low, 1.0)
    chart = _line_chart(frame["window"], series, y_range=y_range, dashed=dashed)
    return _section("quality", "quality over time", chart + _table(frame))


def _serving_panel(infra: pd.DataFrame) -> str:
    if infra.empty:
        return _section("serving", "serving", _nothing("no request served"))
    frame = infra.sort_values(["window", "served_entity"])
    series = [
        (f"{entity} {metric}", rows, metric)
        for entity, rows in frame.groupby("served_entity", sort=True)
        for metric in ("p50_ms", "p99_ms")
    ]
    return _section("serving", "serving", _line_chart(frame["window"], series, dashed="p50_ms") + _table(frame))


def _alerts_panel(history: pd.DataFrame) -> str:
    if history.empty:
        return _section("alerts", "alerts", _nothing("no alert evaluated"))
    newest = history.sort_values("evaluated_at", ascending=False, kind="stable")
    current = newest.drop_duplicates("name").sort_values("name")
    badges = "".join(
        f'<tr><td>{_e(r.name)}</td><td><span class="state" style="background:{_STATE_FILL.get(r.state, "#555")}">'
        f"{_e(r.state)}</span></td><td>{_e(_text(r.evaluated_at))}</td><td>{_e(r.reason)}</td></tr>"
        for r in current.itertuples(index=False)
    )
    head = "<tr><th>rule</th><th>state</th><th>evaluated at</th><th>reason</th></tr>"
    note = ""
    if len(newest) > HISTORY_ROWS:
        note = f'<p class="note">showing the newest {HISTORY_ROWS} of {len(newest)} evaluations</p>'
    body = f"<h3>current state</h3><table>{head}{badges}</table><h3>history</h3>{note}{_table(newest.head(HISTORY_ROWS))}"
    return _section("alerts", "alerts", body)


# --- Building blocks ----------------------------------------------------------------------------


def _heatmap(pivot: pd.DataFrame, statistic: str) -> str:
    """A <rect class="cell"> per column and window, coloured 0..max, each with a tooltip."""
    values = pivot.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size else 0.0
    scale = colormaps["viridis"]
    labels = [str(c) for c in pivot.index]
    left = 12 + 7 * max(len(_short(label)) for label in labels)
    legend_w = 12 * 10 + 180  # the colour bar, its top value and the n/a swatch
    width = left + max(_CELL_W * values.shape[1], legend_w) + 10
    height = 24 + _CELL_H * values.shape[0] + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" width="{width}" height="{height}">']
    for j, window in enumerate(pivot.columns):
        x = left + _CELL_W * j + _CELL_W / 2
        parts.append(f'<text x="{x}" y="16" text-anchor="middle">{pd.Timestamp(window):%m-%d}</text>')
    for i, label in enumerate(labels):
        y = 24 + _CELL_H * i
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{_e(_short(label))}</text>')
        for j, window in enumerate(pivot.columns):
            value = values[i, j]
            fill = NAN_FILL if np.isnan(value) else to_hex(scale(value / top if top > 0 else 0.0))
            tip = f"{label}, {_when(window)}: {'n/a' if np.isnan(value) else f'{value:.4g}'}"
            parts.append(
                f'<rect class="cell" x="{left + _CELL_W * j}" y="{y}" width="{_CELL_W - 1}" '
                f'height="{_CELL_H - 1}" fill="{fill}"><title>{_e(tip)}</title></rect>'
            )
    y = 24 + _CELL_H * len(labels) + 14
    steps = 10
    for k in range(steps):
        parts.append(
            f'<rect class="legend" x="{left + 12 * k}" y="{y}" width="12" height="10" fill="{to_hex(scale(k / (steps - 1)))}"/>'
        )
    end = left + 12 * steps
    parts.append(
        f'<text x="{left - 6}" y="{y + 9}" text-anchor="end">0</text>'
        f'<text x="{end + 4}" y="{y + 9}">{top:.3g} ({_e(statistic)})</text>'
        f'<rect class="legend" x="{end + 140}" y="{y}" width="12" height="10" fill="{NAN_FILL}"/>'
        f'<text x="{end + 156}" y="{y + 9}">n/a</text></svg>'
    )
    return "".join(parts)


def _line_chart(
    windows: pd.Series,
    series: list[tuple[str, pd.DataFrame, str]],
    *,
    y_range: tuple[float, float] | None = None,
    dashed: str = "",
) -> str:
    """Series over windows (evenly spaced); a NaN breaks its line, it is never drawn as zero."""
    xs = sorted({pd.Timestamp(w) for w in windows})
    values = [pd.to_numeric(rows[metric], errors="coerce") for _, rows, metric in series]
    highest = max([float(v.max()) for v in values if v.notna().any()], default=0.0)
    low, top = y_range or (0.0, 1.1 * highest if highest > 0 else 1.0)
    left, plot_w, plot_h, pad = 50, max(240, 60 * len(xs)), 160, 12
    step = plot_w / max(len(xs) - 1, 1)
    x_of = {w: left + step * k for k, w in enumerate(xs)}
    legend_h = 16 * len(series)
    parts = [
        f'<div class="scroll"><svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{left + plot_w + 30}" '
        f'height="{pad + plot_h + 24 + legend_h}">',
        f'<line x1="{left}" y1="{pad + plot_h}" x2="{left + plot_w}" y2="{pad + plot_h}" stroke="#999"/>',
        f'<line x1="{left}" y1="{pad}" x2="{left}" y2="{pad + plot_h}" stroke="#999"/>',
        f'<text x="{left - 4}" y="{pad + 4}" text-anchor="end">{top:.3g}</text>',
        f'<text x="{left - 4}" y="{pad + plot_h}" text-anchor="end">{low:.3g}</text>',
    ]
    parts += [
        f'<text x="{x}" y="{pad + plot_h + 14}" text-anchor="middle">{pd.Timestamp(w):%m-%d}</text>' for w, x in x_of.items()
    ]
    for k, ((label, rows, metric), vals) in enumerate(zip(series, values)):
        colour, d, pen = _SERIES[(k // 2) % len(_SERIES)], [], "M"  # two metrics per model/entity: one colour
        dash = ' stroke-dasharray="4 3"' if metric == dashed else ""
        for window, value in zip(rows["window"], vals):
            if pd.isna(value):
                pen = "M"  # a gap
                continue
            x, y = x_of[pd.Timestamp(window)], pad + plot_h * (top - float(value)) / (top - low)
            d.append(f"{pen}{x:.1f},{y:.1f}")
            pen = "L"
            parts.append(
                f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}">'
                f"<title>{_e(label)}, {_when(window)}: {float(value):.4g}</title></circle>"
            )
        if d:
            parts.append(f'<path class="series" d="{" ".join(d)}" fill="none" stroke="{colour}"{dash}/>')
        y = pad + plot_h + 24 + 16 * k + 8
        parts.append(
            f'<line x1="{left}" y1="{y}" x2="{left + 20}" y2="{y}" stroke="{colour}"{dash}/>'
            f'<text x="{left + 26}" y="{y + 4}">{_e(label)}</text>'
        )
    return "".join(parts) + "</svg></div>"


def _table(frame: pd.DataFrame) -> str:
    """The rows as an HTML table; numbers right-aligned, missing values blank."""
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = "".join(f'<td class="num">{_e(_text(v))}</td>' if _is_number(v) else f"<td>{_e(_text(v))}</td>" for v in record)
        rows.append(f"<tr>{cells}</tr>")
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(rows)}</table></div>'


def _section(panel_id: str, title: str, body: str) -> str:
    return f'<section id="{panel_id}"><h2>{_e(title)}</h2>{body}</section>'


def _nothing(why: str) -> str:
    return f'<p class="empty">nothing yet: {_e(why)}</p>'


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _short(label: str, limit: int = 40) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


def _when(value: Any) -> str:
    """A window start: the date, and the time when it is not midnight."""
    ts = pd.Timestamp(value)
    return f"{ts:%Y-%m-%d}" if ts == ts.normalize() else f"{ts:%Y-%m-%d %H:%M}"


def _text(value: Any) -> str:
    """A cell as a reader wants it: 4 significant digits, whole floats without '.0', blanks for missing."""
    if value is None or (not isinstance(value, str) and pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        ts = pd.Timestamp(value)
        return f"{ts:%Y-%m-%d}" if ts == ts.normalize() else ts.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, (float, np.floating)):
        return f"{int(value)}" if float(value).is_integer() and abs(float(value)) < 1e15 else f"{value:.4g}"
    return str(value)
