"""The few LND REST calls minimarket makes, on the hub and on a payee's own node.

lnd's REST conventions: the macaroon in the ``Grpc-Metadata-macaroon`` header (hex),
bytes as base64 in JSON bodies and base64url in paths and queries, int64 values as
strings, and streams as newline-delimited ``{"result": ...}`` objects.
"""

from __future__ import annotations

import base64
import json
import ssl
from typing import Iterator

import httpx


class LndError(RuntimeError):
    """An LND call failed; ``status`` 0 means the node could not be reached."""

    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message
        super().__init__(f"lnd: {message} (HTTP {status})")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def _message(data) -> str:
    err = data.get("error", data) if isinstance(data, dict) else data
    return err.get("message", str(err)) if isinstance(err, dict) else str(err)


class Lnd:
    def __init__(self, url: str, macaroon_hex: str, cert: str, timeout: float = 30) -> None:
        """``cert`` is the path of the node's tls.cert, or its PEM text."""
        tls = (ssl.create_default_context(cadata=cert) if cert.lstrip().startswith("-----BEGIN")
               else ssl.create_default_context(cafile=cert))
        self.http = httpx.Client(base_url=url, verify=tls, timeout=timeout,
                                 headers={"Grpc-Metadata-macaroon": macaroon_hex})

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, body: dict | None = None, params: dict | None = None) -> dict:
        try:
            r = self.http.request(method, path, json=body, params=params)
        except httpx.HTTPError as exc:
            raise LndError(0, f"unreachable: {exc}") from exc
        try:
            data = r.json() if r.content else {}
        except ValueError:
            data = {"message": r.text[:200]}
        if r.status_code >= 400:
            raise LndError(r.status_code, _message(data))
        return data

    def _stream(self, method: str, path: str, body: dict | None = None, timeout: float = 120) -> Iterator[dict]:
        try:
            with self.http.stream(method, path, json=body, timeout=timeout) as r:
                for line in r.iter_lines():
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    if "error" in item or r.status_code >= 400:
                        raise LndError(r.status_code, _message(item))
                    yield item.get("result", item)
        except httpx.HTTPError as exc:
            raise LndError(0, f"stream broke: {exc}") from exc

    # --- the hub
    def height(self) -> int:
        return int(self._call("GET", "/v1/getinfo")["block_height"])

    def add_hold_invoice(self, payment_hash: bytes, sats: int, cltv_expiry: int, expiry_s: int, memo: str) -> str:
        return self._call("POST", "/v2/invoices/hodl", {
            "hash": b64(payment_hash), "value": str(sats), "cltv_expiry": str(cltv_expiry),
            "expiry": str(expiry_s), "memo": memo})["payment_request"]

    def lookup_invoice(self, payment_hash: bytes) -> dict:
        return self._call("GET", "/v2/invoices/lookup", params={"payment_hash": b64url(payment_hash)})

    def pending_invoices(self) -> dict[str, dict]:
        """The hub's OPEN and ACCEPTED invoices by payment hash (hex): ListInvoices, pending only."""
        invoices = self._call("GET", "/v1/invoices", params={"pending_only": "true", "num_max_invoices": "1000"})
        return {base64.b64decode(i["r_hash"]).hex(): i for i in invoices.get("invoices", [])}

    def settle_invoice(self, preimage: bytes) -> None:
        self._call("POST", "/v2/invoices/settle", {"preimage": b64(preimage)})

    def cancel_invoice(self, payment_hash: bytes) -> None:
        self._call("POST", "/v2/invoices/cancel", {"payment_hash": b64(payment_hash)})

    def decode(self, payment_request: str) -> dict:
        return self._call("GET", f"/v1/payreq/{payment_request}")

    def pay(self, payment_request: str, fee_limit_sats: int, timeout_s: int) -> dict:
        """SendPaymentV2 until a final status: ``{"status": "SUCCEEDED"|"FAILED", ...}``."""
        last: dict = {}
        for update in self._stream("POST", "/v2/router/send", {
                "payment_request": payment_request, "fee_limit_sat": str(fee_limit_sats),
                "timeout_seconds": timeout_s, "no_inflight_updates": True}, timeout=timeout_s + 30):
            last = update
            if update.get("status") in ("SUCCEEDED", "FAILED"):
                break
        return last

    def track(self, payment_hash: bytes) -> dict | None:
        """The payment's current status (TrackPaymentV2's first update), or None if never sent."""
        stream = self._stream("GET", f"/v2/router/track/{b64url(payment_hash)}?no_inflight_updates=false",
                              timeout=30)
        try:
            return next(stream, None)
        except LndError as exc:
            if "isn't initiated" in exc.message or "not found" in exc.message:
                return None
            raise
        finally:
            stream.close()  # the first update is all we need: end the stream

    # --- a payee's own node (an invoice macaroon is enough)
    def add_invoice(self, sats: int, memo: str, expiry_s: int = 3600) -> str:
        return self._call("POST", "/v1/invoices",
                          {"value": str(sats), "memo": memo, "expiry": str(expiry_s)})["payment_request"]
