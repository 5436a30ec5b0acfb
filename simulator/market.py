"""The marketplace's escrow resources and each order's path through the app's state machine.

An order is a short list (see the ``_`` indices) carried as the value of the simpy event
that moves it on; no other per-order object exists. Each stage is one event whose
callback applies the app's rule for that state and schedules the next stage:

    funded -> shipped | ship timeout (refund)
    shipped -> delivered | delivery timeout (dispute, never a silent refund)
    delivered -> buyer confirms | dispute window ends (release) | buyer disputes
    disputed -> arbiter ruling | ruling window ends (default release)

Windows end at whichever comes first of their seconds and their blocks, as in the app.
A Lightning escrow's hold HTLC is also bound by the guardian rule: at funding height
+ ceil(trade windows x speedup) an order not shipped is cancelled, one shipped or
disputed is settled into custody and its case goes on.
"""

from __future__ import annotations

import math
from heapq import heapify

import numpy as np
import simpy

from escrow_protocol.modes import MODE_NAMES
from simulator.chain import Chain, Mempool
from simulator.stages import AFTER_BLOCKS, BUCKET_S, HIST_MAX_BLOCKS, PlannedStages, Stage
from simulator.config import SimConfig, guardian_after_blocks, hold_cltv_blocks, route_cltv_cap

LN, ONCHAIN, CUSTODIAL = 0, 1, 2
RELEASE, REFUND, SPLIT = 0, 1, 2
RULINGS = ("release", "refund", "split")
OUTCOMES = ("released", "refunded", "split")
SILENT, CONFIRM, DISPUTE = 0, 1, 2
FAILURES = ("htlc_slots", "channel_liquidity", "cltv_budget")
INF = math.inf

# order fields: drawn at arrival ...
_MODE, _PRICE, _CH, _SHIP, _TRANSIT, _ACT, _ACT_DELAY, _RULING, _HANDLING, _RELEASE_VB = range(10)
# ... and the order's state
_H_FUND, _GUARD, _DONE, _CUSTODY, _NEXT_AT, _NEXT_CB = range(10, 16)


class Market(PlannedStages):
    """Counters for every resource, updated by the order events; sampled by the recorder."""

    def __init__(self, env: simpy.Environment, cfg: SimConfig, chain: Chain) -> None:
        self.env, self.cfg, self.chain = env, cfg, chain
        self.times = chain.times_s
        self.height = 0
        self.mempool = Mempool(chain, cfg.blocks.base_fee_sat_vb)
        ln, w = cfg.lightning, cfg.windows
        self.channels = ln.channels
        self.slot_limit = ln.htlc_slots_per_direction
        self.usable_sats = int(ln.channel_capacity_sats * (1 - ln.reserve_fraction))
        self.attempts = min(ln.route_attempts, ln.channels)
        self.slots = [0] * ln.channels
        self.inflight_sats = [0] * ln.channels
        self.cltv_blocks = hold_cltv_blocks(w)
        self.cltv_cap, self.cltv_cap_from = route_cltv_cap(ln)
        self.cltv_fits = self.cltv_blocks <= self.cltv_cap
        self.guard_blocks = guardian_after_blocks(w)
        self.windows = ((w.ship_window_s, w.ship_window_blocks), (w.delivery_window_s, w.delivery_window_blocks),
                        (w.dispute_window_s, w.dispute_window_blocks), (w.ruling_window_s, w.ruling_window_blocks))
        self.fee_ppm = w.fee_ppm
        self.payout_fee = (ln.routing_fee_base_msat / 1000, ln.routing_fee_ppm / 1e6, ln.payout_fee_limit_sats)
        self.confirmations = cfg.blocks.confirmations
        self.fund_vb, self.withdrawal_vb = cfg.blocks.fund_tx_vb, cfg.blocks.withdrawal_tx_vb
        self.split_buyer = cfg.disputes.split_buyer_share_pct / 100
        self.withdraw_fraction = cfg.custodial.seller_withdraw_fraction
        self.disputes: simpy.Store = simpy.Store(env)
        self.buckets: dict[int, list] = {}          # per-order stages: (time, callback, order)
        self.plan_buckets: dict[int, list] = {}     # planned stages: (times, rows [kind, order, mode, price, height])
        self.block_times = np.asarray(chain.times_s)
        self.skipped = 0                            # planned stages of orders whose funding failed
        self.pending_events_sum = 0                 # simpy's queue length, summed at each block
        self.init_planned(env)
        # bound once: a bound method made per call would be one more object per pending stage
        self.cb_shipped = self._shipped
        self.cb_delivered = self._delivered
        self.cb_release = self._release
        self.cb_undelivered = self._undelivered
        self.cb_buyer_disputes = self._buyer_disputes
        self.cb_ship_timeout = self._ship_timeout
        self.cb_guardian = self._guardian
        self.cb_ruling_timeout = self._ruling_timeout
        self.cb_closed_onchain = self._closed_onchain
        self.next_bucket_s = BUCKET_S
        # resources, as they stand now
        self.held_htlcs = 0
        self.locked_sats = [0, 0, 0]          # per mode: in a hold HTLC, in a multisig output, in the ledger
        self.custody_sats = 0                 # LN escrows settled early by the guardian, case still open
        self.outbound_sats = ln.outbound_liquidity_sats
        self.hot_wallet_sats = cfg.custodial.hot_wallet_initial_sats
        self.cold_wallet_sats = 0
        # queue depths
        self.awaiting_ship = self.in_transit = self.awaiting_release = self.in_dispute = 0
        # totals
        self.arrivals = self.funded = self.resolved = 0
        self.by_mode_arrivals = [0, 0, 0]
        self.failures = dict.fromkeys(FAILURES, 0)
        self.first_failure_s = dict.fromkeys(FAILURES + ("outbound_liquidity", "hot_wallet"))
        self.outcomes = [[0, 0, 0] for _ in MODE_NAMES]
        self.disputes_opened = {"buyer": 0, "undelivered": 0}
        self.ruling_timeouts = self.custody_moves = self.ship_timeouts = 0
        self.payouts = self.payouts_over_fee_limit = self.outbound_short = self.hot_wallet_short = 0
        self.routing_fees_sats = 0.0
        self.commission_sats = 0
        self.durations = [[0] * (HIST_MAX_BLOCKS + 1) for _ in MODE_NAMES]
        self.peak_held_htlcs = self.peak_channel_slots = self.peak_channel_sats = self.peak_ln_locked_sats = 0

    # --- helpers
    def _at(self, t: float, callback, order: list) -> None:
        if t < self.next_bucket_s:
            Stage(self.env, t - self.env._now, callback, order)
        else:
            k = int(t // BUCKET_S)
            bucket = self.buckets.get(k)
            if bucket is None:
                bucket = self.buckets[k] = []
            bucket.append((t, callback, order))

    def open_bucket(self, k: int) -> None:
        """Hand the stages due in bucket ``k`` to simpy (called by the calendar process at its start)."""
        self.next_bucket_s = (k + 1) * BUCKET_S
        env = self.env
        queue, eid, new = env._queue, env._eid, Stage.__new__
        push = queue.append
        # Stage(env, t - now, ...) inlined below: the hottest loops of the model, one event per stage
        for t, callback, order in self.buckets.pop(k, ()):
            ev = new(Stage)
            ev.env = env
            ev.callbacks = [callback]
            ev._value = order
            push((t, AFTER_BLOCKS, next(eid), ev))
        classes = self.stage_classes
        # a stage of an order whose funding failed still fires (its callback counts it in
        # ``skipped``, which the event count leaves out): cheaper than filtering each chunk here
        for times, rows in self.plan_buckets.pop(k, ()):
            for t, row in zip(times.tolist(), rows.tolist()):
                ev = new(classes[row[0]])
                ev._value = row
                push((t, AFTER_BLOCKS, next(eid), ev))
        heapify(queue)      # once for the whole bucket: cheaper than sifting each stage in

    # --- arrival (called by the buyer process)
    def arrive(self, mode: int, price: int, ch: int, ship: float, transit: float, act: int, act_delay: float,
               ruling: int, handling: float, release_vb: float) -> None:
        self.arrivals += 1
        self.by_mode_arrivals[mode] += 1
        now, h = self.env._now, self.height
        order = [mode, price, ch, ship, transit, act, act_delay, ruling, handling, release_vb, h, INF, False, False,
                 0.0, None]
        if mode == LN:
            c = self._take_slot(price, ch)
            if c < 0:
                return
            order[_CH] = c
            order[_GUARD] = self.times[h + self.guard_blocks - 1]
        elif mode == ONCHAIN:
            # the buyer's funding transaction waits for block space, then k confirmations
            mined_at = self.mempool.submit(self.fund_vb, h, "fund") + self.confirmations - 1
            h = order[_H_FUND] = mined_at if mined_at < len(self.times) else len(self.times) - 1
            now = self.times[h - 1]
            self.locked_sats[ONCHAIN] += price
        else:
            self.locked_sats[CUSTODIAL] += price
            self.hot_wallet_sats += price      # the buyer deposited just in time
        self.funded += 1
        self.awaiting_ship += 1
        dl = self._deadline(now, h, 0)
        if order[_GUARD] < dl:
            dl = order[_GUARD]
        t = now + ship
        if t < dl:
            self._at(t, self.cb_shipped, order)
        else:
            self._at(dl, self.cb_ship_timeout, order)

    def _take_slot(self, price: int, ch: int) -> int:
        """Lock a hold HTLC on the first channel the route finds room on; -1 if none has room."""
        slots, inflight = self.slots, self.inflight_sats
        if slots[ch] < self.slot_limit and inflight[ch] + price <= self.usable_sats and self.cltv_fits:
            c = ch      # the channel tried first has room: the common case
        else:
            c = self._route(price, ch)
            if c < 0:
                return -1
        s = slots[c] = slots[c] + 1
        sats = inflight[c] = inflight[c] + price
        held = self.held_htlcs = self.held_htlcs + 1
        locked = self.locked_sats[LN] = self.locked_sats[LN] + price
        if locked > self.peak_ln_locked_sats:
            self.peak_ln_locked_sats = locked
        if held > self.peak_held_htlcs:
            self.peak_held_htlcs = held
        if s > self.peak_channel_slots:
            self.peak_channel_slots = s
        if sats > self.peak_channel_sats:
            self.peak_channel_sats = sats
        return c

    def _route(self, price: int, ch: int) -> int:
        """The route's next channels with room, or -1 and the reason the first one had none."""
        if not self.cltv_fits:  # senders refuse routes whose CLTV exceeds their cap
            self._fail("cltv_budget")
            return -1
        slots, inflight, n = self.slots, self.inflight_sats, self.channels
        first_reason = None
        for i in range(self.attempts):
            c = (ch + i) % n
            if slots[c] >= self.slot_limit:
                first_reason = first_reason or "htlc_slots"
            elif inflight[c] + price > self.usable_sats:
                first_reason = first_reason or "channel_liquidity"
            else:
                return c
        self._fail(first_reason)
        return -1

    @property
    def peak(self) -> dict:
        return {"held_htlcs": self.peak_held_htlcs, "channel_slots": self.peak_channel_slots,
                "channel_sats": self.peak_channel_sats, "ln_locked_sats": self.peak_ln_locked_sats}

    def _free_htlc(self, c: int, price: int) -> None:
        self.slots[c] -= 1
        self.inflight_sats[c] -= price
        self.held_htlcs -= 1
        self.locked_sats[LN] -= price

    def _next(self, order: list, t: float, callback) -> None:
        """Schedule the order's next stage, letting the guardian act first if its height comes sooner."""
        if t > order[_GUARD] and not order[_CUSTODY]:
            order[_NEXT_AT], order[_NEXT_CB] = t, callback
            self._at(order[_GUARD], self.cb_guardian, order)
        else:
            self._at(t, callback, order)

    # --- stage events
    def _ship_timeout(self, ev: Stage) -> None:
        self.awaiting_ship -= 1
        self.ship_timeouts += 1
        self._finish(ev._value, REFUND)

    def _shipped(self, ev: Stage) -> None:
        order = ev._value
        self.awaiting_ship -= 1
        self.in_transit += 1
        now = self.env._now
        dl = self._deadline(now, self.height, 1)
        t = now + order[_TRANSIT]
        if t < dl:
            self._next(order, t, self.cb_delivered)
        else:
            self._next(order, dl, self.cb_undelivered)

    def _delivered(self, ev: Stage) -> None:
        order = ev._value
        self.in_transit -= 1
        self.awaiting_release += 1
        now = self.env._now
        dl = self._deadline(now, self.height, 2)
        act = order[_ACT]
        t = now + order[_ACT_DELAY]
        if act == DISPUTE and t < dl:
            self._next(order, t, self.cb_buyer_disputes)
        elif act == CONFIRM and t < dl:
            self._next(order, t, self.cb_release)
        else:
            self._next(order, dl, self.cb_release)

    def _release(self, ev: Stage) -> None:
        self.awaiting_release -= 1
        self._finish(ev._value, RELEASE)

    def _undelivered(self, ev: Stage) -> None:
        self.in_transit -= 1
        self.disputes_opened["undelivered"] += 1
        self._open_dispute(ev._value)

    def _buyer_disputes(self, ev: Stage) -> None:
        self.awaiting_release -= 1
        self.disputes_opened["buyer"] += 1
        self._open_dispute(ev._value)

    def _open_dispute(self, order: list) -> None:
        self.in_dispute += 1
        now = self.env._now
        self.disputes.put(order)
        dl = self._deadline(now, self.height, 3)
        if order[_GUARD] < dl and not order[_CUSTODY]:
            order[_NEXT_AT], order[_NEXT_CB] = INF, None
            self._at(order[_GUARD], self.cb_guardian, order)
        self._at(dl, self.cb_ruling_timeout, order)

    def _guardian(self, ev: Stage) -> None:
        order = ev._value
        if order[_DONE]:
            return
        self._free_htlc(order[_CH], order[_PRICE])   # settled into custody: the hold HTLC is gone
        order[_CUSTODY] = True
        self.custody_sats += order[_PRICE]
        self.custody_moves += 1
        if order[_NEXT_CB] is not None:
            self._at(order[_NEXT_AT], order[_NEXT_CB], order)

    def _ruling_timeout(self, ev: Stage) -> None:
        order = ev._value
        if not order[_DONE]:
            self.ruling_timeouts += 1
            self.in_dispute -= 1
            self._finish(order, RELEASE)

    def rule(self, order: list) -> None:
        """The arbiter's ruling (called by an arbiter process); a no-op if the window already ended."""
        if not order[_DONE]:
            self.in_dispute -= 1
            self._finish(order, order[_RULING])

    # --- resolution
    def _finish(self, order: list, outcome: int) -> None:
        order[_DONE] = True
        mode, price = order[_MODE], order[_PRICE]
        self.resolved += 1
        if mode != ONCHAIN:
            self._settle(mode, price, order[_CH], order[_H_FUND], order[_CUSTODY], outcome)
            return
        self.outcomes[mode][outcome] += 1
        seller_part = 0 if outcome == REFUND else price if outcome == RELEASE else price - int(price * self.split_buyer)
        self.commission_sats += seller_part * self.fee_ppm // 1_000_000
        mined_at = self.mempool.submit(order[_RELEASE_VB], self.height, "release")
        mined_at = mined_at if mined_at < len(self.times) else len(self.times) - 1
        order[_NEXT_AT] = mined_at
        self._at(self.times[mined_at - 1], self.cb_closed_onchain, order)

    def _settle(self, mode: int, price: int, ch: int, fund_height: int, custody: bool, outcome: int) -> None:
        """A Lightning or custodial escrow ends: settle or cancel, pay out, withdraw."""
        self.outcomes[mode][outcome] += 1
        seller_part = 0 if outcome == REFUND else price if outcome == RELEASE else price - int(price * self.split_buyer)
        commission = seller_part * self.fee_ppm // 1_000_000
        self.commission_sats += commission
        if mode == LN:
            if custody:
                self.custody_sats -= price
                if price - seller_part:
                    self._payout(price - seller_part)   # the buyer's share goes back from custody
            else:
                self._free_htlc(ch, price)
            if seller_part:
                self._payout(seller_part - commission)
        else:
            self.locked_sats[CUSTODIAL] -= price
            self._withdraw(int((seller_part - commission) * self.withdraw_fraction))
        blocks = self.height - fund_height
        self.durations[mode][blocks if blocks < HIST_MAX_BLOCKS else HIST_MAX_BLOCKS] += 1

    def _closed_onchain(self, ev: Stage) -> None:
        order = ev._value
        self.locked_sats[ONCHAIN] -= order[_PRICE]
        blocks = order[_NEXT_AT] - order[_H_FUND]
        self.durations[ONCHAIN][blocks if blocks < HIST_MAX_BLOCKS else HIST_MAX_BLOCKS] += 1

    def _withdraw(self, withdrawn: int) -> None:
        """The seller withdraws part of a custodial payout from the hot wallet, on chain."""
        if withdrawn:
            self.mempool.submit(self.withdrawal_vb, self.height, "withdrawal")
            self.hot_wallet_sats -= withdrawn
            if self.hot_wallet_sats < 0:
                self.hot_wallet_short += 1
                if self.first_failure_s["hot_wallet"] is None:
                    self.first_failure_s["hot_wallet"] = self.env._now

    def _payout(self, amount: int) -> None:
        base, ppm, limit = self.payout_fee
        fee = base + amount * ppm
        self.payouts += 1
        self.routing_fees_sats += fee
        if fee > limit:
            self.payouts_over_fee_limit += 1
        self.outbound_sats -= amount
        if self.outbound_sats < 0:
            self._short_outbound()

    def _short_outbound(self) -> None:
        self.outbound_short += 1
        if self.first_failure_s["outbound_liquidity"] is None:
            self.first_failure_s["outbound_liquidity"] = self.env._now
