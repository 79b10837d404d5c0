"""06_comparison/headless_browser.py (the gate explorer's tests and screenshots): a headless Chromium
driven over the DevTools protocol (skipped without Chromium)."""
import os
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "06_comparison"))
from headless_browser import BrowserError, HeadlessChromium, find_chromium  # noqa: E402

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="no Chromium installed: apt-get install -y chromium")

ECHO_PAGE = """<!doctype html><meta charset="utf-8">
<input id="t"><div id="out"></div>
<script>
  const t = document.getElementById("t"), out = document.getElementById("out");
  t.addEventListener("input", () => { out.textContent = t.value; });
</script>"""


@pytest.fixture(scope="module")
def browser():
    with HeadlessChromium(width=800, height=600, timeout=20) as b:
        yield b


@pytest.fixture
def page(browser, tmp_path):
    """open(html) writes `html` to a file, opens it over file:// and starts the event records afresh."""
    def open_page(html: str, name: str = "page.html"):
        browser.pump(0.05)                  # events of the previous page belong to the previous page
        browser.console_errors.clear()
        browser.requests.clear()
        path = tmp_path / name
        path.write_text(html, encoding="utf-8")
        browser.open(path.as_uri())
        return browser
    return open_page


def test_type_text_sends_real_input_events(page):
    b = page(ECHO_PAGE)
    b.type_text("#t", "hello")
    assert b.wait_for("document.getElementById('out').textContent", timeout=5) == "hello"
    b.type_text("#t", "bye")            # replaces the old content, not appends to it
    assert b.wait_for("document.getElementById('out').textContent === 'bye'", timeout=5)
    assert b.evaluate("document.getElementById('t').value") == "bye"
    with pytest.raises(BrowserError, match="no element"):
        b.type_text("#missing", "x")


def test_evaluate_returns_plain_values(page):
    b = page(ECHO_PAGE)
    assert b.evaluate("1 + 2") == 3
    assert b.evaluate("[1, 2.5, 'a', null]") == [1, 2.5, "a", None]
    assert b.evaluate("({a: 1, b: [true, false]})") == {"a": 1, "b": [True, False]}
    assert b.evaluate("undefined") is None
    assert b.evaluate("new Promise(r => setTimeout(() => r(7), 10))", await_promise=True) == 7
    with pytest.raises(BrowserError, match="boom"):
        b.evaluate("throw new Error('boom')")
    with pytest.raises(BrowserError, match="timed out waiting for"):
        b.wait_for("window.neverSet", timeout=0.2)
    with pytest.raises(BrowserError, match="No.such"):
        b.send("No.such")


def test_console_errors_and_uncaught_exceptions_are_recorded(page):
    b = page("<script>console.error('x')</script>", "console.html")
    b.pump(0.1)
    assert b.console_errors == ["x"]

    b = page("<script>throw new Error('thrown on purpose')</script>", "throws.html")
    b.pump(0.1)
    assert len(b.console_errors) == 1 and "thrown on purpose" in b.console_errors[0]

    b = page(ECHO_PAGE)
    b.pump(0.1)
    assert b.console_errors == []


def test_network_requests_lists_only_real_network(page):
    b = page(ECHO_PAGE)
    b.pump(0.1)
    assert b.requests and all(url.startswith("file:") for url in b.requests)  # the page itself is recorded
    assert b.network_requests() == []

    b = page('<img src="http://example.invalid/x.png"><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">',
             "remote.html")
    b.pump(0.1)
    assert b.network_requests() == ["http://example.invalid/x.png"]


def test_screenshot_writes_png(page, tmp_path):
    b = page(ECHO_PAGE)
    full = b.screenshot(tmp_path / "full.png")
    assert full.read_bytes().startswith(b"\x89PNG")
    assert int.from_bytes(full.read_bytes()[16:20], "big") == 800  # the PNG header's width: the viewport
    part = b.screenshot(tmp_path / "input.png", clip_selector="#t")
    assert part.read_bytes().startswith(b"\x89PNG")
    assert int.from_bytes(part.read_bytes()[16:20], "big") < 800
    # written atomically: no temporary file left beside them
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.png", "input.png", "page.html"]


def test_close_removes_profile():
    with HeadlessChromium() as b:
        profile, proc = b._profile, b._proc
        assert b.evaluate("navigator.userAgent")
    assert proc.poll() is not None
    assert not os.path.exists(profile)
