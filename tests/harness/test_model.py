"""The model of the escrow rules and the explorer's shrinking: pure logic, no nodes."""

from __future__ import annotations

from harness.explore.run import reduce
from harness.model import Model, relation

RULES = {"funding_timeout_blocks": 6, "ship_window_blocks": 6, "delivery_window_blocks": 72,
         "dispute_window_blocks": 6, "ruling_window_blocks": 500, "hold_expiry_delta_blocks": 18,
         "guardian_margin_blocks": 24}


def event(name, from_state, to_state, height, actor="worker"):
    return {"event": name, "from_state": from_state, "to_state": to_state, "height": height, "actor": actor}


def test_who_may_do_what_where():
    m = Model(RULES)
    assert m.may("seller", "ship", "FUNDED", False).allowed is True
    assert m.may("buyer", "ship", "FUNDED", False).allowed is False          # role
    assert m.may("seller", "ship", "AWAITING_FUNDS", False).allowed is False  # no shipping before funding
    assert m.may("seller", "confirm", "SHIPPED", False).allowed is False
    assert m.may("buyer", "confirm", "HELD_IN_CUSTODY", False).allowed is True
    assert m.may("arbiter", "rule", "SHIPPED", False).allowed is False        # not disputed: none of its business
    assert m.may("arbiter", "view", "FUNDED", False).allowed is False
    assert m.may("arbiter", "view", "DISPUTED", True).allowed is True
    assert m.may("arbiter", "rule", "DISPUTED", True, {"ruling": "split", "buyer_share_pct": 100}).allowed is False
    assert m.may("buyer", "dispute", "DISPUTED", True).allowed is False        # one dispute per order
    assert m.may("buyer", "dispute", "HELD_IN_CUSTODY", True).allowed is None  # left to the marketplace
    assert m.may("stranger", "view", "RELEASED", False).allowed is False
    assert m.counts() == {"M1 role": 6, "M2 state": 6, "M3 input": 1}


def test_an_answer_against_the_verdict():
    m = Model(RULES)
    forbidden, allowed = m.may("seller", "confirm", "SHIPPED", False), m.may("buyer", "confirm", "SHIPPED", False)
    assert "forbid" in m.judge(forbidden, 200, False)
    assert m.judge(forbidden, 403, False) is None
    assert "allow" in m.judge(allowed, 409, False)
    assert m.judge(allowed, 409, True) is None     # the worker moved the order meanwhile
    assert m.judge(allowed, 429, False) is None    # rate limited: no verdict
    assert m.burst([200, 409, 409]) is None
    assert "2 of 3" in m.burst([200, 200, 409])


def test_the_audit_finds_a_timeout_one_block_early_and_a_stale_deadline():
    m = Model(RULES)
    early = [event("invoice_issued", "CREATED", "AWAITING_FUNDS", 100), event("funded", "AWAITING_FUNDS", "FUNDED", 101),
             event("ship_timeout", "FUNDED", "REFUND_PENDING", 106)]
    assert [f.rule for f in m.audit(1, {}, early)] == ["M5 deadline"]
    on_time = early[:2] + [event("ship_timeout", "FUNDED", "REFUND_PENDING", 107)]
    assert m.audit(1, {}, on_time) == []
    # the stale-deadline race: shipped in the block the ship window closed, then disputed by
    # the shipped state's 72-block delivery timeout in the same block
    stale = early[:2] + [event("ship", "FUNDED", "SHIPPED", 107, "user:2"),
                         event("delivery_timeout", "SHIPPED", "DISPUTED", 107)]
    [finding] = m.audit(1, {}, stale)
    assert finding.rule == "M5 deadline" and "179" in finding.message


def test_the_audit_finds_an_early_guardian_and_a_silent_refund_after_shipment():
    m = Model(RULES)
    order = {"hold": {"htlc_expiry_height": 200}}   # horizon 200 - 18 - 24 = 158
    timeline = [event("funded", "AWAITING_FUNDS", "FUNDED", 101), event("ship", "FUNDED", "SHIPPED", 102, "user:2"),
                event("guardian_custody", "SHIPPED", "HELD_IN_CUSTODY", 120),
                event("guardian_cancel", "HELD_IN_CUSTODY", "REFUND_PENDING", 158)]
    assert sorted(f.rule for f in m.audit(1, order, timeline)) == ["M6 guardian", "M7 outcome"]


def test_relation_to_an_order():
    order = {"buyer_id": 1, "seller_id": 2}
    assert [relation(1, order, []), relation(2, order, []), relation(3, order, ["arbiter"]),
            relation(4, order, ["admin"]), relation(5, order, ["buyer"])] == \
        ["buyer", "seller", "arbiter", "admin", "stranger"]


def test_shrinking_keeps_only_what_the_failure_needs():
    steps = [{"op": "open", "order": "o1"}, {"op": "open", "order": "o2"}, {"op": "mine", "blocks": 1},
             {"op": "act", "order": "o2", "action": "view"}, {"op": "act", "order": "o1", "action": "ship"},
             {"op": "act", "order": "o1", "action": "confirm"}, {"op": "mine", "blocks": 2},
             {"op": "act", "order": "o1", "action": "view"}]
    tried = []

    def still_fails(candidate):  # the failure needs o1 opened, then shipped, then confirmed
        tried.append(len(candidate))
        ops = [(s["op"], s.get("action")) for s in candidate if s.get("order") == "o1"]
        need = [("open", None), ("act", "ship"), ("act", "confirm")]
        it = iter(ops)
        return all(x in it for x in need)

    findings = [{"rule": "M1 role", "order": "o1", "step": 5}]
    assert reduce(steps, findings, still_fails) == [steps[0], steps[4], steps[5]]
    assert tried[0] == 6   # first cut: nothing after the finding's step is tried
