"""Headless Chromium driven over the DevTools protocol, for the browser tests of the dashboard.

The protocol runs over ``--remote-debugging-pipe`` (Chromium reads commands on fd 3 and
writes replies on fd 4, each message JSON ended by a NUL byte), so no port is opened and no
WebSocket client is needed. A :class:`Browser` opens one page; :meth:`Browser.goto`,
:meth:`Browser.click` and :meth:`Browser.html` are what a person at the keyboard would do.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

# Debian's package is `chromium`, Ubuntu's `chromium-browser`; .ci/run installs Debian's.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
MISSING = f"chromium is not installed (no chromium on PATH, no {CHROMIUM}): apt-get install chromium"
"""The reason a browser test skips without it (in CI, a failure)."""

_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
)


def chromium_installed() -> bool:
    return Path(CHROMIUM).exists()


class Browser:
    """One headless Chromium with one page (a fresh profile under ``profile``); close it with :meth:`close`."""

    def __init__(self, profile: Path, width: int = 1280, height: int = 1900) -> None:
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # Chromium wants the pipe on fds 3 and 4: copy both ends above them, then place them in the child.
        child_in = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
        child_out = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)

        def place_fds() -> None:
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            pass_fds=(3, 4),  # kept open in the child: preexec_fn runs before the other fds are closed
            preexec_fn=place_fds,  # noqa: PLW1509 (the test process starts no threads that fork)
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in (to_chrome_r, from_chrome_w, child_in, child_out):
            os.close(fd)
        self._out = os.fdopen(to_chrome_w, "wb", buffering=0)
        self._in = os.fdopen(from_chrome_r, "rb", buffering=0)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.send("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True)[
            "sessionId"
        ]
        self.send("Page.enable")
        self.send("Network.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    # -- the protocol ----------------------------------------------------------------------------
    def _read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise TimeoutError("chromium did not answer")
            import select

            ready, _, _ = select.select([self._in], [], [], 0.5)
            if ready:
                chunk = os.read(self._in.fileno(), 1 << 20)
                if not chunk:
                    raise ConnectionError("chromium closed the DevTools pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)  # type: ignore[no-any-return]

    def send(self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False,
             timeout: float = 60.0) -> dict[str, Any]:
        """Run one DevTools command (on the page unless ``browser``) and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if not browser:
            message["sessionId"] = self.session
        self._out.write(json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})  # type: ignore[no-any-return]
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60.0) -> dict[str, Any]:
        """The first event ``method`` seen since the last wait (waiting for it if need be)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    del self.events[: i + 1]
                    return event
            self.events.clear()
            self.events.append(self._read(max(deadline - time.monotonic(), 0.1)))

    # -- what a person does ------------------------------------------------------------------------
    def goto(self, url: str) -> str:
        """Open ``url`` (as if typed into the address bar); the page's final URL after redirects."""
        self.events.clear()
        self.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")
        return self.location()

    def click(self, selector: str) -> str:
        """Click the element ``selector`` names and wait for the page it leads to; its URL."""
        self.events.clear()
        self.eval(f"document.querySelector({json.dumps(selector)}).click()")
        self.wait_event("Page.loadEventFired")
        return self.location()

    def type(self, selector: str, text: str) -> None:
        """Put ``text`` into the input field ``selector`` names."""
        self.eval(f"document.querySelector({json.dumps(selector)}).value = {json.dumps(text)}")

    def eval(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result.get("result", {}).get("value")

    def location(self) -> str:
        return str(self.eval("location.href"))

    def html(self) -> str:
        """The page's DOM as HTML (what ``chromium --dump-dom`` prints)."""
        return str(self.eval("document.documentElement.outerHTML"))

    def cookies(self) -> list[dict[str, Any]]:
        """Every cookie the browser holds, with its attributes (httpOnly, sameSite, secure, expires...)."""
        return list(self.send("Storage.getCookies", browser=True)["cookies"])

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.send("Browser.close", browser=True, timeout=10)
        except (OSError, TimeoutError, ConnectionError, RuntimeError):
            pass
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for f in (self._in, self._out):
            f.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
