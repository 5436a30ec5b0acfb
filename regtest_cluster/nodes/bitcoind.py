"""bitcoind on regtest: its command line, its readiness, and a typed RPC client."""

from __future__ import annotations

import functools
import itertools
import json
import secrets
import subprocess
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from ..daemon import Daemon, ProcessDaemon
from ..waiting import wait_for
from .thread_clients import ThreadClients

SATS_PER_BTC = 100_000_000


def btc(sats: int) -> Decimal:
    return (Decimal(sats) / SATS_PER_BTC).quantize(Decimal("0.00000001"))


def sats(amount_btc: float | Decimal | str) -> int:
    return int((Decimal(str(amount_btc)) * SATS_PER_BTC).to_integral_value())


class RpcError(RuntimeError):
    """Raised when bitcoind answers a call with an error, or cannot be reached."""

    def __init__(self, method: str, code: int, message: str) -> None:
        self.method, self.code, self.message = method, code, message
        super().__init__(f"bitcoind {method}: {message} (code {code})")


class BitcoinRpc:
    """JSON-RPC over kept-alive HTTP connections. Thread-safe: each calling thread has a client
    of its own (``ThreadClients``: httpcore's shared pool can close a connection another thread
    is using, which failed an app's ``getblockcount`` under load)."""

    def __init__(self, url: str, user: str, password: str, wallet: str | None = None,
                 timeout: float = 60.0) -> None:
        self.url, self.user, self.password, self.wallet = url, user, password, wallet
        self._clients = ThreadClients(auth=(user, password), timeout=timeout)
        self._ids = itertools.count()

    def for_wallet(self, wallet: str) -> "BitcoinRpc":
        return BitcoinRpc(self.url, self.user, self.password, wallet)

    def close(self) -> None:
        self._clients.close()

    def call(self, method: str, *params: Any) -> Any:
        return self._post(method, list(params))

    def _post(self, method: str, params: list | dict) -> Any:
        url = self.url + (f"/wallet/{self.wallet}" if self.wallet else "")
        try:
            # Amounts go as decimal strings (bitcoind accepts them): exact, unlike floats.
            body = json.dumps({"jsonrpc": "1.0", "id": next(self._ids), "method": method,
                               "params": params}, default=str)
            resp = self._clients.get().post(url, content=body, headers={"content-type": "application/json"})
        except httpx.HTTPError as exc:
            raise RpcError(method, -1, f"cannot reach {self.url}: {exc}") from exc
        try:
            body = resp.json(parse_float=Decimal)
        except ValueError:
            raise RpcError(method, resp.status_code, resp.text.strip() or f"HTTP {resp.status_code}") from None
        if body.get("error"):
            err = body["error"]
            raise RpcError(method, err.get("code", 0), err.get("message", str(err)))
        return body["result"]

    # typed calls used by the harness
    def getblockchaininfo(self) -> dict:
        return self.call("getblockchaininfo")

    def getblockcount(self) -> int:
        return self.call("getblockcount")

    def getbestblockhash(self) -> str:
        return self.call("getbestblockhash")

    def getblockhash(self, height: int) -> str:
        return self.call("getblockhash", height)

    def createwallet(self, name: str, disable_private_keys: bool = False, blank: bool = False) -> dict:
        return self.call("createwallet", name, disable_private_keys, blank)

    def loadwallet(self, name: str) -> dict:
        return self.call("loadwallet", name)

    def listwallets(self) -> list[str]:
        return self.call("listwallets")

    # Another process loading or creating the same wallet at this moment (bitcoind holds the
    # wallet's database lock while it loads): wait for it, it will be listed.
    _WALLET_BUSY = ("already loaded", "already loading", "exclusive lock")

    def open_wallet(self, name: str, disable_private_keys: bool = False, blank: bool = False,
                    wait_s: float = 30.0) -> "BitcoinRpc":
        """The client of wallet ``name``, created or loaded if the node has not loaded it.
        Safe when several processes (the app's, the harness's) open the same wallet at once:
        the loser of a create or a load waits until the winner's is listed."""
        deadline = time.monotonic() + wait_s
        while name not in self.listwallets():
            try:
                try:
                    self.createwallet(name, disable_private_keys, blank)
                except RpcError as exc:
                    if "already exists" not in exc.message:
                        raise
                    self.loadwallet(name)
            except RpcError as exc:
                if not any(busy in exc.message for busy in self._WALLET_BUSY) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        return self.for_wallet(name)

    def getnewaddress(self, label: str = "", address_type: str = "bech32") -> str:
        return self.call("getnewaddress", label, address_type)

    def generatetoaddress(self, n: int, address: str) -> list[str]:
        return self.call("generatetoaddress", n, address)

    def sendmany(self, amounts_sats: dict[str, int]) -> str:
        return self.call("sendmany", "", {a: btc(s) for a, s in amounts_sats.items()})

    def sendtoaddress(self, address: str, amount_sats: int) -> str:
        return self.call("sendtoaddress", address, btc(amount_sats))

    def getbalance(self) -> Decimal:
        return self.call("getbalance")

    def getrawmempool(self) -> list[str]:
        return self.call("getrawmempool")

    def syncwithvalidationinterfacequeue(self) -> None:
        """Wait until wallets have seen every block and mempool change so far (they hear of
        them asynchronously; Bitcoin Core's functional tests sync the same way)."""
        self.call("syncwithvalidationinterfacequeue")

    def invalidateblock(self, block_hash: str) -> None:
        self.call("invalidateblock", block_hash)

    def stop(self) -> str:
        return self.call("stop")

    # custodial wallet calls (reference_app/services/custodial; it also uses
    # getaddressinfo, gettransaction and listunspent from the on-chain escrow's group below)
    def getbalances(self) -> dict:
        return self.call("getbalances")

    def validateaddress(self, address: str) -> dict:
        return self.call("validateaddress", address)

    def listsinceblock(self, block_hash: str = "", target_confirmations: int = 1,
                       include_removed: bool = True) -> dict:
        return self.call("listsinceblock", block_hash, target_confirmations, False, include_removed)

    def send(self, outputs_sats: list[tuple[str, int]], minconf: int = 1, subtract_fee_from: list[int] | None = None,
             fee_rate_sat_vb: int | None = None, replaceable: bool = True) -> dict:
        """One transaction paying every (address, sats) output in order; ``minconf`` limits the
        coins it may spend; ``subtract_fee_from`` lists output indexes that pay the fee."""
        options: dict[str, Any] = {"minconf": minconf, "replaceable": replaceable, "change_type": "bech32",
                                   "subtract_fee_from_outputs": subtract_fee_from or []}
        if fee_rate_sat_vb is not None:
            options["fee_rate"] = fee_rate_sat_vb
        return self.call("send", [{a: btc(s)} for a, s in outputs_sats], None, "unset", None, options)

    def bumpfee(self, txid: str, options: dict | None = None) -> dict:
        return self.call("bumpfee", txid, options or {})

    def unloadwallet(self, name: str) -> dict:
        return self.call("unloadwallet", name)

    def call_named(self, method: str, **params: Any) -> Any:
        """Like ``call``, with JSON-RPC named parameters: the only form that works for RPCs
        whose positional arguments differ between Bitcoin Core and Knots (Knots folds
        trailing arguments into an ``options`` object, e.g. ``walletprocesspsbt``)."""
        return self._post(method, params)

    # typed calls used by the on-chain escrow (descriptors, PSBTs, reorgs)
    def getaddressinfo(self, address: str) -> dict:
        return self.call("getaddressinfo", address)

    def getdescriptorinfo(self, descriptor: str) -> dict:
        return self.call("getdescriptorinfo", descriptor)

    def deriveaddresses(self, descriptor: str) -> list[str]:
        return self.call("deriveaddresses", descriptor)

    def importdescriptors(self, requests: list[dict]) -> list[dict]:
        return self.call("importdescriptors", requests)

    def listunspent(self, minconf: int = 0, maxconf: int = 9_999_999,
                    addresses: list[str] | None = None) -> list[dict]:
        return self.call("listunspent", minconf, maxconf, addresses or [], True)

    def gettransaction(self, txid: str) -> dict:
        return self.call("gettransaction", txid)

    def walletcreatefundedpsbt(self, inputs: list[dict], outputs: list[dict], options: dict,
                               locktime: int = 0) -> dict:
        return self.call_named("walletcreatefundedpsbt", inputs=inputs, outputs=outputs,
                               locktime=locktime, options=options)

    def walletprocesspsbt(self, psbt: str, sign: bool = True, finalize: bool = False) -> dict:
        return self.call_named("walletprocesspsbt", psbt=psbt, sign=sign, finalize=finalize)

    def descriptorprocesspsbt(self, psbt: str, descriptors: list[str], finalize: bool = False) -> dict:
        return self.call_named("descriptorprocesspsbt", psbt=psbt, descriptors=descriptors,
                               finalize=finalize)

    def decodepsbt(self, psbt: str) -> dict:
        return self.call("decodepsbt", psbt)

    def combinepsbt(self, psbts: list[str]) -> str:
        return self.call("combinepsbt", psbts)

    def finalizepsbt(self, psbt: str) -> dict:
        return self.call("finalizepsbt", psbt)

    def sendrawtransaction(self, tx_hex: str) -> str:
        return self.call("sendrawtransaction", tx_hex)

    def testmempoolaccept(self, tx_hexes: list[str]) -> list[dict]:
        return self.call("testmempoolaccept", tx_hexes)

    def getmempoolentry(self, txid: str) -> dict:
        return self.call("getmempoolentry", txid)

    def prioritisetransaction(self, txid: str, fee_delta_sats: int) -> bool:
        return self.call("prioritisetransaction", txid, 0, fee_delta_sats)

    def getrawtransaction(self, txid: str, verbose: bool = False) -> Any:
        return self.call("getrawtransaction", txid, verbose)

    def getblock(self, block_hash: str, verbosity: int = 1) -> Any:
        return self.call("getblock", block_hash, verbosity)

    def reconsiderblock(self, block_hash: str) -> None:
        self.call("reconsiderblock", block_hash)


@dataclass
class BitcoinDPorts:
    rpc: int
    p2p: int
    zmq_block: int
    zmq_tx: int


@functools.lru_cache(maxsize=None)
def _policy_args(binary: Path) -> tuple[str, ...]:
    """Knots' own mempool policy, turned off where it breaks ordinary wallet spends.

    Knots refuses "parasite" transactions, CAT-21 mints among them: any transaction with
    nLockTime 21. bitcoind's wallet sets nLockTime to the tip height, and one time in ten to a
    random height up to 100 blocks back, so on a young regtest chain about one spend in a
    thousand has nLockTime 21, stays out of the mempool, and the next spend of its change
    fails with "Insufficient funds" (seen in CI). Bitcoin Core has no such option and would
    refuse the flag, so it is given to Knots only."""
    try:
        out = subprocess.run([str(binary), "-version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return ("-rejectparasites=0",) if "Knots" in out else ()


class BitcoinD:
    """A regtest bitcoind with ZMQ feeds (lnd will not start without them)."""

    MINER_WALLET = "miner"

    def __init__(self, binary: Path, datadir: Path, ports: BitcoinDPorts,
                 daemon_factory=None, rpc_host: str = "127.0.0.1",
                 rpc_password: str | None = None) -> None:
        self.binary = binary
        self.datadir = datadir
        self.ports = ports
        self.rpc_user = "escrowlab"
        self.rpc_password = rpc_password or secrets.token_hex(16)
        self.rpc_host = rpc_host
        factory = daemon_factory or ProcessDaemon
        self.daemon: Daemon = factory("bitcoind", self.argv(), datadir / "bitcoind.log", datadir)
        self._rpc: BitcoinRpc | None = None

    # Where the daemon listens and how LND reaches it. Here: loopback, host ports.
    # The docker backend overrides these four; the flags themselves are shared.
    bind_host = "127.0.0.1"
    rpc_allow = "127.0.0.1"

    def listen_ports(self) -> BitcoinDPorts:
        """The ports bitcoind binds (for a process, the host's own)."""
        return self.ports

    def dir_args(self) -> list[str]:
        return [f"-datadir={self.datadir}"]

    def peer_endpoints(self) -> tuple[str, str, str]:
        """(RPC host:port, ZMQ block URL, ZMQ tx URL) as an LND of this cluster reaches them."""
        p = self.ports
        return f"127.0.0.1:{p.rpc}", f"tcp://127.0.0.1:{p.zmq_block}", f"tcp://127.0.0.1:{p.zmq_tx}"

    def argv(self) -> list[str]:
        p, host = self.listen_ports(), self.bind_host
        return [
            str(self.binary), "-regtest", *self.dir_args(), "-server", "-printtoconsole",
            f"-rpcuser={self.rpc_user}", f"-rpcpassword={self.rpc_password}",
            f"-rpcport={p.rpc}", f"-port={p.p2p}", f"-bind={host}", f"-rpcbind={host}",
            f"-rpcallowip={self.rpc_allow}", "-listen=1", "-listenonion=0", "-dnsseed=0", "-discover=0",
            f"-zmqpubrawblock=tcp://{host}:{p.zmq_block}", f"-zmqpubrawtx=tcp://{host}:{p.zmq_tx}",
            "-fallbackfee=0.00001", "-txindex=1", "-rpcthreads=16", "-rpcworkqueue=512",
            "-debug=0", "-shrinkdebugfile=0", *_policy_args(self.binary),
        ]

    def reconfigure(self) -> None:
        """Take new ``ports`` into the daemon's next start (after a port clash)."""
        self.daemon.argv = self.argv()

    @property
    def rpc_url(self) -> str:
        return f"http://{self.rpc_host}:{self.ports.rpc}"

    @property
    def rpc(self) -> BitcoinRpc:
        if self._rpc is None:
            self._rpc = BitcoinRpc(self.rpc_url, self.rpc_user, self.rpc_password)
        return self._rpc

    def wallet(self, name: str) -> BitcoinRpc:
        return self.rpc.for_wallet(name)

    def start(self, timeout: float = 60.0) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.daemon.start()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            self.daemon.check_alive()
            try:
                self.rpc.getblockchaininfo()
                return True
            except RpcError as exc:
                if exc.code in (-1, -28, 401):  # not listening yet, or warming up
                    return False
                raise

        wait_for(ready, timeout=timeout, what="bitcoind RPC")

    def stop(self) -> None:
        if self.daemon.is_running():
            try:
                self.rpc.stop()
            except RpcError:
                pass
        self.daemon.stop()
        if self._rpc:
            self._rpc.close()
            self._rpc = None

    # mining helpers
    def miner(self) -> BitcoinRpc:
        return self.wallet(self.MINER_WALLET)

    def ensure_miner_wallet(self) -> None:
        self.rpc.open_wallet(self.MINER_WALLET)

    def mine(self, n: int) -> list[str]:
        """Mine ``n`` blocks to the miner wallet, in one call (callers step it); returns once
        every wallet has seen them."""
        address = self.miner().getnewaddress()
        blocks = self.rpc.generatetoaddress(n, address)
        self.rpc.syncwithvalidationinterfacequeue()
        return blocks
