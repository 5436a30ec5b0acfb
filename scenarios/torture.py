"""Crash-recovery torture: runs that kill the app mid-escrow or mid-withdrawal and check the oracle.

Each run is a scenario (``TortureRun``) on the shared hub cluster with a fresh
app and database. A seeded ``random.Random`` picks the path (scenarios/torture_paths.py:
an ln_hold release that settles and pays out, an ln_hold refund that cancels
the hold, a custodial release inside the ledger, a custodial Lightning or
on-chain withdrawal, an on-chain multisig release) and the kill: either an
armed crash point (``ESCROWLAB_FAULT_POINTS``, services/faults.py), where the
app dies by itself, or a SIGKILL from outside a seeded delay after the trigger
request is sent. The first runs take every path once, in a seeded order, and
the next ones every remaining (path, kill) pair once, so a torture of at least
that many runs (17 today) kills at every point of every path. The app is restarted,
the order or withdrawal must reach its end, and the base class runs every
invariant of the oracle on node truth; a withdrawal is also checked against
its payee's node (paid once, for exactly what was debited). ``sats lost`` is
what the conservation checks (I1) find missing.
"""

from __future__ import annotations

import functools
import random
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import httpx

from harness.actors import ApiError
from harness.http import ReferenceMarketplace
from harness.scenario import Scenario, ScenarioResult
from scenarios.torture_paths import PATH_CLASSES
from harness.world import World

BY_NAME = {cls.name: cls for cls in PATH_CLASSES}
# The crash points each path passes through, in order (services/faults.py POINTS).
PATHS = {cls.name: cls.points for cls in PATH_CLASSES}
SIGKILL = "sigkill"


@dataclass(frozen=True)
class Plan:
    path: str
    kill: str            # a crash point, or "sigkill"
    delay_s: float = 0.0  # for sigkill: after the trigger request is sent

    @property
    def label(self) -> str:
        return self.kill if self.kill != SIGKILL else f"sigkill@{self.path}"


def first_kills(seed: int) -> list[tuple[str, str]]:
    """Every (path, kill) once, in a seeded order that takes every path once first."""
    order = random.Random(f"torture-order:{seed}")
    names = order.sample(sorted(PATHS), len(PATHS))
    first = [(path, order.choice([*PATHS[path], SIGKILL])) for path in names]
    rest = [(path, kill) for path in sorted(PATHS) for kill in (*PATHS[path], SIGKILL) if (path, kill) not in first]
    return first + order.sample(rest, len(rest))


def plan_for(seed: int, index: int) -> Plan:
    """Run ``index`` of a torture seeded ``seed``. The first runs take every path once, the
    next every remaining (path, kill) once; later runs pick at random."""
    rng = random.Random(f"torture:{seed}:{index}")
    combos = first_kills(seed)
    if index < len(combos):
        path, kill = combos[index]
    else:
        path = random.Random(f"torture-path:{seed}:{index}").choice(sorted(PATHS))
        kill = rng.choice([*PATHS[path], SIGKILL])
    delay = round(rng.uniform(0, BY_NAME[path].max_kill_delay_s), 2) if kill == SIGKILL else 0.0
    return Plan(path, kill, delay)


class TortureRun(Scenario):
    name = "torture"
    summary = "The app is killed mid-escrow or mid-withdrawal; restarted, everything ends and nothing is lost."
    settings = {"custodial_confirmations": 1}  # deposits and batches confirm in one block: shorter runs

    def __init__(self, world: World, seed: int, index: int) -> None:
        super().__init__(world, seed)
        self.index = index
        self.rng.seed(f"torture:{seed}:{index}:story")
        self.plan = plan_for(seed, index)
        self.hit = False
        self.extra: list = []
        self.path = BY_NAME[self.plan.path](self)

    def configure(self) -> dict:
        # Armed from the start: no path passes its own crash points before its trigger (a point
        # reached early would kill the app under the preparation, and the run would fail), and
        # one app start per run is saved.
        armed = {"fault_points": [self.plan.kill]} if self.plan.kill != SIGKILL else {}
        return {**super().configure(), **armed}

    def run(self):
        plan, path = self.plan, self.path
        path.prepare()
        self.arm()
        self.log.info("the %s is set in motion", plan.path)
        if plan.kill == SIGKILL:
            self.killer.start()
        try:
            path.trigger()
        except (httpx.HTTPError, ApiError) as exc:  # the app died under the request: expected here
            self.log.info("the trigger request broke off: %s", type(exc).__name__)
        self.await_kill()
        self.log.info("restarting the app without faults")
        self.world.market.settings = {**self.world.market.settings, "fault_points": []}
        self.world.restart_app()
        path.finish()
        self.extra = path.verify()

    def arm(self) -> None:
        plan = self.plan
        if plan.kill != SIGKILL:
            self.log.info("the app is armed to crash at '%s'", plan.kill)
            return
        self.log.info("the app will be SIGKILLed %.2f s after the trigger is sent", plan.delay_s)
        self.killer = threading.Timer(plan.delay_s, self._sigkill)

    def _sigkill(self) -> None:
        if self.world.market.daemon and self.world.market.daemon.is_running():
            self.world.cluster.faults.kill_daemon(self.world.market.daemon)
            self.hit = True

    def await_kill(self) -> None:
        if self.plan.kill == SIGKILL:
            self.killer.join()
            return
        try:
            self.world.market.wait_exit(timeout=60)
            self.hit = True
            self.log.info("the app crashed at '%s'", self.plan.kill)
        except TimeoutError:
            self.log.info("the app never reached '%s'", self.plan.kill)

    def _check(self, started: float):
        violations, checked, orders, balances = super()._check(started)
        return violations + self.extra, checked, orders, balances

    def teardown(self) -> None:
        self.path.teardown()


@dataclass
class TortureSummary:
    seed: int
    runs: int = 0
    kill_points: Counter = field(default_factory=Counter)   # kills that happened, per point
    missed_points: Counter = field(default_factory=Counter)  # armed but never reached
    by_path: dict = field(default_factory=lambda: defaultdict(Counter))  # path -> kill label -> kills
    escrows_checked: int = 0
    withdrawals_checked: int = 0
    sats_lost: int = 0
    failures: list[dict] = field(default_factory=list)

    def add(self, run: TortureRun, result: ScenarioResult) -> None:
        self.runs += 1
        (self.kill_points if run.hit else self.missed_points)[run.plan.label] += 1
        if run.hit:
            self.by_path[run.plan.path][run.plan.label] += 1
        self.escrows_checked += len(result.orders)
        self.withdrawals_checked += run.path.withdrawals
        self.sats_lost += lost_sats(result)
        if not result.passed:
            self.failures.append({"run": self.runs, "plan": run.plan.__dict__, "error": result.error,
                                  "violations": [f"{v.invariant}: {v.message}" for v in result.violations]})

    def paths_hit(self) -> set[str]:
        return {path for path, kills in self.by_path.items() if sum(kills.values())}

    def as_dict(self) -> dict:
        return {"seed": self.seed, "runs": self.runs, "kill_points": dict(self.kill_points),
                "missed_points": dict(self.missed_points),
                "kills_by_path": {p: dict(k) for p, k in sorted(self.by_path.items())},
                "escrows_checked": self.escrows_checked, "withdrawals_checked": self.withdrawals_checked,
                "sats_lost": self.sats_lost, "failures": self.failures}


def _sats(value) -> int:
    return sum(value.values()) if isinstance(value, dict) else int(value)


def lost_sats(result: ScenarioResult) -> int:
    """Sats the conservation checks (I1) found short of what the rules give, over all nodes,
    ledgers and escrows."""
    return sum(max(0, _sats(v.evidence["expected"]) - _sats(v.evidence["actual"])) for v in result.violations
               if v.invariant == "I1" and "expected" in v.evidence and "actual" in v.evidence)


def torture(cluster, run_dir, runs: int, seed: int, progress=lambda _i, _plan, _result: None,
            app_processes: int = 1) -> TortureSummary:
    """``runs`` torture runs on ``cluster``, each in its own folder under ``run_dir``, against
    the app served as ``app_processes`` processes."""
    summary = TortureSummary(seed)
    market = functools.partial(ReferenceMarketplace, processes=app_processes)
    for i in range(runs):
        world = World(cluster, run_dir / f"torture-{i + 1:03d}", market)
        run = TortureRun(world, seed, i)
        result = run.execute()
        summary.add(run, result)
        progress(i, run.plan, result)
    return summary
