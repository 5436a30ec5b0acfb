"""LND over gRPC: two channels per node, one for unary calls and one for streams.

Unary calls (an invoice added, settled, a payment request decoded) go through gRPC's
synchronous channel, in the caller's thread. Streams run on an asyncio channel, on one loop
in a daemon thread shared by every client of the process. Calls use the same method names
and return shapes as ``LndRest`` (dicts with lnd's field names, int64s as strings, enums by
name: what lnd's REST gateway prints), so the two are interchangeable. Long waits never hold
a thread:

- ``watch_invoice`` follows one invoice through SubscribeSingleInvoice as a task on the
  loop; thousands of held invoices cost thousands of coroutines, not threads;
- ``pay`` sends through SendPaymentV2 and returns a future at once; a payment the payee
  holds for hours waits on the loop, not in the caller's pool;
- ``watch_blocks`` follows the node's chain tip through ChainNotifier's
  RegisterBlockEpochNtfn: a caller that needs the height is told of each block instead of
  asking GetInfo again and again.

Callbacks run on a small fixed pool (``callback_threads``), so they may block (database
work) without stalling the loop.

A unary call made through the loop (handed over from the caller's thread, awaited there,
its answer handed back) cost 242-403 us of CPU against lnd's DecodePayReq (from four threads
and from one); the same call on the synchronous channel cost 170-238 us, with the GIL
released while it waits.
"""

from __future__ import annotations

import asyncio
import base64
import math
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.json_format import MessageToDict

from .lnd import LndError
from .lnrpc import chainnotifier_pb2 as chain
from .lnrpc import chainnotifier_pb2_grpc as chain_grpc
from .lnrpc import invoices_pb2 as inv
from .lnrpc import invoices_pb2_grpc as inv_grpc
from .lnrpc import lightning_pb2 as ln
from .lnrpc import lightning_pb2_grpc as ln_grpc
from .lnrpc import router_pb2 as router
from .lnrpc import router_pb2_grpc as router_grpc
from .threadnames import name_os_thread, named

FINAL_PAYMENT = ("SUCCEEDED", "FAILED")
INVOICE_STATE = ln.Invoice.InvoiceState.Name  # an invoice's state number -> its name, as to_dict prints it
_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


def to_dict(message) -> dict:
    """A message as lnd's REST gateway prints it (field names kept, defaults included): what
    protobuf's ``MessageToDict(message, preserving_proto_field_name=True,
    always_print_fields_with_no_presence=True)`` gives, at a third of its cost.

    ``MessageToDict`` works out each field's conversion from its descriptor on every message;
    an invoice's update took 31 us, and the app's conversions of invoice and payment updates
    were 2.4 % of its CPU in an escrow (py-spy, ``bench escrow``). Here each message type's
    fields are planned once: a name, a shape (single, repeated or map), a converter and
    whether the field is printed only when set. ``tests/regtest_cluster/test_lnd_to_dict.py``
    checks it against ``MessageToDict`` on every message type of lnd's stubs."""
    descriptor = message.DESCRIPTOR
    plan = _PLANS.get(descriptor)
    if plan is None:
        if descriptor.full_name.startswith("google.protobuf."):  # well-known types print specially
            return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        plan = _PLANS[descriptor] = _plan(descriptor)
    out = {}
    for name, shape, convert, only_set in plan:
        if only_set and not message.HasField(name):
            continue
        value = getattr(message, name)
        if shape is _SINGLE:
            out[name] = value if convert is None else convert(value)
        elif shape is _REPEATED:
            out[name] = list(value) if convert is None else [convert(v) for v in value]
        else:  # (MessageToDict prints a bool key as true or false: no map of lnd's has one)
            out[name] = {str(k): (v if convert is None else convert(v)) for k, v in value.items()}
    return out


_SINGLE, _REPEATED, _MAP = "single", "repeated", "map"
_PLANS: dict = {}
_INT64 = (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64)
_FLOATS = (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE)


def _plan(descriptor) -> list[tuple]:
    plan = []
    for member in descriptor.fields:
        entry = member.message_type
        if entry is not None and entry.GetOptions().map_entry:
            plan.append((member.name, _MAP, _converter(entry.fields_by_name["value"]), False))
        else:
            plan.append((member.name, _REPEATED if member.is_repeated else _SINGLE, _converter(member),
                         member.has_presence))
    return plan


def _converter(field):
    """How one value of ``field`` is printed; None where it is printed as it is."""
    cpp = field.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_MESSAGE:
        return to_dict
    if cpp == FieldDescriptor.CPPTYPE_ENUM:
        names = {v.number: v.name for v in field.enum_type.values}
        return lambda v: names.get(v, v)  # lnd's enums are open: an unknown number prints as itself
    if field.type == FieldDescriptor.TYPE_BYTES:
        return lambda v: base64.b64encode(v).decode()
    if cpp in _INT64:
        return str
    if cpp in _FLOATS:
        single = cpp == FieldDescriptor.CPPTYPE_FLOAT

        def number(v):
            if math.isinf(v):
                return "-Infinity" if v < 0 else "Infinity"
            if math.isnan(v):
                return "NaN"
            return type_checkers.ToShortestFloat(v) if single else v
        return number
    return None  # strings, booleans, 32-bit integers


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed (the app's extra has it, as uvicorn's does): each turn
    of asyncio's own loop is Python (its select, its ready queue, its self-pipe), and this loop
    turns for every message of every stream and every call handed over from another thread."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class _Loop:
    """The process's gRPC event loop, in one daemon thread, started on first use."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = _new_loop()
                threading.Thread(target=named(loop.run_forever), name="lnd-grpc", daemon=True).start()
                cls._loop = loop
            return cls._loop


@dataclass
class Watch:
    """A running subscription (an invoice's, or the chain's blocks: no hash); ``cancel()`` ends it."""

    payment_hash: bytes
    task: Future = field(repr=False)

    def cancel(self) -> None:
        self.task.cancel()

    @property
    def done(self) -> bool:
        return self.task.done()


class LndGrpc:
    """Typed gRPC client for one LND node. Thread-safe; a channel for unary calls, one for streams."""

    def __init__(self, name: str, host: str, macaroon_hex: str, tls_cert: Path | str | bytes,
                 timeout: float = 60.0, callback_threads: int = 4) -> None:
        """``host`` is lnd's RPC listener (``127.0.0.1:10009``); ``tls_cert`` its tls.cert
        as a path, PEM text or bytes."""
        self.name, self.host, self.timeout = name, host, timeout
        if isinstance(tls_cert, bytes):
            pem = tls_cert
        elif isinstance(tls_cert, str) and tls_cert.lstrip().startswith("-----BEGIN"):
            pem = tls_cert.encode()
        else:
            pem = Path(tls_cert).read_bytes()
        self._metadata = (("macaroon", macaroon_hex),)
        self._loop = _Loop.get()
        self._callbacks = ThreadPoolExecutor(max_workers=callback_threads, thread_name_prefix=f"lnd-{name}-cb",
                                             initializer=name_os_thread)
        self._calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()

        options = [
            ("grpc.ssl_target_name_override", "localhost"),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.keepalive_time_ms", 30_000),
            # A node that restarts is back within seconds on loopback. With gRPC's default backoff
            # (1 s growing to 120 s) the channel could still be waiting out its last refusal when
            # the node already answered, and every call failed fast meanwhile: CI's run of 6bfedce
            # lost hub_restart_mid_htlc to a ship refused after the hub was back.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1_000),
        ]
        credentials = grpc.ssl_channel_credentials(root_certificates=pem)
        self._unary_channel = grpc.secure_channel(host, credentials, options=options)
        self._ln_unary = ln_grpc.LightningStub(self._unary_channel)
        self._inv_unary = inv_grpc.InvoicesStub(self._unary_channel)

        async def connect() -> None:
            self._channel = grpc.aio.secure_channel(host, credentials, options=options)
            self._inv = inv_grpc.InvoicesStub(self._channel)
            self._router = router_grpc.RouterStub(self._channel)
            self._chain = chain_grpc.ChainNotifierStub(self._channel)

        asyncio.run_coroutine_threadsafe(connect(), self._loop).result()

    # --- plumbing
    @property
    def calls(self) -> int:
        """How many RPCs (unary calls and streams) this client has made."""
        return sum(self.calls_by_method.values())

    @property
    def calls_by_method(self) -> dict[str, int]:
        """The same, by lnd method (``AddHoldInvoice``, ``SendPaymentV2`` ...)."""
        with self._calls_lock:
            return dict(self._calls)

    def _count(self, call: str) -> None:
        with self._calls_lock:
            self._calls[call] += 1

    def _error(self, call: str, exc: grpc.RpcError) -> LndError:
        code = exc.code()
        status = 0 if code in _UNREACHABLE else 504 if code == grpc.StatusCode.DEADLINE_EXCEEDED else 500
        message = exc.details() or code.name
        if status == 0:
            message = f"cannot reach {self.host}: {message}"
        return LndError(self.name, call, status, message)

    def _unary(self, call: str, method, request):
        """One unary call on the synchronous channel, in this thread."""
        self._count(call)
        try:
            return method(request, metadata=self._metadata, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise self._error(call, exc) from None

    def _sync(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self) -> None:
        async def close() -> None:
            await self._channel.close()
        self._unary_channel.close()
        try:
            self._sync(close(), timeout=5)
        except Exception:  # noqa: BLE001 (closing: the loop or the node may be gone already)
            pass
        self._callbacks.shutdown(wait=False, cancel_futures=True)

    # --- node and wallet
    def getinfo(self) -> dict:
        return to_dict(self._unary("GetInfo", self._ln_unary.GetInfo, ln.GetInfoRequest()))

    def height(self) -> int:
        """The node's chain height (GetInfo without turning the whole reply into a dict: the
        worker asks every tick)."""
        return self._unary("GetInfo", self._ln_unary.GetInfo, ln.GetInfoRequest()).block_height

    def walletbalance(self) -> dict:
        return to_dict(self._unary("WalletBalance", self._ln_unary.WalletBalance, ln.WalletBalanceRequest()))

    def channelbalance(self) -> dict:
        return to_dict(self._unary("ChannelBalance", self._ln_unary.ChannelBalance,
                                              ln.ChannelBalanceRequest()))

    def listchannels(self, active_only: bool = False) -> list[dict]:
        got = self._unary("ListChannels", self._ln_unary.ListChannels,
                                     ln.ListChannelsRequest(active_only=active_only))
        return [to_dict(c) for c in got.channels]

    # --- invoices
    def addinvoice(self, value_sats: int, memo: str = "", expiry_s: int = 3600) -> dict:
        return to_dict(self._unary("AddInvoice", self._ln_unary.AddInvoice,
                                              ln.Invoice(value=value_sats, memo=memo, expiry=expiry_s)))

    def add_hold_invoice(self, payment_hash: bytes, value_sats: int, cltv_expiry: int,
                         expiry_s: int = 3600, memo: str = "") -> dict:
        request = inv.AddHoldInvoiceRequest(hash=payment_hash, value=value_sats, cltv_expiry=cltv_expiry,
                                            expiry=expiry_s, memo=memo)
        return to_dict(self._unary("AddHoldInvoice", self._inv_unary.AddHoldInvoice, request))

    def lookup_invoice(self, payment_hash: bytes) -> dict:
        return to_dict(self._unary("LookupInvoiceV2", self._inv_unary.LookupInvoiceV2,
                                              inv.LookupInvoiceMsg(payment_hash=payment_hash)))

    def pending_invoices(self, page: int = 1_000) -> list[dict]:
        """Every invoice neither settled nor cancelled (open, or with HTLCs held), a page at a
        time: one call where a lookup of each would be hundreds."""
        invoices: list[dict] = []
        offset = 0
        while True:
            got = self._unary("ListInvoices", self._ln_unary.ListInvoices, ln.ListInvoiceRequest(
                pending_only=True, index_offset=offset, num_max_invoices=page))
            if not got.invoices:  # (until an empty page: a short one may be filtered after the limit)
                return invoices
            invoices += [to_dict(i) for i in got.invoices]
            offset = got.last_index_offset

    def settle_invoice(self, preimage: bytes) -> None:
        self._unary("SettleInvoice", self._inv_unary.SettleInvoice, inv.SettleInvoiceMsg(preimage=preimage))

    def cancel_invoice(self, payment_hash: bytes) -> None:
        self._unary("CancelInvoice", self._inv_unary.CancelInvoice,
                               inv.CancelInvoiceMsg(payment_hash=payment_hash))

    def watch_invoice(self, payment_hash: bytes, on_update: Callable[[dict], bool],
                      on_error: Callable[[Exception], None] | None = None, *,
                      states: Collection[str] | None = None, until: Collection[str] = ()) -> Watch:
        """Follow one invoice until ``on_update`` returns True for an update, or an update's
        state is one of ``until``.

        Each update in one of ``states`` (every update, when None) is handed to ``on_update``
        as a dict, on the callback pool, in order; the others are looked at on the stream's own
        loop and go no further. Handing one over is a trip to a pool thread and back, so a caller
        with nothing to do for a state (an invoice's first OPEN, its SETTLED once the caller has
        settled it) leaves it out. ``on_error`` gets the error, on the callback pool, when the
        stream broke or ``on_update`` raised (the caller reconciles); not after a final update
        or cancel().
        """
        async def follow() -> None:
            loop = asyncio.get_running_loop()
            self._count("SubscribeSingleInvoice")
            stream = self._inv.SubscribeSingleInvoice(
                inv.SubscribeSingleInvoiceRequest(r_hash=payment_hash), metadata=self._metadata)
            error: Exception | None = None
            try:
                async for invoice in stream:
                    state = INVOICE_STATE(invoice.state)
                    if states is None or state in states:
                        if await loop.run_in_executor(self._callbacks, on_update, to_dict(invoice)):
                            break
                    if state in until:
                        break
            except grpc.aio.AioRpcError as exc:
                error = self._error("SubscribeSingleInvoice", exc)
            except Exception as exc:  # noqa: BLE001 (a callback failed: the caller reconciles)
                error = exc
            finally:
                stream.cancel()
            if error is not None and on_error is not None:
                await loop.run_in_executor(self._callbacks, on_error, error)

        return Watch(payment_hash, asyncio.run_coroutine_threadsafe(follow(), self._loop))

    # --- the chain
    def watch_blocks(self, on_block: Callable[[int], None], on_error: Callable[[Exception], None]) -> Watch:
        """Follow the node's chain tip: ``on_block(height)`` for the tip when the stream opens (lnd
        sends it first), then for each block connected, stale ones included (the latest is the
        node's tip). ``on_block`` runs on the streams' loop itself, not the callback pool: it must
        only note the height and return. ``on_error`` gets the error, on the callback pool, when
        the stream ends for any reason but cancel() (a node that restarts ends it)."""
        async def follow() -> None:
            loop = asyncio.get_running_loop()
            self._count("RegisterBlockEpochNtfn")
            stream = self._chain.RegisterBlockEpochNtfn(chain.BlockEpoch(), metadata=self._metadata)
            error: Exception = LndError(self.name, "RegisterBlockEpochNtfn", 0, "the node ended the block stream")
            try:
                async for epoch in stream:
                    on_block(epoch.height)
            except grpc.aio.AioRpcError as exc:
                error = self._error("RegisterBlockEpochNtfn", exc)
            except Exception as exc:  # noqa: BLE001 (on_block failed: the caller falls back)
                error = exc
            finally:
                stream.cancel()
            await loop.run_in_executor(self._callbacks, on_error, error)

        return Watch(b"", asyncio.run_coroutine_threadsafe(follow(), self._loop))

    # --- payments
    def decodepayreq(self, payment_request: str) -> dict:
        return to_dict(self._unary("DecodePayReq", self._ln_unary.DecodePayReq,
                                              ln.PayReqString(pay_req=payment_request)))

    async def _pay(self, payment_request: str, timeout_s: int, fee_limit_sats: int, first: bool = False,
                   on_done: Callable[[dict | Exception], None] | None = None) -> dict:
        self._count("SendPaymentV2")
        request = router.SendPaymentRequest(payment_request=payment_request, timeout_seconds=timeout_s,
                                            fee_limit_sat=fee_limit_sats, no_inflight_updates=not first)
        outcome: dict | Exception = {"status": "IN_FLIGHT"}
        stream = self._router.SendPaymentV2(request, metadata=self._metadata)
        try:
            async for update in stream:
                outcome = to_dict(update)
                if first or outcome["status"] in FINAL_PAYMENT:
                    break
        except grpc.aio.AioRpcError as exc:
            outcome = self._error("SendPaymentV2", exc)
        finally:
            stream.cancel()  # lnd goes on with the payment; only this view of it ends
        if on_done is not None:
            await asyncio.get_running_loop().run_in_executor(self._callbacks, on_done, outcome)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def pay(self, payment_request: str, timeout_s: int = 60, fee_limit_sats: int = 1000,
            on_done: Callable[[dict | Exception], None] | None = None) -> Future:
        """Send a payment; the future resolves to its final update (or raises LndError), and
        ``on_done`` gets the same on the callback pool. Nothing waits on it but the loop: a
        payee that holds the payment for hours holds no thread."""
        return asyncio.run_coroutine_threadsafe(
            self._pay(payment_request, timeout_s, fee_limit_sats, on_done=on_done), self._loop)

    def send_payment(self, payment_request: str, timeout_s: int = 60, fee_limit_sats: int = 1000,
                     wait: bool = True) -> dict:
        """Pay and wait for the final update; with ``wait=False`` return the first (IN_FLIGHT)."""
        return self._sync(self._pay(payment_request, timeout_s, fee_limit_sats, first=not wait))

    def track_payment(self, payment_hash: bytes) -> dict:
        """The current status of a payment (the first update of TrackPaymentV2)."""
        async def first() -> dict:
            self._count("TrackPaymentV2")
            stream = self._router.TrackPaymentV2(
                router.TrackPaymentRequest(payment_hash=payment_hash, no_inflight_updates=False),
                metadata=self._metadata, timeout=self.timeout)
            try:
                async for update in stream:
                    return to_dict(update)
            except grpc.aio.AioRpcError as exc:
                raise self._error("TrackPaymentV2", exc) from None
            finally:
                stream.cancel()
            raise LndError(self.name, "TrackPaymentV2", 500, "payment not found")
        return self._sync(first())

    def listpayments(self, page: int = 1_000) -> list[dict]:
        payments: list[dict] = []
        offset = 0
        while True:
            got = self._unary("ListPayments", self._ln_unary.ListPayments, ln.ListPaymentsRequest(
                include_incomplete=True, index_offset=offset, max_payments=page))
            payments += [to_dict(p) for p in got.payments]
            if len(got.payments) < page:
                return payments
            offset = got.last_index_offset
