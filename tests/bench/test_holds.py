"""`bench holds` holds escrows at once, releases them, and has the oracle judge every one."""

from __future__ import annotations

import dataclasses

import pytest

from bench import holds
from regtest_cluster.env import ClusterEnv

pytestmark = pytest.mark.cluster


def test_holds_bench_holds_releases_and_judges_every_escrow(tmp_path):
    env = dataclasses.replace(ClusterEnv.from_environ(), runs_dir=tmp_path)
    result = holds.run(env, n=6, payout_holds=2, latency_batch=2, idle_s=1)
    assert result["held_htlcs_at_hub"] >= 6  # all six held at once (the held payouts settled before)
    assert result["buyer_payments_not_succeeded"] == 0
    assert result["payout_holds"]["held"] == 2 and result["payout_holds"]["release_p50_s_with"] > 0
    assert result["app_while_holding"]["threads"] > 0 and result["app_while_holding"]["rss_mib"] > 0
    assert result["oracle"]["passed"], result["oracle"]["first_violations"]
    assert result["oracle"]["orders_checked"] == 6 + 2 + 2 * 2  # held, payout-held, two latency batches


def test_payouts_held_on_a_node_of_their_own(tmp_path):
    env = dataclasses.replace(ClusterEnv.from_environ(), runs_dir=tmp_path)
    result = holds.run(env, n=2, payout_holds=2, latency_batch=2, idle_s=1, topology="hub-holds",
                       holders=["holder"])
    assert result["payout_holds"]["holder_nodes"] == ["holder"]
    assert result["payout_holds"]["release_p50_s_with"] > 0
    assert result["oracle"]["passed"], result["oracle"]["first_violations"]
    assert result["oracle"]["orders_checked"] == 2 + 2 + 2 * 2
