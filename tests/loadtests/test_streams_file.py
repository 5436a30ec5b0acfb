"""What a load run's traders' notification streams sent (``streams.jsonl``, written by the Locust
users as they stop) read back for the oracle: pure logic, no nodes, no Locust."""

from __future__ import annotations

import json
from types import SimpleNamespace

from harness.evidence import Evidence, OrderEvidence
from harness.oracle.base import Context
from harness.oracle.ln_hold import i18_both_told
from loadtests.oracle_check import streams


def test_each_traders_stream_is_judged_up_to_what_its_inbox_showed_as_it_closed(tmp_path):
    path = tmp_path / "streams.jsonl"
    lines = [{"email": "buyer@load.example", "after": 0, "upto": 5,
              "delivered": [[3, "order.funded", 7]]},                      # skipped 5, which it owed
             {"email": "seller@load.example", "after": 0, "upto": 4,
              "delivered": [[4, "order.funded", 7]]},                      # owed nothing after 4
             {"email": "gone@load.example", "after": 0, "upto": None, "delivered": []},  # inbox unread
             {"email": "stranger@load.example", "after": 0, "upto": 9, "delivered": []}]  # not a trader
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    traders = [SimpleNamespace(email=f"{who}@load.example", id=uid) for who, uid in
               (("buyer", 1), ("seller", 2), ("gone", 3))]

    judged = streams(path, traders)

    assert set(judged) == {1, 2}
    assert (judged[1].after, judged[1].upto, judged[1].delivered) == (0, 5, {3: ("order.funded", 7)})
    ev = Evidence(notifications={1: [{"id": 3, "kind": "order.funded", "order_id": 7},
                                     {"id": 5, "kind": "order.shipped", "order_id": 7},
                                     {"id": 8, "kind": "order.released", "order_id": 7}],
                                 2: [{"id": 4, "kind": "order.funded", "order_id": 7},
                                     {"id": 6, "kind": "order.shipped", "order_id": 7}]})
    ev.orders[7] = OrderEvidence(order={"buyer_id": 1, "seller_id": 2}, invoice=None, payment_request=None,
                                 buyer_payment=None, hub_payments=[], payout_invoices={}, events=[])
    ev.streamed.update(judged)
    assert [v.message for v in i18_both_told(ev, Context(settings={}, user_nodes={}))] == [
        "the buyer's notification stream never sent notification 5 (order.shipped), which their inbox has, "
        "in the seconds the harness waited for it after reading the inbox"]


def test_a_run_without_a_streams_file_judges_no_stream(tmp_path):
    assert streams(tmp_path / "streams.jsonl", []) == {}
