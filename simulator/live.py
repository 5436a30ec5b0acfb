"""Live mode: the model's agents drive the real reference app and hub cluster in compressed time.

The run is a scenario (scenarios/base.py), so the app's start, the oracle's invariants on
node truth for every order it created, and the teardown come from the scenario machinery.
Its story is a ``simpy.rt.RealtimeEnvironment`` running ``sim_seconds_per_wall_second``
faster than the wall clock: a ``buyer`` process places orders at the model's arrival
times, each order's ``seller``, ``courier`` and buyer act after the same delays the
model draws, ``arbiter`` processes rule the disputes the app lists, and a ``miner`` mines
``blocks_per_10_sim_minutes`` blocks every 600 simulated seconds. HTTP calls run in a
thread pool; a process waits for its call by polling in simulated time, so the clock
never stalls on the network. Live mode drives ``ln_hold`` escrows (the hub topology).
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import simpy.rt

from regtest_cluster import launcher
from regtest_cluster.topology import load as load_topology
from harness.actors import ApiError
from harness.scenario import Scenario
from harness.oracle import TERMINAL
from harness.presets import ADDRESSES, LIVE_SETTINGS
from harness.world import World
from simulator import agents, model
from simulator.config import SimConfig
from simulator.market import CONFIRM, DISPUTE, RULINGS

ORDERS_PER_PARTY = 5      # keeps each party's notifications inside the evidence page (100)
POLL_WALL_S = 0.05


def live_config(cfg: SimConfig) -> SimConfig:
    """The model config that predicts a live run: ln_hold only, the live windows in blocks."""
    w = dataclasses.replace(cfg.windows, ship_window_blocks=cfg.live.windows_blocks,
                            delivery_window_blocks=cfg.live.windows_blocks,
                            dispute_window_blocks=cfg.live.windows_blocks)
    b = dataclasses.replace(cfg.buyers, escrow_mode_mix={"ln_hold": 1.0})
    return dataclasses.replace(cfg, windows=w, buyers=b)


def app_settings(cfg: SimConfig) -> dict:
    w = cfg.windows
    # A live run outlasts the default 15-minute access token (the scenario's parties log in once),
    # and all its simulated users write from one address, which the per-address rate limit is not for.
    return dict(LIVE_SETTINGS, ship_window_blocks=w.ship_window_blocks, delivery_window_blocks=w.delivery_window_blocks,
                dispute_window_blocks=w.dispute_window_blocks, ruling_window_blocks=w.ruling_window_blocks,
                speedup_factor=w.speedup_factor, guardian_margin_blocks=w.guardian_margin_blocks,
                hold_expiry_delta_blocks=w.hold_expiry_delta_blocks, fee_ppm=w.fee_ppm)


class LiveMarket(Scenario):
    """The simulator's agents against the real app: many orders, each with its drawn fate."""

    name = "simulate_live"
    summary = "Model agents drive the hub cluster in compressed time; the oracle checks every order."

    def __init__(self, world: World, cfg: SimConfig, orders: int, progress) -> None:
        super().__init__(world, cfg.run.seed, "ln_hold")
        self.cfg, self.n_orders, self.progress = cfg, orders, progress
        self.settings = app_settings(cfg)
        self.pool = ThreadPoolExecutor(max_workers=cfg.live.concurrency, thread_name_prefix="live")
        self.miner_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="miner")
        self.outcome: dict = {"api_errors": {}, "not_funded": 0, "late_ship_refused": 0, "delivered_late": 0,
                              "buyer_disputes": 0, "rulings": 0, "blocks_mined": 0}
        self.rng = random.Random(f"live:{cfg.run.seed}")

    # --- cast
    def setup(self) -> None:
        live = self.cfg.live
        n = max(1, math.ceil(self.n_orders / ORDERS_PER_PARTY))
        self.log.info("registering %s buyers and %s sellers on %s and %s", n, n, live.buyer_nodes, live.seller_nodes)
        # buyers bind their nodes too: a split or a refund from custody pays them an invoice of theirs
        self.buyers = [self.buyer(live.buyer_nodes[i % len(live.buyer_nodes)], bind=True) for i in range(n)]
        self.sellers = [self.seller(live.seller_nodes[i % len(live.seller_nodes)]) for i in range(n)]
        self.arbiter_party = self.arbiter()
        self.couriers = {name: self.world.courier(name) for name in ("fastship", "slowpost")}

    # --- story
    def run(self) -> None:
        live = self.cfg.live
        env = simpy.rt.RealtimeEnvironment(factor=1 / live.sim_seconds_per_wall_second, strict=False)
        self.env = env
        self.poll_sim_s = POLL_WALL_S * live.sim_seconds_per_wall_second
        gen = agents.numpy_generator(self.rng)
        arrivals: list = []
        day = 0
        while len(arrivals) < self.n_orders:   # the model's own arrival process, day by day
            draws = agents.draw_day(self.cfg, day, 1.0, gen)
            arrivals += zip(draws.arrive_s, draws.rows)
            day += 1
        arrivals = arrivals[: self.n_orders]
        self.log.info("%s orders arrive over %.1f simulated hours at %sx real time", len(arrivals),
                      arrivals[-1][0] / 3600 if arrivals else 0, live.sim_seconds_per_wall_second)
        self.remaining = len(arrivals)
        self.stories_done, self.done = env.event(), env.event()
        env.process(self.buyer_arrivals(arrivals))
        env.process(self.miner())
        for _ in range(self.cfg.arbiters.count):
            env.process(self.arbiter_desk())
        env.process(self.closer(time.monotonic() + live.max_wall_s))
        try:
            env.run(until=self.done)
        except Exception:
            self.log.info("an agent failed:\n%s", traceback.format_exc(limit=12))
            raise
        self.outcome["sim_hours"] = round(env.now / 3600, 2)
        self.outcome["blocks_per_10_sim_minutes"] = round(self.outcome["blocks_mined"] / max(env.now / 600, 1e-9), 3)

    def closer(self, wall_deadline: float):
        """Once every story has played out, blocks and arbiters go on until each order is final."""
        yield self.stories_done
        self.log.info("every order has played its part; blocks and arbiters go on until each one is final")
        while True:
            states = yield from self._call(lambda: [self.world.market.order(self.world.admin, oid)["state"]
                                                    for oid in self.orders])
            if all(s in TERMINAL for s in states):
                break
            if time.monotonic() > wall_deadline:
                self.log.info("%s orders still open at the wall-time limit", sum(s not in TERMINAL for s in states))
                break
            yield self.env.timeout(600)
        self.done.succeed()

    def _call(self, fn, *args, **kwargs):
        """Run an HTTP call in the pool and wait for it in simulated time."""
        fut: Future = self.pool.submit(fn, *args, **kwargs)
        while not fut.done():
            yield self.env.timeout(self.poll_sim_s)
        return fut.result()

    def buyer_arrivals(self, arrivals):
        """Buyers arrive at the model's times."""
        for i, (t, row) in enumerate(arrivals):
            yield self.env.timeout(max(0.0, t - self.env.now))
            self.env.process(self.order_story(i, row))

    def miner(self):
        """Blocks every 600 / blocks_per_10_sim_minutes simulated seconds."""
        interval = 600 / self.cfg.live.blocks_per_10_sim_minutes
        while True:
            yield self.env.timeout(interval)
            fut = self.miner_pool.submit(self.world.mine, 1)
            while not fut.done():
                yield self.env.timeout(self.poll_sim_s)
            fut.result()
            self.outcome["blocks_mined"] += 1

    def arbiter_desk(self):
        """An arbiter takes each open dispute, spends the model's handling time, and rules."""
        taken = self.__dict__.setdefault("_taken", set())
        while True:
            try:
                open_cases = yield from self._call(self.world.market.disputes, self.arbiter_party)
            except ApiError as exc:
                self._api_error("list disputes", exc)
                open_cases = []
            case = next((d for d in open_cases if d["order_id"] in self.my_orders and d["order_id"] not in taken
                         and d.get("ruling") is None), None)
            if case is None:
                yield self.env.timeout(120)
                continue
            taken.add(case["order_id"])
            yield self.env.timeout(self.rng.expovariate(1 / (self.cfg.arbiters.handling_mean_h * 3600)))
            ruling = RULINGS[self.fates[case["order_id"]]]
            try:
                yield from self._call(self.arbiter_party.rule, case["order_id"], ruling,
                                      self.cfg.disputes.split_buyer_share_pct if ruling == "split" else None)
                self.outcome["rulings"] += 1
            except ApiError as exc:
                self._api_error("rule", exc)

    def _api_error(self, step: str, exc: ApiError) -> None:
        key = f"{step}: {exc.problem.get('code', exc.status)}"
        self.outcome["api_errors"][key] = self.outcome["api_errors"].get(key, 0) + 1

    def order_story(self, i: int, row: tuple):
        mode, price, _ch, ship, transit, act, act_delay, ruling, _handling, _vb = row
        buyer, seller = self.buyers[i % len(self.buyers)], self.sellers[i % len(self.sellers)]
        live = self.cfg.live
        price = max(live.item_price_min_sats, min(live.item_price_max_sats, price))
        try:
            listing = yield from self._call(seller.list_item, f"sim-item-{i}", price, 1)
            order = yield from self._call(buyer.buy, listing["id"])
            self.orders.append(order["id"])
            self.holds.append(order["hold"]["payment_hash"])
            self.my_orders.add(order["id"])
            self.fates[order["id"]] = ruling
            self.payments[order["id"]] = buyer.pay(order)
            state = (yield from self._call(self.settle_on, buyer, order, "FUNDED", timeout=30))["state"]
            if state != "FUNDED":
                self.outcome["not_funded"] += 1
                return
            if math.isinf(ship):
                return                                   # the seller never ships
            yield self.env.timeout(ship)
            tracking = self.tracking(order)
            courier = self.couriers["fastship" if i % 2 else "slowpost"]
            try:
                yield from self._call(seller.ship, order["id"], courier.name, tracking)
            except ApiError:
                self.outcome["late_ship_refused"] += 1   # the ship window had closed: the app refunded
                return
            if math.isinf(transit):
                return                                   # lost in transit
            yield self.env.timeout(transit)
            result = yield from self._call(courier.event, tracking, "delivered", ADDRESSES[buyer.node.name])
            if result.status_code != 200:
                self.outcome["delivered_late"] += 1
            yield self.env.timeout(act_delay)
            if act == CONFIRM:
                yield from self._call(buyer.act, "confirm", order["id"])
            elif act == DISPUTE:
                r = yield from self._call(buyer.act, "dispute", order["id"], reason="not as described")
                self.outcome["buyer_disputes"] += r.ok
        except ApiError as exc:
            self._api_error("order", exc)
        finally:
            self.remaining -= 1
            if self.remaining == 0:
                self.stories_done.succeed()

    def teardown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.miner_pool.shutdown(wait=True, cancel_futures=True)

    def execute(self):
        self.my_orders: set[int] = set()
        self.fates: dict[int, int] = {}
        return super().execute()


def measured(result, outcome: dict) -> dict:
    """Outcomes of the live orders, in the model's terms."""
    states = [o["state"] for o in result.orders]
    final = [s for s in states if s in TERMINAL]
    durations = []
    disputed = 0
    for o in result.orders:
        heights = {to: h for _ev, to, _who, h in o["timeline"]}
        tl = o["timeline"]
        disputed += any(to == "DISPUTED" for _e, to, _w, _h in tl)
        if "FUNDED" in heights and tl and tl[-1][1] in TERMINAL and tl[-1][3] is not None:
            durations.append(tl[-1][3] - heights["FUNDED"])
    funded = sum(1 for o in result.orders if any(to == "FUNDED" for _e, to, _w, _h in o["timeline"]))
    durations.sort()
    return {"orders": len(states), "funded": funded,
            "success_rate": round(sum(s in ("RELEASED", "SPLIT") for s in final) / max(1, len(final)), 4),
            "refund_rate": round(sum(s == "REFUNDED" for s in final) / max(1, len(final)), 4),
            "dispute_rate": round(disputed / max(1, funded), 4),
            "escrow_blocks_p50": durations[len(durations) // 2] if durations else None,
            "escrow_blocks_mean": round(sum(durations) / len(durations), 2) if durations else None,
            "not_final": len(states) - len(final),
            "failures": outcome["not_funded"] + sum(outcome["api_errors"].values())}


def predicted(summary: dict) -> dict:
    ln = summary["modes"]["ln_hold"]
    resolved = sum(ln["outcomes"].values())
    return {"orders": summary["orders"]["arrivals"], "funded": summary["orders"]["funded"],
            "success_rate": round((ln["outcomes"]["released"] + ln["outcomes"]["split"]) / max(1, resolved), 4),
            "refund_rate": round(ln["outcomes"]["refunded"] / max(1, resolved), 4),
            "dispute_rate": summary["disputes"]["rate"],
            "escrow_blocks_p50": ln["escrow_blocks"]["p50"], "escrow_blocks_mean": ln["escrow_blocks"]["mean"],
            "not_final": summary["orders"]["open_at_end"],
            "failures": sum(summary["orders"]["failed_funding"].values())}


def run_on(cluster, cfg: SimConfig, run_dir: Path, progress=lambda _m: None, orders: int | None = None) -> dict:
    """Predict with the model, then run the same agents on ``cluster``; the report document."""
    from simulator import verdict as verdict_mod
    from simulator.config import as_dict

    cfg = live_config(cfg)
    n = orders or cfg.live.orders
    prediction = model.run(cfg, days=max(5.0, 20_000 / cfg.buyers.arrivals_per_day))
    progress(f"model predicts from {prediction.summary['orders']['arrivals']:,} orders")
    world = World(cluster, run_dir / "live")
    started = time.time()
    scenario = LiveMarket(world, cfg, n, progress)
    result = scenario.execute()
    wall = round(time.time() - started, 1)
    progress(f"live run: {len(result.orders)} orders in {wall} s, {len(result.violations)} violations")
    live = {"model": predicted(prediction.summary), "measured": measured(result, scenario.outcome),
            "agent_outcomes": scenario.outcome, "wall_s": wall, "error": result.error,
            "invariants_checked": result.checked,
            "violations": [dataclasses.asdict(v) for v in result.violations],
            "story": [s.message for s in result.steps][-40:]}
    return {"mode": "live", "config": as_dict(cfg), "summary": prediction.summary,
            "verdict": verdict_mod.verdict(prediction.summary, cfg), "live": live,
            "performance": {"events": prediction.events, "wall_s": round(prediction.wall_s, 2)},
            "_series": prediction.recorder.series, "_channel_slots": prediction.recorder.channel_slots}


def run(cfg: SimConfig, env, run_dir: Path, progress, orders: int | None = None) -> tuple[dict, dict, list]:
    """Start the hub cluster, run live mode on it, stop it."""
    (run_dir / "cluster").mkdir(parents=True, exist_ok=True)
    cluster = launcher.launch(load_topology("hub"), env, progress, run_dir=run_dir / "cluster")
    try:
        doc = run_on(cluster, cfg, run_dir, progress, orders)
    finally:
        cluster.stop()
    return doc, doc.pop("_series"), doc.pop("_channel_slots")
