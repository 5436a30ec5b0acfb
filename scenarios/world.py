"""What a scenario acts on: the cluster, the marketplace running as its own
process (so faults can kill it), and the parties.

The app is a ``ProcessDaemon`` like the nodes: it logs to a file in the run
folder, can be stopped, SIGKILLed and restarted on the same database, and a
restart reconciles with LND.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import httpx

from regtest_cluster.cluster import Cluster
from regtest_cluster.daemon import ProcessDaemon
from regtest_cluster.ports import PortAllocator
from regtest_cluster.state import write_state
from regtest_cluster.waiting import wait_for
from scenarios.actors import Arbiter, Buyer, Courier, Party, Seller

ADMIN = ("admin@example.com", "scenario-admin-password")
ADDRESSES = {"buyer1": "1 Main Street, Springfield", "buyer2": "22 Elm Road, Shelbyville"}
# Trade windows short in blocks and long in wall time: scenarios move time by mining.
BASE_SETTINGS = dict(funding_timeout_blocks=6, ship_window_blocks=6, delivery_window_blocks=6,
                     dispute_window_blocks=6, ruling_window_blocks=500, worker_interval_s=0.1,
                     payout_retry_base_s=0.2)


def settings_env(settings: dict) -> dict[str, str]:
    """Settings as the app reads them: ESCROWLAB_<NAME>, JSON for lists and dicts."""
    return {f"ESCROWLAB_{k.upper()}": json.dumps(v) if isinstance(v, (list, dict)) else str(v)
            for k, v in settings.items()}


class AppProcess:
    def __init__(self, run_dir: Path, state_file: Path, settings: dict) -> None:
        self.run_dir = run_dir
        self.data_dir = run_dir / "app"
        self.state_file = state_file
        self.settings = settings
        self.port = PortAllocator().take()
        self.daemon: ProcessDaemon | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, **extra_settings) -> None:
        settings = {**self.settings, **extra_settings, "data_dir": str(self.data_dir),
                    "bootstrap_admin_email": ADMIN[0], "bootstrap_admin_password": ADMIN[1]}
        env = {**os.environ, **settings_env(settings)}
        argv = [sys.executable, "-m", "escrowlab", "app", "serve", "--state-file", str(self.state_file),
                "--port", str(self.port)]
        self.starts += 1
        self.daemon = ProcessDaemon(f"app-{self.starts}", argv, self.run_dir / f"app-{self.starts}.log",
                                    self.run_dir, env)
        self.daemon.start()

        def healthy() -> bool:
            self.daemon.check_alive()
            try:
                return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=60, what="the marketplace to answer /health")

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop(timeout=20)

    def kill(self) -> None:
        if self.daemon:
            self.daemon.kill()

    def wait_exit(self, timeout: float = 60) -> None:
        """Wait for the app to die by itself (a fault point)."""
        wait_for(lambda: not self.daemon.is_running(), timeout=timeout, what="the app to crash at its fault point")

    def secrets(self) -> dict:
        return json.loads((self.data_dir / "app-secrets.json").read_text())


class Cast:
    """Registering a trade's parties. Needs ``http``, ``cluster``, ``admin`` and
    ``courier_secret(name)``; shared by scenario worlds and test markets."""

    def buyer(self, node: str = "buyer1", bind: bool = False) -> Buyer:
        buyer = Buyer.register(self.http, node, ["buyer"], self.cluster.node(node), ADDRESSES[node])
        if bind:
            buyer.bind_payout_node()
        return buyer

    def seller(self, node: str = "seller1", bind: bool = True) -> Seller:
        seller = Seller.register(self.http, node, ["seller"], self.cluster.node(node))
        if bind:
            seller.bind_payout_node()
        return seller

    def arbiter(self, name: str = "arbiter") -> Arbiter:
        arbiter = Arbiter.register(self.http, name, ["buyer"])
        self.admin.call("POST", f"/admin/users/{arbiter.id}/roles", json={"role": "arbiter", "grant": True})
        return arbiter

    def courier(self, name: str = "fastship") -> Courier:
        return Courier(self.http, name, self.courier_secret(name))


class World(Cast):
    def __init__(self, cluster: Cluster, run_dir: Path) -> None:
        self.cluster = cluster
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.state_file = run_dir / "cluster.json"
        write_state(self.state_file, cluster)
        self.app: AppProcess | None = None
        self.http: httpx.Client | None = None
        self.admin: Party | None = None

    def start_app(self, settings: dict | None = None, **extra) -> None:
        self.app = AppProcess(self.run_dir, self.state_file, {**BASE_SETTINGS, **(settings or {})})
        self.app.start(**extra)
        self.http = httpx.Client(base_url=self.app.url, timeout=60)
        self.admin = Party(self.http, ADMIN[0], ["admin"], password=ADMIN[1])
        self.admin.login()

    def restart_app(self, **extra) -> None:
        """Start the app again on the same database (after a crash or a stop)."""
        if self.app.daemon and self.app.daemon.is_running():
            self.app.stop()
        self.app.start(**extra)

    def courier_secret(self, name: str) -> str:
        return self.app.secrets()["courier_secrets"][name]

    def stop_app(self) -> None:
        if self.http:
            self.http.close()
        if self.app:
            self.app.stop()

    # --- time
    def mine(self, blocks: int) -> int:
        return self.cluster.mine(blocks)

    def mine_to(self, height: int) -> int:
        return self.mine(max(0, height - self.cluster.bitcoind.rpc.getblockcount()))
