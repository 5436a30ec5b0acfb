"""Live mode on the real hub cluster: the model's agents drive the app; the oracle judges."""

from __future__ import annotations

import dataclasses

import pytest

from simulator import config, live

from .conftest import ROOT

pytestmark = pytest.mark.cluster

# Refunds cancel held payments back and the worker settles into custody: the nodes log it.
EXPECTED_NODE_ERRORS = r"\[ERR\] (CRTR|HSWC|PEER|SRVR|CMGR|NTFN|DISC|RPCS|INVC|CNCT|LNWL|HLCK|CHFT|FNDG):"


@pytest.mark.allow_log(EXPECTED_NODE_ERRORS)
def test_run_on_holds_every_invariant_for_its_orders(cluster, tmp_path):
    cfg = config.load(ROOT / "simulator" / "configs" / "live-hub.yaml")
    cfg = dataclasses.replace(cfg, live=dataclasses.replace(cfg.live, max_wall_s=300))
    doc = live.run_on(cluster, cfg, tmp_path, orders=8)
    lv = doc["live"]
    assert lv["error"] is None, lv["story"]
    assert lv["violations"] == [], lv["violations"]
    assert len(lv["invariants_checked"]) >= 16
    assert lv["measured"]["orders"] == 8
    assert lv["measured"]["not_final"] == 0
    assert set(lv["model"]) == set(lv["measured"])
