"""The client wrapper fires Locust's request event for app calls and LND calls alike.

Locust patches the whole process at import, so the wrapper runs in a child
process (tests/loadtests/client_probe.py) against a real served app.
"""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from regtest_cluster.ports import PortAllocator
from regtest_cluster.waiting import wait_for


@pytest.fixture
def ping_app():
    port = PortAllocator().take()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.ping_app:app", "--port", str(port),
                             "--log-level", "warning"])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/ping").status_code == 200, timeout=30, what="ping app",
                 ignore=(httpx.HTTPError,))
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_client_fires_request_events_for_app_and_lnd_calls(ping_app):
    out = subprocess.run([sys.executable, "-m", "tests.loadtests.client_probe", ping_app], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(e["type"], e["name"], e["failed"]) for e in events] == [
        ("GET", "/ping", False),
        ("GET", "/missing/[id]", True),
        ("LND", "getinfo", False),
        ("LND", "pay", True),
    ]
    assert all(e["ms"] >= 0 for e in events)
