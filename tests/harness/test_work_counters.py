"""``counts_between``: the work a marketplace did between two readings of its counters."""

from __future__ import annotations

from harness.driver import Marketplace, counts_between


def test_counts_between_takes_readings_apart_key_by_key_nested_too():
    before = {"db_queries": 10, "lnd_calls": 4, "lnd_calls_by_method": {"GetInfo": 3, "AddHoldInvoice": 1}, "note": "x"}
    after = {"db_queries": 25, "lnd_calls": 9, "lnd_calls_by_method": {"GetInfo": 5, "AddHoldInvoice": 2,
                                                                       "SendPaymentV2": 2}, "note": "y"}
    assert counts_between(before, after) == {"db_queries": 15, "lnd_calls": 5,
                                             "lnd_calls_by_method": {"GetInfo": 2, "AddHoldInvoice": 1,
                                                                     "SendPaymentV2": 2}}
    assert counts_between({}, {"db_queries": 3}) == {"db_queries": 3}  # a first reading that had none


def test_a_marketplace_that_keeps_no_counters_reports_none(tmp_path):
    assert Marketplace(None, tmp_path).work_counters() == {}
