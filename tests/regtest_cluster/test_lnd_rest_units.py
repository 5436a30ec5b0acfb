"""The LND REST client's payment stream, with no node: lnd's answer served by an httpx mock."""

from __future__ import annotations

import json

import httpx

from regtest_cluster.nodes.lnd import LndRest


def _rest(handler) -> LndRest:
    rest = LndRest.__new__(LndRest)  # no TLS: the mock transport stands for the node
    rest.name, rest.base_url = "buyer1", "https://lnd.test"
    rest._threads = None  # the one-pool client, as the harness's
    rest._http = httpx.Client(base_url=rest.base_url, transport=httpx.MockTransport(handler))
    return rest


def test_a_payment_reads_lnd_s_stream_to_its_end_so_that_its_connection_is_kept():
    """lnd ends SendPaymentV2's stream after the final update. Left unread, the response closed its
    connection, and every payment paid for a new TLS handshake, on the client and on lnd."""
    ended = []

    def handler(request: httpx.Request) -> httpx.Response:
        def body():
            yield json.dumps({"result": {"status": "IN_FLIGHT"}}).encode() + b"\n"
            yield json.dumps({"result": {"status": "SUCCEEDED", "payment_hash": "ab"}}).encode() + b"\n"
            ended.append(request.url.path)

        return httpx.Response(200, content=body())

    rest = _rest(handler)
    assert rest.send_payment("lnbcrt1")["status"] == "SUCCEEDED"
    assert ended == ["/v2/router/send"]
    assert rest.send_payment("lnbcrt1", wait=False)["status"] == "IN_FLIGHT"  # the first update, at once
    assert ended == ["/v2/router/send"]
