import datetime as dt
import html
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from lib.core.errors import ConfigError
from lib.monitoring import dashboard

CHROMIUM = Path("/usr/bin/chromium")
# Debian's Chromium, headless; the last flags stop its background connections (none reach out here).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WINDOWS = list(pd.date_range("2013-10-01", periods=4, freq="D"))
EVIL = "<script>alert(1)</script>"
GENERATED = dt.datetime(2013, 10, 5, 12, 30, tzinfo=dt.UTC)


def drift() -> pd.DataFrame:
    """3 columns x 4 windows; `distance` is undefined on 10-02, `dep_delay` holds the max 0.5."""
    values = [[0.0, 0.1, 0.2, 0.5], [0.05, np.nan, 0.1, 0.1], [0.25, 0.3, 0.2, 0.1]]
    return pd.DataFrame(values, index=["dep_delay", "distance", EVIL], columns=WINDOWS)


def quality() -> pd.DataFrame:
    rows = [
        (w, m, 1000, np.nan if k == 1 else 800, np.nan if (m, k) == ("1", 1) else 0.8, auc)
        for m, aucs in (("1", [0.8, np.nan, 0.7, 0.75]), ("2", [0.85, 0.84, 0.83, 0.82]))
        for k, (w, auc) in enumerate(zip(WINDOWS, aucs))
    ]
    return pd.DataFrame(rows, columns=["window", "model_id", "count", "labelled_count", "accuracy", "roc_auc"])


def infra() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "window": WINDOWS,
            "served_entity": "flights-1",
            "requests": [100, 120, 90, 110],
            "errors": [0, 2, 0, 1],
            "error_rate": [0.0, 2 / 120, 0.0, 1 / 110],
            "p50_ms": [4.0, 5.0, 4.5, 4.2],
            "p99_ms": [20.0, 31.0, 25.0, 22.0],
        }
    )


def alert_history(evaluations: int = 3) -> pd.DataFrame:
    """Rule `temp_drift` evaluated once a day (TRIGGERED on the last day), `auc_drop` once, ERROR."""
    days = pd.date_range("2013-10-01 06:00", periods=evaluations, freq="D")
    rows = [
        (
            "temp_drift",
            t,
            t.date(),
            "TRIGGERED" if k == evaluations - 1 else "OK",
            "OK",
            0.1 * k,
            k % 3,
            3,
            f"evaluation {k}",
            "warning",
            k == evaluations - 1,
            "notify",
        )
        for k, t in enumerate(days)
    ]
    rows.append(
        ("auc_drop", days[0], days[0].date(), "ERROR", None, np.nan, 0, 0, "query failed: x < y & z", "critical", True, "notify")
    )
    return pd.DataFrame(
        rows,
        columns=[
            "name",
            "evaluated_at",
            "as_of",
            "state",
            "previous_state",
            "value",
            "met",
            "windows",
            "reason",
            "severity",
            "acted",
            "actions",
        ],
    )


def timeline() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "step": [1, 2],
            "as_of": [dt.date(2013, 10, 2), dt.date(2013, 10, 3)],
            "champion": ["1", "2"],
            "retrained": [False, True],
        }
    )


def page(**overrides) -> str:
    frames = {
        "drift": drift(),
        "quality": quality(),
        "infra": infra(),
        "alerts": alert_history(),
        "timeline": timeline(),
        **overrides,
    }
    return dashboard.render("dev", "flights_payload", generated_at=GENERATED, **frames)


def section(text: str, panel: str) -> str:
    found = re.findall(rf'<section id="{panel}">(.*?)</section>', text, flags=re.S)
    assert len(found) == 1, f"expected one section #{panel}, found {len(found)}"
    return found[0]


def cells(text: str) -> list[tuple[str, str]]:
    """(fill, tooltip) of each heat map cell, in document order."""
    return [
        (fill, html.unescape(tip))
        for fill, tip in re.findall(r'<rect class="cell" [^>]*fill="([^"]+)"><title>([^<]*)</title></rect>', text)
    ]


def expected_tooltips() -> list[str]:
    return [
        "dep_delay, 2013-10-01: 0",
        "dep_delay, 2013-10-02: 0.1",
        "dep_delay, 2013-10-03: 0.2",
        "dep_delay, 2013-10-04: 0.5",
        "distance, 2013-10-01: 0.05",
        "distance, 2013-10-02: n/a",
        "distance, 2013-10-03: 0.1",
        "distance, 2013-10-04: 0.1",
        f"{EVIL}, 2013-10-01: 0.25",
        f"{EVIL}, 2013-10-02: 0.3",
        f"{EVIL}, 2013-10-03: 0.2",
        f"{EVIL}, 2013-10-04: 0.1",
    ]


def test_the_page_names_the_table_and_environment_and_has_every_panel_in_order():
    text = page()
    assert "<title>monitoring: flights_payload (dev)</title>" in text
    assert "<h1>monitoring: flights_payload (dev)</h1>" in text
    assert "generated 2013-10-05 12:30:00+00:00" in text
    ids = re.findall(r'<section id="(\w+)"><h2>', text)
    assert ids == list(dashboard.PANELS)
    assert "nothing yet" not in text


def test_the_timeline_panel_is_left_out_without_a_timeline():
    text = page(timeline=None)
    assert re.findall(r'<section id="(\w+)">', text) == ["drift", "quality", "serving", "alerts"]
    assert 'href="#timeline"' not in text


@pytest.mark.parametrize(
    "frame,panel,why",
    [
        ("drift", "drift", "no drift metrics"),
        ("quality", "quality", "no window profiled"),
        ("infra", "serving", "no request served"),
        ("alerts", "alerts", "no alert evaluated"),
        ("timeline", "timeline", "no workflow step recorded"),
    ],
)
def test_an_empty_frame_says_nothing_yet_and_why(frame, panel, why):
    text = page(**{frame: pd.DataFrame()})
    assert f'<p class="empty">nothing yet: {why}' in section(text, panel)
    assert text.count("nothing yet") == 1  # the other panels still show their data


def test_all_frames_empty_still_renders_every_panel():
    empty = pd.DataFrame()
    text = page(drift=empty, quality=empty, infra=empty, alerts=empty, timeline=empty)
    assert text.count('<p class="empty">nothing yet: ') == 5
    assert "<svg" not in text and "<table" not in text


def test_the_heat_map_has_a_cell_per_column_and_window_with_its_tooltip_and_colour():
    text = section(page(), "drift")
    found = cells(text)
    assert len(found) == 3 * 4
    assert [tip for _, tip in found] == expected_tooltips()
    fills = dict((tip, fill) for fill, tip in found)
    assert fills["distance, 2013-10-02: n/a"] == dashboard.NAN_FILL
    assert [fill for fill, _ in found].count(dashboard.NAN_FILL) == 1
    assert fills["dep_delay, 2013-10-01: 0"] == "#440154"  # viridis' bottom: 0
    assert fills["dep_delay, 2013-10-04: 0.5"] == "#fde725"  # viridis' top: the max
    assert re.findall(r">(\d\d-\d\d)</text>", text) == ["10-01", "10-02", "10-03", "10-04"]


def test_text_from_data_is_escaped():
    text = dashboard.render(
        "dev",
        "a<b>&c",
        drift=drift(),
        quality=quality().assign(model_id="<i>"),
        infra=infra(),
        alerts=alert_history(),
        generated_at=GENERATED,
    )
    assert "<script" not in text and "<i>" not in text and "<b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section(text, "drift")
    assert "<title>monitoring: a&lt;b&gt;&amp;c (dev)</title>" in text
    assert "query failed: x &lt; y &amp; z" in section(text, "alerts")
    assert "model &lt;i&gt; roc_auc" in section(text, "quality")


def test_a_missing_quality_value_is_a_gap_in_its_line_not_a_zero():
    text = section(page(), "quality")
    points = [html.unescape(t) for t in re.findall(r'<circle class="point"[^>]*><title>([^<]*)</title>', text)]
    assert [p for p in points if p.startswith("model 1 roc_auc")] == [
        "model 1 roc_auc, 2013-10-01: 0.8",
        "model 1 roc_auc, 2013-10-03: 0.7",
        "model 1 roc_auc, 2013-10-04: 0.75",
    ]
    paths = re.findall(r'<path class="series" d="([^"]+)"', text)
    # model 1: roc_auc and accuracy each break at 10-02; model 2's roc_auc is whole, its accuracy too
    assert [d.count("M") for d in paths] == [2, 2, 1, 1]
    assert [len(d.split()) for d in paths] == [3, 3, 4, 4]
    assert (
        '<tr><td>2013-10-02</td><td>1</td><td class="num">1000</td>' + '<td class="num"></td>' * 3 + "</tr>"
    ) in text  # model 1 on 10-02: blanks


def test_quality_without_labels_yet_draws_no_line_but_lists_the_windows():
    unlabelled = quality().assign(labelled_count=np.nan, accuracy=np.nan, roc_auc=np.nan)
    text = section(page(quality=unlabelled), "quality")
    assert '<path class="series"' not in text and '<circle class="point"' not in text
    assert text.count("<tr><td>2013-10-0") == 8  # 4 windows x 2 models


def test_a_regressions_quality_charts_its_errors_from_zero():
    errors = quality().rename(columns={"roc_auc": "root_mean_squared_error", "accuracy": "mean_absolute_error"})
    errors[["root_mean_squared_error", "mean_absolute_error"]] *= 20  # units, not a share
    text = section(page(quality=errors), "quality")
    points = [html.unescape(t) for t in re.findall(r'<circle class="point"[^>]*><title>([^<]*)</title>', text)]
    assert "model 2 root_mean_squared_error, 2013-10-01: 17" in points and "model 2 mean_absolute_error, 2013-10-01: 16" in points
    assert "roc_auc" not in text and "accuracy" not in text
    axis = re.findall(r'<text x="\d+" y="\d+" text-anchor="end">([^<]*)</text>', text)
    assert axis == ["18.7", "0"]  # 1.1 x the largest error (17), down to 0


def test_serving_charts_p50_and_p99_per_window():
    text = section(page(), "serving")
    points = [html.unescape(t) for t in re.findall(r'<circle class="point"[^>]*><title>([^<]*)</title>', text)]
    assert points == [f"flights-1 p50_ms, 2013-10-0{d}: {v}" for d, v in zip(range(1, 5), [4, 5, 4.5, 4.2])] + [
        f"flights-1 p99_ms, 2013-10-0{d}: {v}" for d, v in zip(range(1, 5), [20, 31, 25, 22])
    ]
    assert ">34.1</text>" in text  # the axis tops out 10 % above the slowest p99
    assert '<td class="num">0.01667</td>' in text  # error rate 2/120


def test_alerts_show_the_latest_state_per_rule_and_the_history_newest_first():
    text = section(page(alerts=alert_history(evaluations=3)), "alerts")
    current = re.findall(r'<tr><td>(\w+)</td><td><span class="state" style="background:(#\w+)">(\w+)</span>', text)
    assert current == [("auc_drop", "#ef6c00", "ERROR"), ("temp_drift", "#c62828", "TRIGGERED")]
    history = text.split("<h3>history</h3>")[1]
    assert re.findall(r"evaluation \d", history) == ["evaluation 2", "evaluation 1", "evaluation 0"]
    assert "showing the newest" not in history


def test_a_long_alert_history_is_capped_with_a_note():
    text = section(page(alerts=alert_history(evaluations=dashboard.HISTORY_ROWS + 5)), "alerts")
    history = text.split("<h3>history</h3>")[1]
    assert f"showing the newest {dashboard.HISTORY_ROWS} of {dashboard.HISTORY_ROWS + 6} evaluations" in history
    assert history.count("<tr>") == dashboard.HISTORY_ROWS + 1  # and the header
    assert re.search(r"evaluation \d+", history).group() == f"evaluation {dashboard.HISTORY_ROWS + 4}"


def test_path_for_puts_each_environment_in_its_folder(tmp_path):
    assert dashboard.path_for(tmp_path, "prod", "flights_payload") == tmp_path / "prod" / "flights_payload.html"


@pytest.mark.parametrize("env_name,table", [("..", "t"), ("dev", "../t"), ("dev", ""), ("a/b", "t")])
def test_path_for_refuses_names_that_leave_the_folder(tmp_path, env_name, table):
    with pytest.raises(ConfigError, match="plain file names"):
        dashboard.path_for(tmp_path, env_name, table)


def test_write_replaces_the_page_whole_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = dashboard.path_for(tmp_path, "dev", "t")
    assert dashboard.write(path, "<p>one</p>") == path
    dashboard.write(path, "<p>two</p>")
    assert path.read_text(encoding="utf-8") == "<p>two</p>"
    assert os.listdir(path.parent) == ["t.html"]
    assert path.stat().st_mode & 0o777 == 0o644

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(dashboard.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        dashboard.write(path, "<p>three</p>")
    assert path.read_text(encoding="utf-8") == "<p>two</p>"  # a failed write leaves the old page
    assert os.listdir(path.parent) == ["t.html"]


# --- In a real browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium; skipped where it is missing, unless LAKEHOUSE_REQUIRE_BROWSER=1 (CI)."""
    if not CHROMIUM.exists():
        message = f"no Chromium at {CHROMIUM}: install it with `apt-get install chromium`"
        if os.environ.get("LAKEHOUSE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"LAKEHOUSE_REQUIRE_BROWSER=1 but {message}", pytrace=False)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium):
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.mark.parametrize("empty", [False, True], ids=["full", "empty"])
def test_the_page_opens_in_chromium_without_errors_or_fetches(browser, tmp_path, empty):
    frames = {k: pd.DataFrame() for k in ("drift", "quality", "infra", "alerts", "timeline")} if empty else {}
    path = dashboard.write(dashboard.path_for(tmp_path, "dev", "flights_payload"), page(**frames))
    tab = browser.new_page(viewport={"width": 1280, "height": 800})
    errors, requests, dialogs = [], [], []
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("request", lambda request: requests.append(request.url))
    tab.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    tab.goto(path.as_uri())

    assert tab.title() == "monitoring: flights_payload (dev)"
    assert [tab.locator(f"section#{p} > h2").is_visible() for p in dashboard.PANELS] == [True] * 5
    titles = tab.eval_on_selector_all("#drift rect.cell > title", "els => els.map(e => e.textContent)")
    assert titles == ([] if empty else expected_tooltips())
    if empty:
        assert tab.locator("p.empty").count() == 5 and tab.locator("p.empty").first.is_visible()
    else:
        labels = tab.eval_on_selector_all("#drift svg text", "els => els.map(e => e.textContent)")
        assert EVIL in labels  # shown as text, never run (no dialog below)
        box = tab.locator("#drift rect.cell").first.bounding_box()
        assert (box["width"], box["height"]) == (43, 19)
    shot = tmp_path / "dashboard.png"
    tab.screenshot(path=shot, full_page=True)
    tab.close()

    assert requests == [path.as_uri()]  # the file itself, nothing fetched
    assert errors == []
    assert dialogs == []
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.width == 1280 and image.height >= 800
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > (8 if empty else 100)  # text and, when full, the heat map's colours
