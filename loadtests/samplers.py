"""Threads that sample the system while Locust runs, each into its own CSV.

- ``LockedSampler``: every second, the sats held in the hub's incoming HTLCs
  (the sats locked in escrow, as node truth).
- ``LiquiditySampler``: every few seconds, what the hub can still send down each of its
  channels (its local balance), so a run that drains a channel says so.
- ``ProbeSampler``: every few seconds, the CPU time a fixed piece of work takes: the
  machine's own speed, beside which the processes' CPU is read.
- ``ProcessSampler``: every few seconds, the resident memory and the CPU seconds so far of
  the app, of every node process and of Locust's own processes, for the soak's memory slope
  and for where the CPU of an escrow goes as a run goes on.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil

from regtest_cluster.cluster import Cluster
from regtest_cluster.daemon import cpu_seconds
from regtest_cluster.nodes.lnd import LndError
from reports.load import LOAD_GENERATOR


class Sampler(threading.Thread):
    """Writes ``header`` then one ``sample()`` row set per ``interval_s`` until stopped."""

    header = ""
    interval_s = 1.0

    def __init__(self, out: Path, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.out, self.stop_event = out, threading.Event()

    def run(self) -> None:
        t0 = time.time()
        with self.out.open("w") as f:
            f.write(self.header + "\n")
            while not self.stop_event.wait(self.interval_s):
                for row in self.sample():
                    f.write(f"{time.time() - t0:.1f},{row}\n")
                f.flush()

    def sample(self) -> list[str]:
        raise NotImplementedError

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=10)


class LockedSampler(Sampler):
    header = "t_s,locked_sats,held_htlcs"

    def __init__(self, cluster: Cluster, out: Path, hub: str = "hub") -> None:
        super().__init__(out, "locked-sats")
        self.rest = cluster.node(hub).rest

    def sample(self) -> list[str]:
        try:
            htlcs = [h for ch in self.rest.listchannels() for h in ch.get("pending_htlcs", []) if h.get("incoming")]
        except LndError:
            return []  # a busy node skips a sample; the plot shows the gap
        return [f"{sum(int(h['amount']) for h in htlcs)},{len(htlcs)}"]


class LiquiditySampler(Sampler):
    """Both sides of each of the hub's channels. Payouts to a seller go out of the hub's side,
    and a channel that runs dry there fails them (NO_ROUTE) until it is rebalanced; a buyer pays
    out of its own side, and its payments fail (INSUFFICIENT_BALANCE) once that runs dry."""

    header = "t_s,channel,local_sats,capacity_sats,remote_sats"

    def __init__(self, cluster: Cluster, out: Path, hub: str = "hub", interval_s: float = 5.0) -> None:
        super().__init__(out, "liquidity")
        self.interval_s, self.hub = interval_s, hub
        self.rest = cluster.node(hub).rest
        self.names = {node.pubkey: name for name, node in cluster.nodes.items() if node.pubkey}

    def sample(self) -> list[str]:
        try:
            channels = self.rest.listchannels()
        except LndError:
            return []
        rows = []
        for ch in channels:
            peer = self.names.get(ch["remote_pubkey"], ch["remote_pubkey"][:12])
            # one peer may have several channels: each is its own line, named by its channel point
            name = f"{self.hub}->{peer}" + ("" if sum(c["remote_pubkey"] == ch["remote_pubkey"] for c in channels) == 1
                                            else f" {ch['channel_point'][:8]}")
            # (a zero balance may be left out of lnd's JSON)
            rows.append(f"{name},{int(ch.get('local_balance', 0))},{int(ch.get('capacity', 0))},"
                        f"{int(ch.get('remote_balance', 0))}")
        return rows


class ProcessSampler(Sampler):
    """Resident set size (MiB) and CPU seconds so far (user + system) of each named
    process, children included (an app's other processes; a node is one process)."""

    header = "t_s,process,rss_mib,cpu_s"

    def __init__(self, pids: dict[str, int | None], out: Path, interval_s: float = 5.0) -> None:
        super().__init__(out, "memory")
        self.interval_s = interval_s
        self.procs: dict[str, psutil.Process] = {}
        for name, pid in pids.items():
            try:
                if pid:
                    self.procs[name] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                pass  # gone before the run began: nothing to sample

    def sample(self) -> list[str]:
        rows = []
        for name, proc in self.procs.items():
            try:
                rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
            except psutil.Error:
                continue  # exited (a crash shows as the series ending)
            rows.append(f"{name},{rss / 2**20:.1f},{cpu_seconds(proc.pid):.2f}")
        generator = _load_generator()
        if generator:  # Locust's processes, started after the sampler: found on each sample
            rss = sum(p.memory_info().rss for p in generator)
            rows.append(f"{LOAD_GENERATOR},{rss / 2**20:.1f},{sum(cpu_seconds(p.pid) for p in generator):.2f}")
        return rows


def _load_generator() -> list[psutil.Process]:
    """This process's Locust children: the load generator's share of the machine, so a run whose
    cores are full can tell the generator's CPU from what it measures."""
    found = []
    for child in psutil.Process().children():
        try:
            if "locust" in child.cmdline()[1:3]:  # python -m locust ...
                found.append(child)
        except psutil.Error:
            continue
    return found


class ProbeSampler(Sampler):
    """The machine's speed: the CPU time (this thread's own) that a fixed piece of work takes,
    the least of three tries, every few seconds. On a VM whose host takes the cores away without
    saying so (no steal time), that time is charged to whatever ran, and every process's CPU
    per escrow rises alike; the probe rises with them, which a slower process alone does not."""

    header = "t_s,probe_ms"

    def __init__(self, out: Path, interval_s: float = 5.0) -> None:
        super().__init__(out, "probe")
        self.interval_s = interval_s

    def sample(self) -> list[str]:
        return [f"{1000 * min(_probe() for _ in range(3)):.3f}"]


def _probe() -> float:
    start = time.thread_time()
    sum(i * i for i in range(20_000))
    return time.thread_time() - start


def process_pids(cluster: Cluster, app_pid: int | None) -> dict[str, int | None]:
    """The app's and every node's process id (None where a backend has no local process)."""
    pids = {"app": app_pid, "bitcoind": _pid(cluster.bitcoind.daemon)}
    pids.update({name: _pid(node.daemon) for name, node in cluster.nodes.items()})
    return pids


def _pid(daemon) -> int | None:
    """A process backend's pid; a container's is the engine's business (not sampled)."""
    from regtest_cluster.daemon import ProcessDaemon

    return daemon.pid if isinstance(daemon, ProcessDaemon) else None
