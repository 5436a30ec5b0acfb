"""The interop matrix's pure parts and the payer CLTV rules: no nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from escrow_protocol import formulas
from reference_app.config import Settings
from scenarios import interop
from scenarios.runner import UnknownScenario


def test_topology_for_moves_only_buyers_and_sellers():
    topo = interop.topology_for("ldk", "lnd")
    impls = {n.name: (n.role, n.impl) for n in topo.nodes}
    assert impls == {"hub": ("hub", "lnd"), "buyer1": ("buyer", "ldk"), "buyer2": ("buyer", "ldk"),
                     "seller1": ("seller", "lnd"), "seller2": ("seller", "lnd")}
    assert topo.name == "hub-ldk-lnd" and topo.channels == interop.load("hub").channels


def test_pairs_refuses_an_unknown_implementation():
    assert interop.pairs(["lnd", "ldk"], ["ldk"]) == [("lnd", "ldk"), ("ldk", "ldk")]
    with pytest.raises(UnknownScenario, match="no Lightning implementation 'cln'"):
        interop.pairs(["cln"], ["lnd"])


def test_markdown_numbers_each_failure_and_skip_with_its_words():
    m = interop.Matrix(3, Path("/x"), [("lnd", "lnd"), ("ldk", "ldk")], ["a", "b"])
    m.cells[("lnd", "lnd", "a")] = interop.Cell("passed", 1.0, 73)
    m.cells[("ldk", "ldk", "a")] = interop.Cell("FAILED", 1.0, 73, "I1 order 1: buyer1: the rules give -10 sats")
    m.cells[("lnd", "lnd", "b")] = interop.Cell("skipped", 0.1, None, "needs a buyer node on LDK")
    m.cells[("ldk", "ldk", "b")] = interop.Cell("passed", 1.0, 1054)
    text = interop.markdown(m)
    assert "| a | 73 | passed | FAILED [1] |" in text
    assert "| b | 1054 | skipped [2] | passed |" in text
    assert "1. **a**, LDK → LDK, FAILED: I1 order 1" in text and "2. **b**, LND → LND, skipped: needs" in text
    assert m.summary()["failed"] == 1 and m.summary()["skipped"] == 1


def test_payer_notice_names_who_cannot_pay():
    assert formulas.payer_notice(1008) is None
    notice = formulas.payer_notice(1054)
    assert "1054 blocks" in notice and "LDK (caps a route at 1008 blocks) cannot pay" in notice and "LND (cap 2016) can" in notice
    assert "no wallet at its defaults can" in formulas.payer_notice(2017)
    assert formulas.payers_refusing(1054) == {"ldk": 1008}


def test_max_trade_blocks_is_the_largest_that_fits():
    fit = formulas.max_trade_blocks(1008, 1.7, 24, 18)
    assert formulas.hold_cltv_blocks(fit, 0, 0, 1.7, 24, 18) <= 1008 < formulas.hold_cltv_blocks(fit + 1, 0, 0, 1.7, 24, 18)


def test_settings_refuse_windows_whose_hold_no_payer_can_fund():
    Settings(ship_window_blocks=1000, speedup_factor=1.0)  # 1000+72+24 +24+18 = 1138 blocks: under LND's 2016
    with pytest.raises(ValueError, match=r"hold invoices would ask a CLTV of 1138 blocks .* above payer_cltv_cap "
                                         r"1008.*At most 966 blocks of ship \+ delivery \+ dispute windows fit"):
        Settings(ship_window_blocks=1000, speedup_factor=1.0, payer_cltv_cap=1008)
    with pytest.raises(ValueError, match="above payer_cltv_cap 2016"):
        Settings(ship_window_blocks=432, delivery_window_blocks=1008, dispute_window_blocks=432)
