"""Stage events, and the stages of orders planned a day at a time (simulator/plan.py).

``PlannedStages`` is the part of ``Market`` that plans a day in bulk and applies each
planned stage when its event fires: every stage is one cheap event whose callback moves
a few counters (locked sats, HTLC slots, queue depths). A planned order that opens a
dispute, and every on-chain order from its arrival on, joins the per-order path in
``market`` with its full record.
"""

from __future__ import annotations

from array import array
from heapq import heappush

import numpy as np
import simpy
from simpy.events import NORMAL, Event

from simulator import plan as planning

LN, CUSTODIAL = 0, 2
REFUND, RELEASE = 1, 0
INF = float("inf")
_CH, _H_FUND = 2, 10
HIST_MAX_BLOCKS = 4_096
# A deadline in blocks falls exactly on a block's time: the block comes first (the app acts
# when it sees the height), so stages sort after ordinary events at the same instant.
AFTER_BLOCKS = NORMAL + 1
# Stages further ahead than this wait in a calendar bucket, so simpy's heap holds only the
# next few minutes of events (a heap of months of pending stages costs cache misses on every pop).
# Five minutes keeps about 150 events queued in the year config (an hour: about 850, and each
# event cost about a third more; ``bench sim`` reports the depth as mean_pending_events).
BUCKET_S = 300.0


class Stage(Event):
    """An order reaching its next state: a Timeout with its callback already attached."""

    _ok = True      # a stage never fails

    def __init__(self, env: simpy.Environment, delay: float, callback, order: list) -> None:
        self.env = env
        self.callbacks = [callback]
        self._value = order
        # env.schedule, inlined as simpy's own Timeout inlines Event.__init__: same queue, same ids
        heappush(env._queue, (env._now + delay, AFTER_BLOCKS, next(env._eid), self))


def stage_classes(env: simpy.Environment, callbacks: list) -> list[type]:
    """One ``Stage`` subclass per planned stage kind, its environment and callback held by the class:
    a planned stage is then one object with one attribute (its row). simpy's ``step`` reads
    ``event.callbacks`` (the class's one-callback list, never changed) and sets the instance's to None."""
    return [type(f"Stage{kind}", (Stage,), {"env": env, "callbacks": [cb]}) for kind, cb in enumerate(callbacks)]


class PlannedStages:
    """Mixed into Market: it provides the counters and _take_slot, _free_htlc, _settle, _open_dispute.

    Planned orders are numbered across days; what is decided at arrival lives in compact buffers
    indexed by that number (a stage days later reads a few bytes, not an object made when its
    day was planned): ``order_channel`` (the channel the hold HTLC is on: the route may move on
    from the drawn one), ``order_custody`` (1 if the guardian settles it into custody before its
    end), ``order_funded`` (0 not arrived yet, 1 funded, 2 funding failed) and ``order_rows``
    (the drawn row, agents.ROW_FIELDS, only for the orders that take the per-order path)."""

    def init_planned(self, env: simpy.Environment) -> None:
        self.order_channel = array("q")
        self.order_custody = bytearray()
        self.order_funded = bytearray()
        self.order_rows: dict[int, tuple] = {}
        self.planned_orders = 0
        # one class per kind, in the order of ``plan``'s kinds
        self.stage_classes = stage_classes(env, [
            self._p_fund, self._p_arrive_onchain, self._p_shipped, self._p_delivered, self._p_custody,
            self._p_ship_timeout, self._p_undelivered, self._p_buyer_dispute, self._p_release])

    def plan(self, draws) -> None:
        a = draws.arrays
        times, kinds, indices, custody, h0 = planning.plan_day(
            a["arrive"], a["mode"], a["ship"], a["transit"], a["act"], a["act_delay"],
            self.block_times, self.windows, self.guard_blocks)
        first = self.planned_orders
        self.planned_orders += len(h0)
        # full rows only for the orders that will take the per-order path: on-chain ones, disputes
        per_order = np.unique(indices[np.isin(kinds, planning.PER_ORDER_KINDS)])
        self.order_rows.update(zip((per_order + first).tolist(), draws.rows_of(per_order)))
        self.order_channel.frombytes(a["channel"].astype(np.int64).tobytes())
        self.order_custody += custody.astype(np.uint8).tobytes()
        self.order_funded += bytes(len(h0))
        planning.file_stages(self.plan_buckets, BUCKET_S, times, kinds, indices, first, (a["mode"], a["price"], h0))

    # --- stage callbacks: ``ev._value`` is [kind, order number, mode, price, funding height]
    def _p_fund(self, ev: Stage) -> None:
        """A planned (Lightning or custodial) order arrives: fund it, or record why it could not be."""
        _k, i, mode, price, _h = ev._value
        self.arrivals += 1
        self.by_mode_arrivals[mode] += 1
        if mode == LN:
            c = self._take_slot(price, self.order_channel[i])
            if c < 0:
                self.order_funded[i] = 2
                return
            self.order_channel[i] = c
        else:
            self.locked_sats[CUSTODIAL] += price
            self.hot_wallet_sats += price      # the buyer deposited just in time
        self.order_funded[i] = 1
        self.funded += 1
        self.awaiting_ship += 1

    def _p_arrive_onchain(self, ev: Stage) -> None:
        self.arrive(*self.order_rows.pop(ev._value[1]))    # funding waits on the mempool: the per-order path

    def _p_shipped(self, ev: Stage) -> None:
        if self.order_funded[ev._value[1]] != 1:
            self.skipped += 1
            return
        self.awaiting_ship -= 1
        self.in_transit += 1

    def _p_delivered(self, ev: Stage) -> None:
        if self.order_funded[ev._value[1]] != 1:
            self.skipped += 1
            return
        self.in_transit -= 1
        self.awaiting_release += 1

    def _p_custody(self, ev: Stage) -> None:
        _k, i, _mode, price, _h = ev._value
        if self.order_funded[i] != 1:
            self.skipped += 1
            return
        self._free_htlc(self.order_channel[i], price)
        self.custody_sats += price
        self.custody_moves += 1

    def _p_ship_timeout(self, ev: Stage) -> None:
        _k, i, mode, price, h = ev._value
        if self.order_funded[i] != 1:
            self.skipped += 1
            return
        self.awaiting_ship -= 1
        self.ship_timeouts += 1
        self.resolved += 1
        self._settle(mode, price, self.order_channel[i], h, False, REFUND)

    def _p_release(self, ev: Stage) -> None:
        """The buyer confirmed, or the dispute window closed: settle, pay the seller (Market._settle's
        rules for a release, inlined: most orders end here)."""
        _k, i, mode, price, h = ev._value
        if self.order_funded[i] != 1:
            self.skipped += 1
            return
        self.awaiting_release -= 1
        self.resolved += 1
        self.outcomes[mode][RELEASE] += 1
        commission = price * self.fee_ppm // 1_000_000
        self.commission_sats += commission
        if mode == LN:
            if self.order_custody[i]:
                self.custody_sats -= price
            else:
                c = self.order_channel[i]
                self.slots[c] -= 1
                self.inflight_sats[c] -= price
                self.held_htlcs -= 1
                self.locked_sats[LN] -= price
            self._payout(price - commission)
        else:
            self.locked_sats[CUSTODIAL] -= price
            self._withdraw(int((price - commission) * self.withdraw_fraction))
        blocks = self.height - h
        self.durations[mode][blocks if blocks < HIST_MAX_BLOCKS else HIST_MAX_BLOCKS] += 1

    def _p_undelivered(self, ev: Stage) -> None:
        _k, i, mode, _price, h = ev._value
        if self.order_funded[i] != 1:
            self.skipped += 1
            return
        self.in_transit -= 1
        self.disputes_opened["undelivered"] += 1
        self._open_dispute(self._order_of(i, mode, h))

    def _p_buyer_dispute(self, ev: Stage) -> None:
        _k, i, mode, _price, h = ev._value
        if self.order_funded[i] != 1:
            self.skipped += 1
            return
        self.awaiting_release -= 1
        self.disputes_opened["buyer"] += 1
        self._open_dispute(self._order_of(i, mode, h))

    def _order_of(self, i: int, mode: int, h: int) -> list:
        """A planned order joins the per-order path (a dispute): its full record."""
        guard = self.times[h + self.guard_blocks - 1] if mode == LN else INF
        order = [*self.order_rows.pop(i)[:_H_FUND], h, guard, False, bool(self.order_custody[i]), 0.0, None]
        order[_CH] = self.order_channel[i]       # the channel the route found room on, not the one first tried
        return order

    def _deadline(self, t: float, h: int, window: int) -> float:
        seconds, blocks = self.windows[window]
        by_blocks = self.times[h + blocks - 1]
        return t + seconds if t + seconds < by_blocks else by_blocks

    def _fail(self, reason: str) -> None:
        self.failures[reason] += 1
        if self.first_failure_s[reason] is None:
            self.first_failure_s[reason] = self.env._now
