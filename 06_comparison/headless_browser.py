"""Drive a headless Chromium over the Chrome DevTools Protocol (CDP); the only dependency is `websockets`.

    with HeadlessChromium() as browser:
        browser.open(Path("page.html").resolve().as_uri())
        browser.type_text("#query", "hello")
        print(browser.wait_for("document.querySelector('#out').textContent"))
        browser.screenshot("page.png", clip_selector="#out")
        browser.pump(0.2)                   # drain pending events before reading what they recorded
        assert not browser.console_errors and not browser.network_requests()

Commands and events share one websocket: `send` waits for the reply with its own "id" and records every
event that arrives meanwhile (console errors, uncaught exceptions, requested URLs).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
# --no-sandbox: we may run as root; the network-related flags keep a closed machine quiet
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--no-default-browser-check", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-extensions",
                  "--remote-debugging-port=0")
LOCAL_SCHEMES = ("file", "data", "blob", "about")
STARTUP_TIMEOUT = 20.0


def find_chromium() -> str | None:
    """The path of the first Chromium-like browser on PATH, or None."""
    return next((path for name in CHROMIUM_CANDIDATES if (path := shutil.which(name))), None)


class BrowserError(RuntimeError):
    """Chromium could not start, a CDP command failed, or the page threw or timed out."""


class HeadlessChromium:
    """A headless Chromium with one page; use it as a context manager so the browser always goes away."""

    def __init__(self, width: int = 1280, height: int = 900, timeout: float = 30.0, font_dirs=()):
        exe = find_chromium()
        if exe is None:
            raise BrowserError("no Chromium installed: apt-get install -y chromium")
        self.timeout = timeout
        self.console_errors: list[str] = []
        self.requests: list[str] = []
        self._loads = 0                     # Page.loadEventFired events seen so far
        self._replies: dict[int, dict] = {}
        self._next_id = 0
        self._ws = None
        self._profile = tempfile.mkdtemp(prefix="headless_chromium_")
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: a chatty browser never blocks on it
        env = dict(os.environ)
        if font_dirs:   # fonts the system lacks (a CJK font for Chinese screenshots), through fontconfig
            conf = Path(self._profile) / "fonts.conf"
            dirs = "".join(f"<dir>{Path(d).resolve()}</dir>" for d in font_dirs)
            conf.write_text('<?xml version="1.0"?><fontconfig><include ignore_missing="yes">'
                            f'/etc/fonts/fonts.conf</include>{dirs}<cachedir>{self._profile}/fontcache</cachedir></fontconfig>')
            env["FONTCONFIG_FILE"] = str(conf)
        # a session of its own, so close() can end the browser with all its helper processes
        try:
            self._proc = subprocess.Popen(
                [exe, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", f"--window-size={width},{height}",
                 "about:blank"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
                start_new_session=True, env=env)
        except OSError as err:
            self._stderr.close()
            shutil.rmtree(self._profile, ignore_errors=True)
            raise BrowserError(f"cannot start {exe}: {err}") from err
        try:
            self._ws = connect(self._page_url(self._wait_port()), max_size=None, proxy=None,
                               open_timeout=timeout)
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.send(f"{domain}.enable")
            # --window-size counts the (invisible) browser UI too: make the viewport exactly width x height
            self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                      mobile=False)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> HeadlessChromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection, end the browser and remove its temporary profile (safe to call twice)."""
        if self._ws is not None:
            self._ws.close()
            self._ws = None
        for sig in (signal.SIGTERM, signal.SIGKILL):   # politely first, then for sure
            if self._proc.poll() is not None:
                break
            try:
                os.killpg(self._proc.pid, sig)          # the browser with all its helper processes
            except (AttributeError, OSError):           # no process groups (Windows)
                self._proc.send_signal(sig)
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._stderr.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def _stderr_tail(self, chars: int = 2000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-chars:]

    def _wait_port(self) -> int:
        """The debugging port Chromium picked, read from <profile>/DevToolsActivePort."""
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            lines = port_file.read_text().splitlines() if port_file.exists() else []
            if len(lines) >= 2 and lines[0].isdigit():   # both lines: the file is completely written
                return int(lines[0])
            if self._proc.poll() is not None:
                raise BrowserError(f"Chromium exited with code {self._proc.returncode} at start:\n"
                                   f"{self._stderr_tail()}")
            time.sleep(0.05)
        raise BrowserError(f"Chromium did not report its debugging port within {STARTUP_TIMEOUT:.0f} s:\n"
                           f"{self._stderr_tail()}")

    def _page_url(self, port: int) -> str:
        """The websocket URL of the browser's first page target."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            with opener.open(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout) as reply:
                pages = [t for t in json.load(reply) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            if time.monotonic() > deadline:
                raise BrowserError(f"Chromium on port {port} shows no page target")
            time.sleep(0.05)

    def _receive(self, timeout: float) -> None:
        """Read one message (waiting at most `timeout` s): keep a reply for send(), record an event."""
        if self._ws is None:
            raise BrowserError("the browser is closed")
        try:
            message = json.loads(self._ws.recv(timeout=max(timeout, 0.0)))
        except TimeoutError:
            return
        except ConnectionClosed as err:
            raise BrowserError(f"Chromium closed the connection ({err}):\n{self._stderr_tail()}") from err
        if "id" in message:
            self._replies[message["id"]] = message
        else:
            self._record(message.get("method", ""), message.get("params", {}))

    def _record(self, method: str, params: dict) -> None:
        if method == "Page.loadEventFired":
            self._loads += 1
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.console_errors.append(" ".join(
                str(arg.get("value", arg.get("description", arg.get("type", "")))) for arg in params["args"]))
        elif method == "Runtime.exceptionThrown":
            self.console_errors.append(_exception_text(params["exceptionDetails"]))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            self.console_errors.append(entry["text"] + (f" ({entry['url']})" if entry.get("url") else ""))

    def pump(self, seconds: float = 0.1) -> None:
        """Record the events that arrive within `seconds` (call it before reading console_errors/requests)."""
        deadline = time.monotonic() + seconds
        while True:
            self._receive(deadline - time.monotonic())
            if time.monotonic() >= deadline:
                return

    def send(self, method: str, **params) -> dict:
        """Send one CDP command and return its "result"; events that arrive meanwhile are recorded."""
        self._next_id += 1
        msg_id = self._next_id
        if self._ws is None:
            raise BrowserError("the browser is closed")
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while msg_id not in self._replies:
            if time.monotonic() > deadline:
                raise BrowserError(f"no reply to {method} within {self.timeout} s")
            self._receive(deadline - time.monotonic())
        reply = self._replies.pop(msg_id)
        if "error" in reply:
            error = reply["error"]
            raise BrowserError(f"{method} failed: {error.get('message')} {error.get('data', '')}".rstrip())
        return reply.get("result", {})

    def open(self, url: str, timeout: float | None = None) -> None:
        """Navigate to `url` and wait for its load event."""
        loads = self._loads
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"cannot open {url}: {result['errorText']}")
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while self._loads == loads:
            if time.monotonic() > deadline:
                raise BrowserError(f"{url} did not finish loading")
            self._receive(deadline - time.monotonic())

    def evaluate(self, expression: str, await_promise: bool = False):
        """The value of a JavaScript expression in the page (JSON-like: numbers, strings, lists, dicts)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=await_promise)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {_exception_text(result['exceptionDetails'])}")
        value = result["result"]
        if "unserializableValue" in value:  # NaN, Infinity, -0, BigInt
            text = value["unserializableValue"]
            return int(text[:-1]) if text.endswith("n") else float(text)
        return value.get("value")           # undefined -> None

    def wait_for(self, expression: str, timeout: float | None = None, interval: float = 0.05):
        """Evaluate `expression` until it is truthy and return its value; an expression that throws
        (an element not there yet) counts as not yet true."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        last = None
        while True:
            try:
                value = self.evaluate(expression)
                if value:
                    return value
                last = f"last value {value!r}"
            except BrowserError as err:
                last = str(err)
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {expression!r} ({last})")
            self.pump(interval)

    def type_text(self, selector: str, text: str) -> None:
        """Replace the content of the element `selector` with `text` as if typed: the page gets 'input'
        events (focus, select all, delete, then Input.insertText)."""
        found = self.evaluate(f"""(el => {{
            if (!el) return false;
            el.focus();
            if (el.select) el.select(); else document.execCommand("selectAll");  // input, or editable
            document.execCommand("delete");
            return true;
        }})(document.querySelector({json.dumps(selector)}))""")
        if not found:
            raise BrowserError(f"no element matches {selector!r}")
        if text:
            self.send("Input.insertText", text=text)

    def screenshot(self, path: str | os.PathLike, clip_selector: str | None = None) -> Path:
        """Write a PNG of the viewport, or of the element `clip_selector`, atomically to `path`."""
        params: dict = {"format": "png"}
        if clip_selector is not None:
            box = self.evaluate(f"""(el => {{
                const r = el && el.getBoundingClientRect();  // page coordinates, as the clip wants them
                return r && {{x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height}};
            }})(document.querySelector({json.dumps(clip_selector)}))""")
            if not box or box["width"] <= 0 or box["height"] <= 0:
                raise BrowserError(f"no visible element matches {clip_selector!r}")
            params.update(clip={**box, "scale": 1}, captureBeyondViewport=True)
        data = base64.b64decode(self.send("Page.captureScreenshot", **params)["data"])
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # beside it: os.replace stays atomic
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return path

    def network_requests(self) -> list[str]:
        """The recorded URLs that went (or would have gone) to the network: not file:, data:, about: ..."""
        schemes = [(url, urlsplit(url).scheme) for url in self.requests]
        return [url for url, scheme in schemes
                if scheme not in LOCAL_SCHEMES and not scheme.startswith("chrome")]


def _exception_text(details: dict) -> str:
    """The message of a CDP exceptionDetails: the exception's description, else the plain text."""
    exception = details.get("exception") or {}
    return str(exception.get("description") or exception.get("value") or details.get("text", "exception"))
