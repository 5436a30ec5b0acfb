"""LND over gRPC on real nodes: the stubs match lnd's protos, calls agree with REST,
hold invoices are watched on the loop (no thread per invoice), payments resolve as futures."""

from __future__ import annotations

import base64
import hashlib
import os
import queue
import shutil
import socket
import threading
import time

import pytest

from regtest_cluster.nodes.lnd import LndError
from regtest_cluster.nodes.lnd_grpc import LndGrpc
from regtest_cluster.nodes.lnrpc import regen
from regtest_cluster.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.mark.skipif(shutil.which("go") is None, reason="go fetches lnd's protos (the LND build installs it)")
def test_stubs_match_lnd_protos_at_the_pinned_version():
    pytest.importorskip("grpc_tools", reason="grpcio-tools is in the dev extra")
    assert regen.main(["--check"]) == 0


@pytest.mark.allow_log("failed converting data to bytes")
def test_grpc_agrees_with_rest(cluster):
    hub = cluster.node("hub")
    info = hub.grpc.getinfo()
    assert info["identity_pubkey"] == hub.rest.getinfo()["identity_pubkey"]
    assert int(info["block_height"]) == int(hub.rest.getinfo()["block_height"]) == hub.grpc.height()
    invoice = hub.grpc.addinvoice(1_234, "grpc")
    decoded = hub.grpc.decodepayreq(invoice["payment_request"])
    assert decoded == {**decoded, "num_satoshis": "1234", "destination": info["identity_pubkey"]}
    with pytest.raises(LndError) as refused:
        hub.grpc.decodepayreq("lnbcrt1notaninvoice")
    assert refused.value.status == 500 and refused.value.call == "DecodePayReq"


def test_the_block_stream_sends_the_tip_then_each_block_and_nothing_after_cancel(cluster):
    hub = cluster.node("hub")
    heights: queue.Queue[int] = queue.Queue()
    errors: list[Exception] = []
    watch = hub.grpc.watch_blocks(heights.put, errors.append)
    try:
        tip = heights.get(timeout=30)  # the tip first, before any block is mined
        assert tip == hub.grpc.height()
        cluster.mine(2)
        assert [heights.get(timeout=30), heights.get(timeout=30)] == [tip + 1, tip + 2]
    finally:
        watch.cancel()
    time.sleep(0.5)
    assert watch.done and errors == []  # cancel() ends it quietly


def test_a_block_stream_that_cannot_open_says_why(cluster):
    hub = cluster.node("hub")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = LndGrpc("gone", f"127.0.0.1:{port}", hub.macaroon_path.read_bytes().hex(), hub.tls_cert, timeout=5)
    errors: queue.Queue[Exception] = queue.Queue()
    try:
        watch = client.watch_blocks(lambda height: pytest.fail(f"a block from nowhere: {height}"), errors.put)
        error = errors.get(timeout=30)
        assert isinstance(error, LndError) and error.status == 0 and error.call == "RegisterBlockEpochNtfn", error
        assert f"127.0.0.1:{port}" in error.message
        wait_for(lambda: watch.done, timeout=10, what="the stream's task to end after its error")
    finally:
        client.close()


@pytest.mark.allow_log(r"incorrect_payment_details|IncorrectOrUnknownPaymentDetails")
def test_many_hold_invoices_watched_without_a_thread_each(cluster):
    hub, buyer = cluster.node("hub"), cluster.node("buyer1")
    seen: dict[bytes, list[str]] = {}
    accepted = threading.Semaphore(0)
    preimages = [os.urandom(32) for _ in range(12)]
    threads_before = threading.active_count()
    watches = []
    for preimage in preimages:
        h = hashlib.sha256(preimage).digest()
        request = hub.grpc.add_hold_invoice(h, 1_000, 80, 600, "held")["payment_request"]
        seen[h] = []

        def update(invoice, h=h):
            seen[h].append(invoice["state"])
            if invoice["state"] == "ACCEPTED":
                accepted.release()
            return invoice["state"] in ("SETTLED", "CANCELED")

        watches.append(hub.grpc.watch_invoice(h, update))
        buyer.grpc.pay(request, timeout_s=30, fee_limit_sats=100)  # held: resolves only when settled
    assert threading.active_count() - threads_before <= 8  # the callback pools, not one per invoice
    for _ in preimages:
        assert accepted.acquire(timeout=60)
    hashes = {hashlib.sha256(preimage).digest() for preimage in preimages}

    def listed(page: int) -> dict[bytes, tuple[str, int]]:  # every open or held invoice, in pages
        found = {base64.b64decode(i["r_hash"]): (i["state"], sum(int(h["expiry_height"]) > 0 for h in i["htlcs"]))
                 for i in hub.grpc.pending_invoices(page=page)}
        return {h: seen for h, seen in found.items() if h in hashes}

    # each with its held HTLC and the height it expires at, as a lookup tells (the guardian needs it)
    assert listed(page=5) == listed(page=1_000) == {h: ("ACCEPTED", 1) for h in hashes}
    for i, preimage in enumerate(preimages):
        h = hashlib.sha256(preimage).digest()
        if i % 2:
            hub.grpc.cancel_invoice(h)
        else:
            hub.grpc.settle_invoice(preimage)
    deadline = time.monotonic() + 60
    while not all(w.done for w in watches) and time.monotonic() < deadline:
        time.sleep(0.1)
    for i, preimage in enumerate(preimages):
        states = seen[hashlib.sha256(preimage).digest()]
        assert states[-1] == ("CANCELED" if i % 2 else "SETTLED") and "ACCEPTED" in states
        assert hub.grpc.lookup_invoice(hashlib.sha256(preimage).digest())["state"] == states[-1]
    assert listed(page=5) == {}  # settled and cancelled ones are final


@pytest.mark.allow_log(r"incorrect_payment_details|IncorrectOrUnknownPaymentDetails")
def test_a_watch_hands_over_only_the_states_asked_for_and_ends_at_until(cluster):
    hub, buyer = cluster.node("hub"), cluster.node("buyer1")
    preimage = os.urandom(32)
    h = hashlib.sha256(preimage).digest()
    request = hub.grpc.add_hold_invoice(h, 1_000, 80, 600, "filtered")["payment_request"]
    handed, errors, accepted = [], [], threading.Event()

    def update(invoice: dict) -> bool:
        handed.append(invoice["state"])
        accepted.set()
        return False  # only `until` ends this watch

    watch = hub.grpc.watch_invoice(h, update, errors.append, states=("ACCEPTED", "CANCELED"), until=("SETTLED",))
    payment = buyer.grpc.pay(request, timeout_s=30, fee_limit_sats=100)
    assert accepted.wait(60)
    hub.grpc.settle_invoice(preimage)
    assert payment.result(timeout=60)["status"] == "SUCCEEDED"
    deadline = time.monotonic() + 30
    while not watch.done and time.monotonic() < deadline:
        time.sleep(0.05)
    assert watch.done  # ended by the SETTLED update, which was never handed over
    assert handed == ["ACCEPTED"] and errors == []  # the first OPEN was not handed over either

    # a callback that raises ends the watch, and the error goes to on_error
    h2 = hashlib.sha256(os.urandom(32)).digest()
    hub.grpc.add_hold_invoice(h2, 1_000, 80, 600, "failing callback")
    failed = threading.Event()

    def refuse(invoice: dict) -> bool:
        raise RuntimeError(f"refused {invoice['state']}")

    broken = hub.grpc.watch_invoice(h2, refuse, lambda exc: (errors.append(exc), failed.set()))
    assert failed.wait(30) and [str(e) for e in errors] == ["refused OPEN"]
    deadline = time.monotonic() + 10
    while not broken.done and time.monotonic() < deadline:
        time.sleep(0.05)
    assert broken.done
    hub.grpc.cancel_invoice(h2)


@pytest.mark.allow_log(r"TrackPaymentV2\]: .*payment isn't initiated", r"incorrect_payment_details|IncorrectOrUnknownPaymentDetails")
def test_payment_future_and_tracking(cluster):
    hub, seller = cluster.node("hub"), cluster.node("seller1")
    request = seller.grpc.addinvoice(2_000, "payout")["payment_request"]
    result = hub.grpc.pay(request, timeout_s=30, fee_limit_sats=10).result(timeout=60)
    assert result["status"] == "SUCCEEDED"
    tracked = hub.grpc.track_payment(bytes.fromhex(result["payment_hash"]))
    assert tracked["status"] == "SUCCEEDED"
    with pytest.raises(LndError):
        hub.grpc.track_payment(os.urandom(32))
