"""The one client wrapper: times app calls and LND calls alike, and fires Locust's
request event for each, as Locust's custom-client example does.

App calls go through FastHttpUser's session (geventhttpclient) with
``catch_response``, so an unexpected status is a failure with the app's
problem+json code in its message (Locust's ``response_validations.py``
pattern). LND calls are any callable (the harness's typed REST client): the
wrapper times it and reports it as request type ``LND``. A whole escrow, from
order to settled payment, is reported as type ``ESCROW``.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from locust import FastHttpUser
from locust.exception import RescheduleTask

EXPECTED = (200, 201, 204)


class CallFailed(RescheduleTask):
    """An app call answered with an unexpected status: already counted as a failure, so the
    user's task just stops here (Locust reschedules it quietly)."""


def _json(resp) -> Any:
    if not resp.text:
        return {}
    try:
        return resp.json()
    except ValueError:
        return {"detail": resp.text[:200]}


class MarketClient:
    def __init__(self, user: FastHttpUser) -> None:
        self.http = user.client
        self.events = user.environment.events
        self.token = ""

    def _headers(self, auth: bool) -> dict:
        return {"Authorization": f"Bearer {self.token}"} if auth and self.token else {}

    def call(self, method: str, path: str, name: str | None = None, expect: tuple[int, ...] = EXPECTED,
             auth: bool = True, **kwargs) -> Any:
        """One app call, grouped under ``name`` (``/orders/[id]``); raises CallFailed on a bad status."""
        headers = {**self._headers(auth), **kwargs.pop("headers", {})}
        with self.http.request(method, path, name=name or path, headers=headers, catch_response=True,
                               **kwargs) as resp:
            body = _json(resp)
            if resp.status_code not in expect:
                problem = body if isinstance(body, dict) else {}
                message = (f"HTTP {resp.status_code} {problem.get('code', '')}: "
                           f"{problem.get('detail', (resp.text or resp.error or '')[:200])}")
                resp.failure(message[:300])
                raise CallFailed(message)
            return body

    def raw(self, method: str, path: str, name: str, expect: tuple[int, ...] = EXPECTED, **kwargs) -> None:
        """A call with a body made by the caller (signed webhooks): bytes in, status checked."""
        with self.http.request(method, path, name=name, catch_response=True, **kwargs) as resp:
            if resp.status_code not in expect:
                resp.failure(f"HTTP {resp.status_code}: {resp.text[:200]}")
                raise CallFailed(f"{name}: HTTP {resp.status_code}")

    def timed(self, request_type: str, name: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` (an LND call, say), fire the request event for it, and return its result."""
        start = time.perf_counter()
        try:
            result = fn()
        except Exception as error:
            self.fire(request_type, name, (time.perf_counter() - start) * 1000, error)
            raise
        # A call cut short by the run's end (GreenletExit is no Exception) is no request at all.
        self.fire(request_type, name, (time.perf_counter() - start) * 1000)
        return result

    def fire(self, request_type: str, name: str, response_time_ms: float,
             exception: BaseException | None = None, length: int = 0) -> None:
        self.events.request.fire(request_type=request_type, name=name, response_time=response_time_ms,
                                 response_length=length, exception=exception, context={})
