"""Evidence reads an ended order's hold again until the app's record agrees with the node: the
app records a hold's end after the node ends it (pure logic, no nodes)."""

from __future__ import annotations

from harness.evidence import _hold_recorded


class Market:
    """Answers the order with each of ``states`` as its hold's record in turn, then the last."""

    def __init__(self, *states: str) -> None:
        self.states, self.reads = list(states), 0

    def order(self, _admin, oid: int) -> dict:
        self.reads += 1
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {"id": oid, "state": "EXPIRED", "hold": {"lnd_state": state}}


def test_an_ended_order_is_read_again_until_its_hold_is_recorded_as_the_node_has_it():
    market = Market("OPEN", "OPEN", "CANCELED")
    first = {"id": 1, "state": "EXPIRED", "hold": {"lnd_state": "OPEN"}}
    assert _hold_recorded(market, None, first, "CANCELED")["hold"]["lnd_state"] == "CANCELED"
    assert market.reads == 3


def test_an_agreeing_or_open_order_is_not_read_again_and_a_record_that_never_agrees_is_judged():
    market = Market("OPEN")
    agreeing = {"id": 1, "state": "EXPIRED", "hold": {"lnd_state": "CANCELED"}}
    assert _hold_recorded(market, None, agreeing, "CANCELED") is agreeing
    not_ended = {"id": 2, "state": "AWAITING_FUNDS", "hold": {"lnd_state": "OPEN"}}
    assert _hold_recorded(market, None, not_ended, "CANCELED") is not_ended
    assert market.reads == 0
    stuck = {"id": 3, "state": "EXPIRED", "hold": {"lnd_state": "OPEN"}}
    assert _hold_recorded(market, None, stuck, "CANCELED", timeout=0.3)["hold"]["lnd_state"] == "OPEN"
    assert market.reads >= 2  # asked again, then handed to I11 as it is
