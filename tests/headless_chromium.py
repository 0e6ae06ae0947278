"""A real browser for the report's tests: headless Chromium (Debian's `chromium`) driven over the DevTools
protocol on a pipe (`--remote-debugging-pipe`: fds 3 and 4, NUL-terminated JSON), so nothing listens on a port
and nothing beyond the standard library is needed.

    with Browser() as b:
        page = b.open(Path("report.html"), width=1280, height=900)
        page.evaluate("document.title")
        page.screenshot(Path("shot.png"))
        page.problems          # console errors / warnings, uncaught exceptions, log entries (CSP, network)

`find_chromium()` is None when no browser is installed (CI installs Debian's package: .ci/run).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class CDPError(RuntimeError):
    pass


class Browser:
    def __init__(self, binary: str | None = None, timeout: float = 60.0):
        self.binary = binary or find_chromium()
        if not self.binary:
            raise FileNotFoundError("no chromium on PATH: apt-get install chromium")
        self.timeout = timeout
        self._id = 0
        self._buf = b""
        self.events: list[dict] = []

    def __enter__(self) -> "Browser":
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        self._log = open(Path(self._profile.name) / "chromium.stderr", "w+b")
        cmd_r, cmd_w = os.pipe()  # we write commands -> chromium reads fd 3
        res_r, res_w = os.pipe()  # chromium writes fd 4 -> we read
        # the child's ends moved above fd 9, so putting them on 3 and 4 never closes one of them
        high = []
        for fd in (cmd_r, res_w):
            high.append(fcntl.fcntl(fd, fcntl.F_DUPFD, 10))
            os.close(fd)
        cmd_r, res_w = high
        argv = [self.binary, *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"]
        # bash puts the two pipe ends on fds 3 and 4, where --remote-debugging-pipe looks for them
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{cmd_r} 4>&{res_w} {cmd_r}<&- {res_w}>&-', "bash", *argv],
            pass_fds=(cmd_r, res_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            start_new_session=True,
        )
        os.close(cmd_r)
        os.close(res_w)
        self._w, self._r = cmd_w, res_r
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._w, self._r):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.seek(0)
        self.stderr = self._log.read().decode(errors="replace")  # the browser's own log (dbus noise and all)
        self._log.close()
        self._profile.cleanup()

    # -- protocol

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self._w, data)
            data = data[n:]
        return self._id

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self._r], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise CDPError(f"chromium closed the pipe (exit {self.proc.poll()})")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(
        self, method: str, params: dict | None = None, session: str | None = None, timeout: float | None = None
    ) -> dict:
        mid = self.send(method, params, session)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            msg = self._read_message(deadline)
            if msg.get("id") == mid:
                if "error" in msg:
                    raise CDPError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str, session: str | None, timeout: float | None = None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        for i, ev in enumerate(self.events):
            if ev.get("method") == method and ev.get("sessionId") == session:
                return self.events.pop(i)
        while True:
            msg = self._read_message(deadline)
            if msg.get("method") == method and msg.get("sessionId") == session:
                return msg
            self.events.append(msg)

    def open(self, path: Path, width: int = 1280, height: int = 900, mobile: bool = False) -> "Page":
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=session)
        page.resize(width, height, mobile)
        self.call("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=session)
        self.wait_event("Page.loadEventFired", session)
        page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))", await_promise=True)
        return page


class Page:
    def __init__(self, browser: Browser, session: str):
        self.b, self.session = browser, session

    def resize(self, width: int, height: int, mobile: bool = False) -> None:
        self.b.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
            session=self.session,
        )

    def media(self, media: str) -> None:
        self.b.call("Emulation.setEmulatedMedia", {"media": media}, session=self.session)

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        r = self.b.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": await_promise},
            session=self.session,
        )
        if "exceptionDetails" in r:
            raise CDPError(f"{expression[:60]}...: {r['exceptionDetails'].get('text')}")
        return r.get("result", {}).get("value")

    def screenshot(self, path: Path, full_page: bool = True, max_height: int | None = None) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.b.call("Page.getLayoutMetrics", session=self.session)["cssContentSize"]
            h = size["height"] if max_height is None else min(size["height"], max_height)
            params.update(
                captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": size["width"], "height": h, "scale": 1}
            )
        data = self.b.call("Page.captureScreenshot", params, session=self.session)["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def print_pdf(self) -> bytes:
        return base64.b64decode(self.b.call("Page.printToPDF", {"printBackground": True}, session=self.session)["data"])

    @property
    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions and the browser's own log entries (a blocked load,
        a CSP violation) this page produced, as text."""
        self.evaluate("0")  # drain what arrived so far
        out = []
        for ev in self.b.events:
            if ev.get("sessionId") != self.session:
                continue
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                out.append(
                    f"console.{p['type']}: "
                    + " ".join(str(a.get("value", a.get("description"))) for a in p.get("args", []))
                )
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append(f"exception: {d.get('text')} {d.get('exception', {}).get('description', '')}")
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
                e = p["entry"]
                out.append(f"log {e.get('source')} {e.get('level')}: {e.get('text')} {e.get('url', '')}")
        return out
