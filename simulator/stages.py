"""Stage events, and the stages of orders planned a day at a time (simulator/plan.py).

``PlannedStages`` is the part of ``Market`` that plans a day in bulk and applies each
planned stage when its event fires: every stage is one cheap event whose callback moves
a few counters (locked sats, HTLC slots, queue depths). A planned order that opens a
dispute, and every on-chain order from its arrival on, joins the per-order path in
``market`` with its full record.
"""

from __future__ import annotations

from heapq import heappush

import numpy as np
import simpy
from simpy.events import NORMAL, Event

from simulator import plan as planning

LN, CUSTODIAL = 0, 2
REFUND, RELEASE = 1, 0
INF = float("inf")
_CH, _H_FUND = 2, 10
# A deadline in blocks falls exactly on a block's time: the block comes first (the app acts
# when it sees the height), so stages sort after ordinary events at the same instant.
AFTER_BLOCKS = NORMAL + 1
# Stages further ahead than this wait in a calendar bucket, so simpy's heap holds only the
# next few minutes of events (a heap of months of pending stages costs cache misses on every pop).
BUCKET_S = 3_600.0


class Stage(Event):
    """An order reaching its next state: a Timeout with its callback already attached."""

    def __init__(self, env: simpy.Environment, delay: float, callback, order: list) -> None:
        self.env = env
        self.callbacks = [callback]
        self._value = order
        self._ok = True
        # env.schedule, inlined as simpy's own Timeout inlines Event.__init__: same queue, same ids
        heappush(env._queue, (env._now + delay, AFTER_BLOCKS, next(env._eid), self))


class PlannedStages:
    """Mixed into Market: it provides the counters and _take_slot, _free_htlc, _settle, _open_dispute."""

    def stage_callbacks(self) -> list:
        """One callback per stage kind, in the order of ``plan``'s kinds."""
        return [self._p_fund, self._p_arrive_onchain, self._p_shipped, self._p_delivered, self._p_custody,
                self._p_ship_timeout, self._p_undelivered, self._p_buyer_dispute, self._p_release]

    def plan(self, draws) -> planning.DayPlan:
        a = draws.arrays
        times, kinds, indices, custody, h0 = planning.plan_day(
            a["arrive"], a["mode"], a["ship"], a["transit"], a["act"], a["act_delay"],
            self.block_times, self.windows, self.guard_blocks)
        n = len(h0)
        day = planning.DayPlan(a["mode"].tolist(), a["price"].tolist(), a["channel"].tolist(), h0.tolist(),
                               bytearray(custody.astype(np.uint8).tobytes()), draws, bytearray(n))
        planning.file_stages(self.plan_buckets, BUCKET_S, day, times, kinds, indices)
        return day

    # --- stage callbacks: ``ev._value`` is (day plan, order index)
    def _p_fund(self, ev: Stage) -> None:
        """A planned (Lightning or custodial) order arrives: fund it, or record why it could not be."""
        day, i = ev._value
        mode, price = day.mode[i], day.price[i]
        self.arrivals += 1
        self.by_mode_arrivals[mode] += 1
        if mode == LN:
            c = self._take_slot(price, day.channel[i])
            if c < 0:
                day.funded[i] = 2
                return
            day.channel[i] = c
        else:
            self.locked_sats[CUSTODIAL] += price
            self.hot_wallet_sats += price      # the buyer deposited just in time
        day.funded[i] = 1
        self.funded += 1
        self.awaiting_ship += 1

    def _p_arrive_onchain(self, ev: Stage) -> None:
        day, i = ev._value
        self.arrive(*day.draws.row(i))    # funding waits on the mempool: the per-order path

    def _p_shipped(self, ev: Stage) -> None:
        day, i = ev._value
        if day.funded[i] != 1:
            self.skipped += 1
            return
        self.awaiting_ship -= 1
        self.in_transit += 1

    def _p_delivered(self, ev: Stage) -> None:
        day, i = ev._value
        if day.funded[i] != 1:
            self.skipped += 1
            return
        self.in_transit -= 1
        self.awaiting_release += 1

    def _p_custody(self, ev: Stage) -> None:
        day, i = ev._value
        if day.funded[i] != 1:
            self.skipped += 1
            return
        price = day.price[i]
        self._free_htlc(day.channel[i], price)
        self.custody_sats += price
        self.custody_moves += 1

    def _p_ship_timeout(self, ev: Stage) -> None:
        day, i = ev._value
        if day.funded[i] != 1:
            self.skipped += 1
            return
        self.awaiting_ship -= 1
        self.ship_timeouts += 1
        self.resolved += 1
        self._settle(day.mode[i], day.price[i], day.channel[i], day.fund_height[i], False, REFUND)

    def _p_release(self, ev: Stage) -> None:
        day, i = ev._value
        if day.funded[i] != 1:
            self.skipped += 1
            return
        self.awaiting_release -= 1
        self.resolved += 1
        self._settle(day.mode[i], day.price[i], day.channel[i], day.fund_height[i], day.custody[i], RELEASE)

    def _p_undelivered(self, ev: Stage) -> None:
        day, i = ev._value
        if day.funded[i] != 1:
            self.skipped += 1
            return
        self.in_transit -= 1
        self.disputes_opened["undelivered"] += 1
        self._open_dispute(self._order_of(day, i))

    def _p_buyer_dispute(self, ev: Stage) -> None:
        day, i = ev._value
        if day.funded[i] != 1:
            self.skipped += 1
            return
        self.awaiting_release -= 1
        self.disputes_opened["buyer"] += 1
        self._open_dispute(self._order_of(day, i))

    def _order_of(self, day: planning.DayPlan, i: int) -> list:
        """A planned order joins the per-order path (a dispute): its full record."""
        mode, h = day.mode[i], day.fund_height[i]
        guard = self.times[h + self.guard_blocks - 1] if mode == LN else INF
        order = [*day.draws.row(i)[:_H_FUND], h, guard, False, bool(day.custody[i]), 0.0, None]
        order[_CH] = day.channel[i]       # the channel the route found room on, not the one first tried
        return order

    def _deadline(self, t: float, h: int, window: int) -> float:
        seconds, blocks = self.windows[window]
        by_blocks = self.times[h + blocks - 1]
        return t + seconds if t + seconds < by_blocks else by_blocks

    def _fail(self, reason: str) -> None:
        self.failures[reason] += 1
        if self.first_failure_s[reason] is None:
            self.first_failure_s[reason] = self.env._now
