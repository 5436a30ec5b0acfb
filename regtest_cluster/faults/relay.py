"""The p2p relay: how a partition between two Lightning node processes really stops both directions.

lnd and ldk-node reconnect to their channel peers by themselves (with backoff) after
any disconnect, so cutting a connection once is not a partition. Instead every
node's p2p listener is reached only through this relay: the node listens on a
private loopback port and advertises the relay's port (lnd's ``--externalip``,
ldkd's ``--announce``), and the cluster connects peers to that address. Whoever
dials, the connection passes here, so the relay can refuse it.

The relay tells who dials by the connection's source port: the process that
owns that socket is a node whose command line names its directory (lnd's
``--lnddir``, ldkd's ``--datadir``), which names the node. ``partition(a, b)``
closes every live link between a and b and refuses new ones in either
direction; ``heal`` lets them through again. It asks who dials only when it
matters (a partition is in force at the listener, or a partition is asked
for), so bring-up pays nothing for it.

It runs as its own small process (``python -m regtest_cluster.faults.relay``),
so a detached cluster keeps relaying after the command that started it exits,
and a later command controls it through its control port: one JSON object a
line, one answer a line. Loopback only; asyncio, no dependencies beyond psutil.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from dataclasses import dataclass, field

HOST = "127.0.0.1"


class RelayError(RuntimeError):
    """Raised when the relay refuses a request or cannot be reached. ``busy`` names the node
    whose p2p port another process holds (the cluster then moves that node to new ports)."""

    def __init__(self, message: str, busy: str | None = None) -> None:
        super().__init__(message)
        self.busy = busy


class PortBusy(RuntimeError):
    """The relay cannot listen on a node's p2p port: another process took it."""

    def __init__(self, node: str, message: str) -> None:
        super().__init__(message)
        self.node = node


# --------------------------------------------------------------------------- client


class RelayClient:
    """Talks to a running relay over its control port (one short connection a request)."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout

    def call(self, op: str, **args) -> dict:
        try:
            with socket.create_connection((HOST, self.port), timeout=self.timeout) as s:
                s.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
        except OSError as exc:
            raise RelayError(f"the p2p relay on {HOST}:{self.port} does not answer: {exc}") from None
        try:
            answer = json.loads(buf)
        except ValueError:
            raise RelayError(f"the p2p relay answered {op} with {buf[:200]!r}") from None
        if "error" in answer:
            raise RelayError(answer["error"], answer.get("busy"))
        return answer

    def ping(self) -> bool:
        return bool(self.call("ping").get("ok"))

    def set_routes(self, routes: dict[str, dict]) -> dict:
        """``{node: {"listen": port peers dial, "target": port the node listens on, "owner": arg}}``
        (``owner``: the argument of the node's command line that names it, e.g. ``--lnddir=PATH``)."""
        return self.call("routes", routes=routes)

    def partition(self, a: str, b: str) -> dict:
        return self.call("partition", a=a, b=b)

    def heal(self, a: str, b: str) -> dict:
        return self.call("heal", a=a, b=b)

    def heal_all(self) -> list[list[str]]:
        return self.call("heal_all")["healed"]

    def status(self) -> dict:
        return self.call("status")


# --------------------------------------------------------------------------- server


@dataclass
class Route:
    name: str
    listen: int
    target: int
    owner: str  # the argument of the node's command line that names it (lnd's --lnddir=, ldkd's --datadir=)
    server: asyncio.AbstractServer | None = None


@dataclass(eq=False)
class Link:
    """One relayed connection: ``dialer`` (a node name, or None if unknown) to ``listener``."""

    dialer: str | None
    listener: str
    transports: list = field(default_factory=list)
    peer: tuple = ()          # the dialer's address, as the relay accepted it
    identified: bool = False  # whether ``dialer`` was looked up (None then means: not one of our nodes)

    def between(self, pair: frozenset[str]) -> bool:
        return self.listener in pair and (self.dialer in pair or self.dialer is None)

    def cut(self) -> None:
        for t in self.transports:
            t.abort()


class Relay:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.cut: set[frozenset[str]] = set()
        self.links: set[Link] = set()
        self.refused = 0
        self._owners: dict[int, str] = {}  # pid -> node, for node processes seen before

    # --- control
    async def handle_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                req = json.loads(line)
                answer = await self.dispatch(req.pop("op"), **req)
            except PortBusy as exc:
                answer = {"error": str(exc), "busy": exc.node}
            except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
                answer = {"error": str(exc) or type(exc).__name__}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()

    async def dispatch(self, op: str, **args) -> dict:
        if op == "ping":
            return {"ok": True}
        if op == "routes":
            await self.set_routes(args["routes"])
            return {"ok": True}
        if op == "partition":
            return await self.partition(args["a"], args["b"])
        if op == "heal":
            return self.heal(args["a"], args["b"])
        if op == "heal_all":
            healed = sorted(sorted(p) for p in self.cut)
            self.cut.clear()
            return {"healed": healed}
        if op == "status":
            await self._identify_links(self.links)
            return {"partitions": sorted(sorted(p) for p in self.cut), "refused": self.refused,
                    "routes": {n: {"listen": r.listen, "target": r.target} for n, r in self.routes.items()},
                    "links": sorted([lk.dialer or "?", lk.listener] for lk in self.links)}
        raise ValueError(f"unknown relay request {op!r}")

    async def set_routes(self, routes: dict[str, dict]) -> None:
        for name in list(self.routes):
            if name not in routes:
                self._close_route(name)
        for name, r in routes.items():
            old = self.routes.get(name)
            owner = str(r.get("owner") or f"--lnddir={r['lnddir']}")  # lnddir: as an older escrowlab sends it
            if old is not None and old.listen == r["listen"]:
                old.target, old.owner = r["target"], owner
                continue
            if old is not None:
                self._close_route(name)
            route = Route(name, int(r["listen"]), int(r["target"]), owner)
            try:
                route.server = await asyncio.start_server(
                    lambda rd, wr, n=name: self.relay(n, rd, wr), HOST, route.listen, reuse_address=True)
            except OSError as exc:
                raise PortBusy(name, f"cannot listen for {name} on {HOST}:{route.listen}: {exc}") from None
            self.routes[name] = route

    def _close_route(self, name: str) -> None:
        route = self.routes.pop(name)
        if route.server is not None:
            route.server.close()

    def _check_pair(self, a: str, b: str) -> frozenset[str]:
        for n in (a, b):
            if n not in self.routes:
                raise ValueError(f"the relay has no node named {n!r} (nodes: {', '.join(self.routes) or 'none'})")
        if a == b:
            raise ValueError(f"cannot partition {a} from itself")
        return frozenset((a, b))

    async def partition(self, a: str, b: str) -> dict:
        pair = self._check_pair(a, b)
        if pair in self.cut:
            raise ValueError(f"{a} and {b} are already partitioned")
        self.cut.add(pair)  # from here on, new links to a or b are identified before relaying
        await self._identify_links([lk for lk in self.links if lk.listener in pair])
        cut = [lk for lk in self.links if lk.between(pair)]
        for lk in cut:
            lk.cut()
        return {"cut_links": len(cut)}

    def heal(self, a: str, b: str) -> dict:
        pair = self._check_pair(a, b)
        if pair not in self.cut:
            raise ValueError(f"{a} and {b} are not partitioned")
        self.cut.discard(pair)
        return {"ok": True}

    # --- relaying
    def refuses(self, dialer: str | None, listener: str) -> bool:
        if dialer is None:  # unknown: refused while the listener is cut from anyone (nodes retry)
            return any(listener in p for p in self.cut)
        return frozenset((dialer, listener)) in self.cut

    async def _identify_links(self, links) -> None:
        loop = asyncio.get_running_loop()
        for lk in list(links):
            if not lk.identified:
                lk.dialer = await loop.run_in_executor(None, self.identify, lk.peer, self.routes[lk.listener].listen)
                lk.identified = True

    async def relay(self, listener: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        route = self.routes.get(listener)
        link = Link(None, listener, [writer.transport], writer.get_extra_info("peername"))
        if route is not None and any(listener in p for p in self.cut):
            await self._identify_links([link])
        if route is None or self.refuses(link.dialer, listener):
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, route.target)
        except OSError:  # the node is down: refuse, as it would
            writer.transport.abort()
            return
        link.transports.append(up_writer.transport)
        if any(listener in p for p in self.cut):  # a partition came while we connected
            await self._identify_links([link])
            if self.refuses(link.dialer, listener):
                link.cut()
                return
        self.links.add(link)
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            self.links.discard(link)
            link.cut()

    def identify(self, peer: tuple, listen_port: int) -> str | None:
        """The node whose process owns the socket at ``peer`` (connected to our ``listen_port``)."""
        import psutil

        want = (peer[0], peer[1])
        for fresh in (False, True):
            if fresh:
                self._scan_owners(psutil)
            for pid, name in list(self._owners.items()):
                try:
                    conns = psutil.Process(pid).net_connections(kind="tcp4")
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    self._owners.pop(pid, None)
                    continue
                if any(tuple(c.laddr) == want and c.raddr and c.raddr[1] == listen_port for c in conns):
                    return name
        return None

    def _scan_owners(self, psutil) -> None:
        owners = {r.owner: n for n, r in self.routes.items()}
        for proc in psutil.process_iter(["pid", "cmdline"]):
            for arg in proc.info.get("cmdline") or ():
                if arg in owners:
                    self._owners[proc.info["pid"]] = owners[arg]
                    break


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()  # one side gone: the link is gone (lnd closes whole connections)


async def serve(control_port: int) -> None:
    relay = Relay()
    server = await asyncio.start_server(relay.handle_control, HOST, control_port)
    port = server.sockets[0].getsockname()[1]
    print(f"relay control on {HOST}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="escrowlab's p2p relay between Lightning node processes")
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--run-dir", required=True, help="the cluster's run folder (names this relay)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.control_port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
