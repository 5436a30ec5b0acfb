"""Run as its own process (locust monkeypatches at import): drive MarketClient once
against a served app and print every request event it fired, as JSON lines.

    python -m tests.loadtests.client_probe http://127.0.0.1:PORT
"""

from __future__ import annotations

import json
import sys

from locust import FastHttpUser, events
from locust.env import Environment

from loadtests.client import CallFailed, MarketClient


class ProbeUser(FastHttpUser):
    abstract = True


def main(host: str) -> None:
    env = Environment(user_classes=[ProbeUser], events=events, host=host)
    seen = []
    env.events.request.add_listener(lambda request_type, name, response_time, exception, **_kw: seen.append(
        {"type": request_type, "name": name, "ms": response_time, "failed": exception is not None}))
    ProbeUser.host = host
    client = MarketClient(ProbeUser(env))
    client.call("GET", "/ping", name="/ping")
    try:
        client.call("GET", "/missing/7", name="/missing/[id]")
    except CallFailed:
        pass
    client.timed("LND", "getinfo", lambda: {"ok": True})
    try:
        client.timed("LND", "pay", lambda: 1 / 0)
    except ZeroDivisionError:
        pass
    for item in seen:
        print(json.dumps(item))


if __name__ == "__main__":
    main(sys.argv[1])
