"""A funder's commitment fee rate update between two balance readings is its own fee given back,
not a payment: the oracle's conservation check (I1) counts it as such, and only it."""

from __future__ import annotations

from harness import evidence
from harness.evidence import Balances


def reading(balances: dict, fees: dict) -> Balances:
    out = Balances(balances)
    out.fees = fees
    return out


def test_a_lowered_fee_rate_gives_the_funder_its_fee_back():
    before = reading({"hub": 1000, "seller1": 0}, {"hub": {"c:1": (2500, 2843), "c:2": (2500, 2843)}, "seller1": {}})
    after = reading({"hub": 3526, "seller1": 0}, {"hub": {"c:1": (253, 317), "c:2": (2500, 2843)}, "seller1": {}})
    assert evidence.fee_rate_updates(before, after) == {"hub": 2526}


def test_no_rate_change_no_allowance_whatever_the_fee_did():
    """A commitment fee that changed at the same rate (outputs or an anchor appearing) is not
    a fee update: the check judges it as before."""
    before = reading({"hub": 1000}, {"hub": {"c:1": (2500, 2843)}})
    after = reading({"hub": 670}, {"hub": {"c:1": (2500, 3173)}})
    assert evidence.fee_rate_updates(before, after) == {}
    assert evidence.fee_rate_updates({"hub": 1000}, after) == {}  # a plain dict of balances: nothing known
