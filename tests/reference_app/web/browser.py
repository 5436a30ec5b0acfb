"""A real headless Chromium (Debian's chromium package) driven over the DevTools protocol:
fill a form, wait for the page's own script, read the DOM, take a screenshot, and record
every URL the page asked for. Hosts other than 127.0.0.1 do not resolve inside it, so a
page that needs a CDN fails here as it would in an offline lab."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from regtest_cluster.waiting import wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class Browser:
    def __init__(self, profile: Path, width: int = 1360, height: int = 900) -> None:
        if not Path(CHROMIUM).exists():
            pytest.fail("chromium is not installed: apt-get install chromium")
        profile.mkdir(parents=True, exist_ok=True)
        self.log = (profile / "chromium.log").open("w")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--no-first-run",
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", f"--user-data-dir={profile}",
             "--remote-debugging-port=0", f"--window-size={width},{height}", "about:blank"],
            stdout=self.log, stderr=subprocess.STDOUT)
        port_file = profile / "DevToolsActivePort"
        port = wait_for(lambda: port_file.is_file() and port_file.read_text().split("\n")[0].strip(),
                        timeout=60, what="chromium's DevTools port")
        pages = wait_for(lambda: [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json()
                                  if t["type"] == "page"], timeout=30, what="a chromium page", ignore=(httpx.HTTPError,))
        self._stack = ExitStack()
        self.ws = self._stack.enter_context(connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30))
        self.next_id = 0
        self.requested: list[str] = []
        self.call("Page.enable")
        self.call("Network.enable")

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        mine = self.next_id
        self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("method") == "Network.requestWillBeSent":
                self.requested.append(message["params"]["request"]["url"])
            if message.get("id") == mine:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_until(self, expression: str, timeout: float = 30, what: str | None = None):
        return wait_for(lambda: self.evaluate(expression), timeout=timeout, what=what or expression,
                        ignore=(RuntimeError,))   # "context destroyed" while a page navigates

    def open(self, url: str) -> None:
        self.evaluate("window.__old_page = true")
        self.call("Page.navigate", url=url)
        self.loaded(f"{url} to load")

    def loaded(self, what: str = "the next page to load") -> None:
        """After a navigation (open, a form's submit): the new page has loaded."""
        self.wait_until("!window.__old_page && document.readyState === 'complete'", what=what)

    def screenshot(self, path: Path, whole_page: bool = True) -> Path:
        """The whole page (or only the window)."""
        if not whole_page:
            shot = self.call("Page.captureScreenshot", format="png")
            path.write_bytes(base64.b64decode(shot["data"]))
            return path
        width = self.call("Page.getLayoutMetrics")["cssContentSize"]["width"]
        height = self.evaluate("Math.ceil(document.querySelector('main').getBoundingClientRect().bottom"
                               " + window.scrollY)")
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path
