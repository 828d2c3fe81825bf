"""The HTML report in a real browser: headless Chromium through Playwright.

Opens the report of a small study (synthetic run folders with real matplotlib
PNGs, plus the `demo` experiment in the slow test) and checks what a reader
sees: the page loads with no console error, no failed or outgoing request,
every figure is decoded and laid out at a non-zero size, and every link of
the table of contents lands on an element (and scrolls it into view).

Needs Debian's ``chromium`` (or any Chromium: set ``ACTIONLAB_CHROMIUM`` to
its path) and the ``playwright`` Python package — ``make install-browser``
installs both on CI. Playwright's own browser download is never used. Skipped,
with the reason, where either is missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

from actionlab.report import build_report
from actionlab.study import run_study

_spec = importlib.util.spec_from_file_location("_study_helpers", Path(__file__).with_name("test_study.py"))
_helpers = sys.modules.setdefault("_study_helpers", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(_helpers)
make_experiment, tiny_demo = _helpers.make_experiment, _helpers.tiny_demo

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
INSTALL_HINT = "run `make install-browser` (Debian: apt-get install chromium; pip install playwright)"


def _chromium() -> str | None:
    env = os.environ.get("ACTIONLAB_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    if exe is None:
        pytest.skip(f"no Chromium found (looked for chromium, chromium-browser, google-chrome, $ACTIONLAB_CHROMIUM): {INSTALL_HINT}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(f"the playwright package is not installed: {INSTALL_HINT}")
    with sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS, headless=True, timeout=60_000)
        except Exception as exc:  # a Chromium too old or too new for this Playwright, a broken install
            pytest.skip(f"Chromium at {exe} could not be started by Playwright ({str(exc).splitlines()[0]}): {INSTALL_HINT}")
        yield b
        b.close()


def check_report_in_browser(browser, html_path: Path, expected_figures: int) -> dict:
    """Load the report as a reader would and assert what they must see; returns what was measured."""
    context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    console_errors: list[str] = []
    page_errors: list[str] = []
    failed: list[str] = []
    outgoing: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.on("requestfailed", lambda r: failed.append(r.url))

    def route(r):
        if r.request.url.startswith(("file:", "data:")):
            r.continue_()
        else:
            outgoing.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    response = page.goto(html_path.resolve().as_uri(), wait_until="load")
    assert response is None or response.ok
    assert page.title() == "actionlab report"

    images = page.evaluate(
        """() => Array.from(document.images).map(img => {
               const r = img.getBoundingClientRect();
               return {alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth,
                       naturalHeight: img.naturalHeight, width: r.width, height: r.height,
                       inFigure: img.closest('figure') !== null};
           })"""
    )
    assert len(images) == expected_figures
    for img in images:
        assert img["complete"] and img["naturalWidth"] > 0 and img["naturalHeight"] > 0, img
        assert img["width"] > 0 and img["height"] > 0, img
        assert img["inFigure"], img
    for handle in page.query_selector_all("figure img"):
        box = handle.bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0

    targets = page.evaluate(
        """() => Array.from(document.querySelectorAll('nav#toc a[href^="#"]')).map(a => {
               const id = decodeURIComponent(a.getAttribute('href').slice(1));
               return {id: id, found: document.getElementById(id) !== null};
           })"""
    )
    assert len(targets) >= 7  # overview, five documents, the coverage table at least
    unresolved = [t["id"] for t in targets if not t["found"]]
    assert unresolved == [], f"table-of-contents links with no target: {unresolved}"
    # following a link scrolls its target into view
    height = page.evaluate("() => window.innerHeight")
    for t in targets:
        page.click(f'nav#toc a[href="#{t["id"]}"]')
        top = page.evaluate(f"() => document.getElementById({t['id']!r}).getBoundingClientRect().top")
        assert -2 <= top < height, (t["id"], top)
        assert page.evaluate("() => location.hash") == f"#{t['id']}"
    # every other in-page link (claim -> run, figure -> run) resolves too
    dangling = page.evaluate(
        """() => Array.from(document.querySelectorAll('a[href^="#"]'))
                 .map(a => a.getAttribute('href').slice(1))
                 .filter(id => document.getElementById(decodeURIComponent(id)) === null)"""
    )
    assert dangling == []

    # figures are legible: a figure of 640 px or more fills the page's column, and a click on any
    # figure enlarges it to the window (a CSS toggle, no script); a second click closes it
    column = page.evaluate("() => document.querySelector('main').clientWidth")
    for handle in page.query_selector_all("figure img.full"):
        assert handle.bounding_box()["width"] >= 0.9 * (column - 64), (handle.bounding_box(), column)
    first = page.query_selector("figure img")
    if first is not None:
        first.scroll_into_view_if_needed()
        before = first.bounding_box()
        first.click()
        zoomed = first.bounding_box()
        assert zoomed["width"] >= 1280 - 2 and zoomed["height"] >= 900 - 2, zoomed
        first.click()
        after = first.bounding_box()
        assert abs(after["width"] - before["width"]) < 1, (before, after)

    assert console_errors == [], console_errors
    assert page_errors == [], page_errors
    assert failed == [] and outgoing == [], (failed, outgoing)
    context.close()
    return {"images": images, "toc": targets}


def test_report_in_headless_chromium(browser, tmp_path):
    reg = {
        "expansion-like": make_experiment("expansion-like", sources=("000", "001"), order=1, figure=True),
        "fisher-like": make_experiment("fisher-like", sources=("004",), order=2, figure=True, verdict="does not hold"),
        "broken": make_experiment("broken", sources=("003",), order=3, fail=RuntimeError("diverged")),
    }
    run_study(tmp_path, preset="quick", experiments=reg, progress=False, log=lambda s: None)
    files = build_report([tmp_path], registry=reg)
    seen = check_report_in_browser(browser, files.html, expected_figures=2)
    ids = {t["id"] for t in seen["toc"]}
    assert {"doc-000", "doc-001", "doc-002", "doc-003", "doc-004", "run-expansion-like", "problems"} <= ids
    # the embedded PNGs are decoded at their real size (matplotlib 3×2 in at 120 dpi, tight bbox)
    for img in seen["images"]:
        assert 200 <= img["naturalWidth"] <= 400 and 120 <= img["naturalHeight"] <= 300, img


@pytest.mark.slow
def test_demo_report_in_headless_chromium(browser, tmp_path):
    """The report of the real `demo` experiment (one epoch) beside a synthetic run."""
    from actionlab.experiments import load_all

    reg = load_all()
    if "demo" not in reg:
        pytest.skip("the `demo` experiment is not registered in this version")
    exps = [tiny_demo(reg), make_experiment("fisher-like", sources=("004",), figure=True)]
    study = run_study(tmp_path, preset="quick", experiments=exps, progress=False, log=lambda s: None)
    assert study.counts == {"done": 2}, [e.traceback for e in study.entries]
    figures = len(_helpers.json.loads((tmp_path / "demo" / "results.json").read_text())["figures"]) + 1
    files = build_report([tmp_path])
    check_report_in_browser(browser, files.html, expected_figures=figures)
