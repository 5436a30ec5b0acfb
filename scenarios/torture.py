"""Crash-recovery torture: runs that kill the app mid-escrow and check the oracle.

Each run is a scenario (``TortureRun``) on the shared hub cluster with a fresh
app and database. A seeded ``random.Random`` picks the escrow path (a release
that settles and pays out, or a refund that cancels the hold) and the kill:
either an armed crash point (``ESCROWLAB_FAULT_POINTS``, services/faults.py),
where the app dies by itself, or a SIGKILL from outside after a seeded delay
while the escrow is in flight. The app is restarted, the order must reach a
terminal state, and the base class runs every invariant of the oracle on node
truth. ``sats lost`` is what the conservation check (I1) finds missing.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import httpx

from scenarios.actors import ApiError
from scenarios.base import Scenario, ScenarioResult
from scenarios.world import BASE_SETTINGS, World

# The crash points each path passes through, in order (services/faults.py POINTS).
PATHS = {
    "release": ("after_claim_release", "after_settle", "after_payout_marker", "after_payout_sent"),
    "refund": ("after_cancel",),
}
SIGKILL = "sigkill"
MAX_KILL_DELAY_S = 1.5
TERMINAL = {"release": "RELEASED", "refund": "REFUNDED"}


@dataclass(frozen=True)
class Plan:
    path: str
    kill: str            # a crash point, or "sigkill"
    delay_s: float = 0.0  # for sigkill: after the trigger request is sent

    @property
    def label(self) -> str:
        return self.kill if self.kill != SIGKILL else f"sigkill@{self.path}"


class TortureRun(Scenario):
    name = "torture"
    summary = "The app is killed mid-escrow (crash point or SIGKILL); restarted, the escrow ends and nothing is lost."

    def __init__(self, world: World, seed: int, index: int) -> None:
        super().__init__(world, seed)
        self.rng.seed(f"torture:{seed}:{index}")
        path = self.rng.choice(sorted(PATHS))
        kills = list(PATHS[path]) + [SIGKILL]
        kill = self.rng.choice(kills)
        self.plan = Plan(path, kill, round(self.rng.uniform(0, MAX_KILL_DELAY_S), 2) if kill == SIGKILL else 0.0)
        self.hit = False

    def setup(self):
        self.b, self.s = self.buyer(), self.seller()

    def run(self):
        plan = self.plan
        order = self.place(self.b, self.s)
        if plan.path == "release":
            self.s.ship(order["id"], "fastship", self.tracking(order))
        self.arm()
        self.log.info("the escrow is set in motion toward %s", TERMINAL[plan.path])
        try:
            if plan.path == "release":
                self.b.confirm(order["id"])
            else:
                self.world.mine(BASE_SETTINGS["ship_window_blocks"] + 1)
        except (httpx.HTTPError, ApiError) as exc:  # the app died under the request: expected here
            self.log.info("the trigger request broke off: %s", type(exc).__name__)
        self.await_kill()
        self.log.info("restarting the app without faults")
        self.world.restart_app()
        if plan.path == "refund":
            self.world.mine(1)  # a block for the guardian's next look, should the kill have eaten its turn
        self.settle_on(self.b, order, TERMINAL[plan.path], timeout=90)

    def arm(self) -> None:
        plan = self.plan
        if plan.kill != SIGKILL:
            self.log.info("the app is armed to crash at '%s'", plan.kill)
            self.world.restart_app(fault_points=[plan.kill])
            return
        self.log.info("the app will be SIGKILLed %.2f s after the trigger", plan.delay_s)
        self.killer = threading.Timer(plan.delay_s, self._sigkill)

    def _sigkill(self) -> None:
        if self.world.app.daemon and self.world.app.daemon.is_running():
            self.world.app.kill()
            self.hit = True

    def await_kill(self) -> None:
        if self.plan.kill == SIGKILL:
            self.killer.start()
            self.killer.join()
            return
        try:
            self.world.app.wait_exit(timeout=60)
            self.hit = True
            self.log.info("the app crashed at '%s'", self.plan.kill)
        except TimeoutError:
            self.log.info("the app never reached '%s'", self.plan.kill)


@dataclass
class TortureSummary:
    seed: int
    runs: int = 0
    kill_points: Counter = field(default_factory=Counter)   # kills that happened, per point
    missed_points: Counter = field(default_factory=Counter)  # armed but never reached
    escrows_checked: int = 0
    sats_lost: int = 0
    failures: list[dict] = field(default_factory=list)

    def add(self, run: TortureRun, result: ScenarioResult) -> None:
        self.runs += 1
        (self.kill_points if run.hit else self.missed_points)[run.plan.label] += 1
        self.escrows_checked += len(result.orders)
        self.sats_lost += lost_sats(result)
        if not result.passed:
            self.failures.append({"run": self.runs, "plan": run.plan.__dict__, "error": result.error,
                                  "violations": [f"{v.invariant}: {v.message}" for v in result.violations]})

    def as_dict(self) -> dict:
        return {"seed": self.seed, "runs": self.runs, "kill_points": dict(self.kill_points),
                "missed_points": dict(self.missed_points), "escrows_checked": self.escrows_checked,
                "sats_lost": self.sats_lost, "failures": self.failures}


def lost_sats(result: ScenarioResult) -> int:
    """Sats the conservation check (I1) found short of what the rules give, over all nodes."""
    return sum(max(0, v.evidence["expected"] - v.evidence["actual"]) for v in result.violations
               if v.invariant == "I1" and "expected" in v.evidence)


def torture(cluster, run_dir, runs: int, seed: int, progress=lambda _i, _plan, _result: None) -> TortureSummary:
    """``runs`` torture runs on ``cluster``, each in its own folder under ``run_dir``."""
    summary = TortureSummary(seed)
    for i in range(runs):
        world = World(cluster, run_dir / f"torture-{i + 1:03d}")
        run = TortureRun(world, seed, i)
        result = run.execute()
        summary.add(run, result)
        progress(i, run.plan, result)
    return summary
