"""The built book works offline: every page loads with no request to another host, no console error,
its math typeset and its Altair charts drawn (headless Chromium via Playwright).

Builds the book in place (``jupyter-book build .``; chapters are cached in ``_build/.jupyter_cache``, so
a rebuild is quick), serves ``_build/html`` on 127.0.0.1 and opens every page.

Environment:

- ``SASUTILS_SKIP_BOOK=1``: skip these tests.
- ``SASUTILS_BOOK_HTML=<dir>``: test that already-built HTML folder instead of building.
- ``SASUTILS_CHROMIUM=<path>``: the Chromium binary (default ``/usr/bin/chromium``, Debian's
  ``chromium`` package). Playwright drives it; no ``playwright install`` browser download is needed.
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("SASUTILS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
DEMO_PAGE = "book/figures_demo.html"
# ours, Altair's own renderers' divs, and any other vega-embed target
CHART_SELECTOR = '.sasutils-chart, [id^="altair-viz-"], .vega-embed'
DRAWN_JS = """sel => [...document.querySelectorAll(sel)].every(
    d => d.querySelector('canvas, svg.marks') !== null)"""
MATH_DONE_JS = """() => document.querySelectorAll('.math').length === 0
    || document.querySelectorAll('mjx-container').length > 0"""

pytestmark = pytest.mark.skipif(os.environ.get("SASUTILS_SKIP_BOOK") == "1", reason="SASUTILS_SKIP_BOOK=1")


def test_vendored_versions_match_altair():
    """The committed Vega files are the versions the installed Altair writes specs for."""
    from sasutils import plots

    assert plots.check_vendored_versions() == [], "re-vendor with `bash book/vendor_js.sh`"
    for name in ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js", "mathjax/tex-chtml.js"):
        assert (plots.VENDOR_DIR / name).stat().st_size > 10_000, name


# --- fixtures: built book, local server, browser ---


def _jupyter_book() -> str | None:
    near = Path(sys.executable).with_name("jupyter-book")
    return str(near) if near.exists() else shutil.which("jupyter-book")


@pytest.fixture(scope="module")
def html_dir() -> Path:
    given = os.environ.get("SASUTILS_BOOK_HTML")
    if given:
        return Path(given)
    jb = _jupyter_book()
    if jb is None:
        pytest.skip("jupyter-book is not installed")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    # conftest.py sets SASUTILS_SMOKE=1 for notebooks under pytest; the book is built as `make book`
    # builds it, so the execution cache it shares with `make book` never holds smoke-sized outputs.
    env.pop("SASUTILS_SMOKE", None)
    proc = subprocess.run([jb, "build", str(REPO)], cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"jupyter-book build failed:\n{log[-6000:]}"
    assert "Executing notebook failed" not in log, log[-6000:]
    return REPO / "_build" / "html"


@pytest.fixture(scope="module")
def base_url(html_dir: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(html_dir)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set SASUTILS_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; no browser download needed)")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # fresh --user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()


class PageLog:
    """What one page did: foreign requests (blocked), failed/404 local requests, console errors."""

    def __init__(self):
        self.foreign: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        self.pending: dict[object, str] = {}  # requests started and not yet finished or failed

    def problems(self) -> list[str]:
        return (
            [f"request to another host: {u}" for u in self.foreign]
            + [f"failed request: {u}" for u in self.failed]
            + [f"console error: {e}" for e in self.errors]
        )


def _open(context, url: str):
    """Open ``url`` with every non-local request recorded and aborted; returns (page, log)."""
    log = PageLog()
    page = context.new_page()

    def route(r):
        parsed = urlparse(r.request.url)
        if parsed.scheme in ("http", "https", "ws", "wss") and parsed.hostname not in LOCAL_HOSTS:
            log.foreign.append(r.request.url)
            r.abort()
        else:
            r.continue_()

    page.route("**/*", route)
    page.on("request", lambda r: log.pending.__setitem__(r, r.url))
    page.on("requestfinished", lambda r: log.pending.pop(r, None))
    page.on("requestfailed", lambda r: log.pending.pop(r, None))
    page.on("console", lambda m: log.errors.append(f"{m.text} ({m.location.get('url', '')})") if m.type == "error" else None)
    page.on("pageerror", lambda e: log.errors.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: log.failed.append(f"{r.url} ({r.failure})") if r.url not in log.foreign else None)
    page.on("response", lambda r: log.failed.append(f"{r.url} (HTTP {r.status})") if r.status >= 400 else None)
    page.goto(url, wait_until="load", timeout=60_000)
    return page, log


def _settle(page, log: PageLog, quiet_ms: int = 500, timeout_ms: int = 60_000) -> list[str]:
    """Wait until no request has been in flight for ``quiet_ms`` (late fonts, lazy scripts); returns the
    URLs still pending after ``timeout_ms`` (empty when the page settled). Playwright's own
    ``networkidle`` wait says only "timeout", not which request kept the page busy."""
    quiet, waited = 0, 0
    while waited < timeout_ms:
        quiet = quiet + 100 if not log.pending else 0
        if quiet >= quiet_ms:
            return []
        page.wait_for_timeout(100)
        waited += 100
    return sorted(set(log.pending.values()))


def _pages(html_dir: Path) -> list[str]:
    """Every page of the current build: its documents (from the search index, so pages left over from
    an earlier table of contents are not counted) and the top-level pages (index, genindex, search...)."""
    index = (html_dir / "searchindex.js").read_text()
    docnames = json.loads(index[index.index("(") + 1 : index.rindex(")")])["docnames"]
    pages = {f"{d}.html" for d in docnames} | {p.name for p in html_dir.glob("*.html")}
    missing = sorted(p for p in pages if not (html_dir / p).exists())
    assert not missing, f"pages in the search index but not built: {missing}"
    return sorted(pages)


# --- tests ---


def test_every_page_offline(browser, html_dir, base_url):  # browser first: skip before building
    """Every page: only local requests, no failed request, no console error, math typeset, charts drawn."""
    pages = _pages(html_dir)
    assert DEMO_PAGE in pages and "book/intro.html" in pages, pages
    report: dict[str, list[str]] = {}
    charts = 0
    for rel in pages:
        page, log = _open(browser, base_url + rel)
        problems = log.problems()
        n = page.locator(CHART_SELECTOR).count()
        charts += n
        if n:
            try:
                page.wait_for_function(DRAWN_JS, arg=CHART_SELECTOR, timeout=30_000)
            except Exception:
                problems.append(f"{n} chart(s), not all drawn (no <canvas>/svg.marks)")
        try:
            page.wait_for_function(MATH_DONE_JS, timeout=30_000)
        except Exception:
            problems.append("math not typeset (no mjx-container)")
        problems += [f"request still pending after 60 s: {u}" for u in _settle(page, log)]
        problems += [p for p in log.problems() if p not in problems]
        page.close()
        if problems:
            report[rel] = problems
    assert not report, "book pages with problems:\n" + "\n".join(
        f"{rel}:\n  " + "\n  ".join(sorted(set(ps))) for rel, ps in report.items()
    )
    assert charts >= 1, "no chart found on any page (the demo chapter should have one)"


def _ink(png: bytes) -> int:
    """Pixels that are not near-white."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("L")
    return sum(img.histogram()[:235])


def test_demo_chart_draws_and_reacts(browser, base_url):
    """The demo chart is visibly drawn, has its slider and legend, and redraws when the slider moves."""
    page, log = _open(browser, base_url + DEMO_PAGE)
    # the page's first chart is the demo; the attention-arc example follows it
    assert page.locator(".sasutils-chart").count() >= 1, "no chart made by sasutils.plots.use_offline_renderer()"
    chart = page.locator(".sasutils-chart").first
    page.wait_for_function(DRAWN_JS, arg=".sasutils-chart", timeout=30_000)
    chart.scroll_into_view_if_needed()
    slider = chart.locator("input[type=range]")
    assert slider.count() == 1, "the chart's slider (alt.binding_range) is missing"
    before = chart.screenshot()
    width, height = chart.bounding_box()["width"], chart.bounding_box()["height"]
    assert width > 300 and height > 200, (width, height)
    ink = _ink(before)
    assert ink > 0.01 * width * height, f"chart looks blank: {ink} non-white pixels in {width:.0f}x{height:.0f}"
    # tooltip: hover a data point (vega-embed 7 draws SVG: g.mark-symbol > path, one per point)
    points = chart.locator("g.mark-symbol.role-mark path")
    assert points.count() > 10, "no SVG points to hover (did the vega-embed renderer change from svg?)"
    points.nth(points.count() // 2).hover(force=True)
    page.wait_for_selector("#vg-tooltip-element.visible", timeout=5_000)
    # legend selection: clicking a legend entry dims the other series
    chart.locator("g.mark-symbol.role-legend-symbol path").first.click(force=True)
    page.wait_for_timeout(500)
    picked = chart.screenshot()
    assert picked != before, "clicking the legend did not change the chart"
    # slider: drag it to its minimum, fewer points are drawn
    slider.evaluate("el => { el.value = el.min; el.dispatchEvent(new Event('input', {bubbles: true})); }")
    page.wait_for_timeout(500)
    after = chart.screenshot()
    assert after != picked, "moving the slider did not change the chart"
    page.close()
    assert not log.problems(), log.problems()
