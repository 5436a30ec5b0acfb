"""`escrowlab scenario interop`: ln_hold stories with buyers and sellers on LDK, on real nodes.

Skipped when ldkd is not built (`escrowlab nodes install --ldk`), unless ESCROWLAB_REQUIRE_LDK=1,
where a missing ldkd fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from regtest_cluster.env import ClusterEnv
from regtest_cluster.provision import ldk as ldk_provision

pytestmark = pytest.mark.cluster


@pytest.fixture
def ldkd_built() -> None:
    if ldk_provision.find(ClusterEnv.from_environ().cache_dir) is None:
        reason = f"ldkd (the LDK node) is not built: {ldk_provision.INSTALL_HINT}"
        if os.environ.get("ESCROWLAB_REQUIRE_LDK") == "1":
            pytest.fail(f"ESCROWLAB_REQUIRE_LDK=1 but {reason}", pytrace=False)
        pytest.skip(reason)


def interop(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "escrowlab", "scenario", "interop", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_ldk_buyers_and_sellers_run_escrow_and_the_cap_is_told_and_refused(ldkd_built):
    """LDK buyers pay the hub's holds and LDK sellers hand in payout invoices; a hold above LDK's
    1008-block route cap is announced to the buyer before funding and refused by the LDK wallet.
    The two pairs (LDK buyers with LND sellers, then with LDK sellers) run at once (--jobs 2)."""
    proc = interop("release_after_delivery", "ldk_payer_over_cltv_cap", "--payers", "ldk", "--payees", "lnd,ldk",
                   "--jobs", "2", "--seed", "11", "--json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the second pair started before the first one's first story had finished
    assert proc.stderr.index("pair 2/2: buyers on LDK, sellers on LDK") < proc.stderr.index("ldk->lnd passed"), \
        proc.stderr[-3000:]
    matrix = json.loads(proc.stdout)
    assert [(p["payer"], p["payee"]) for p in matrix["pairs"]] == [("ldk", "lnd"), ("ldk", "ldk")], matrix["pairs"]
    assert {(c["payer"], c["payee"], c["scenario"], c["verdict"]) for c in matrix["cells"]} == {
        (payer, payee, name, "passed") for payer, payee in (("ldk", "lnd"), ("ldk", "ldk"))
        for name in ("release_after_delivery", "ldk_payer_over_cltv_cap")}
    cells = {c["scenario"]: c for c in matrix["cells"] if c["payee"] == "ldk"}
    assert cells["ldk_payer_over_cltv_cap"]["hold_cltv"] > matrix["payer_cltv_caps"]["ldk"]
    assert cells["release_after_delivery"]["hold_cltv"] <= matrix["payer_cltv_caps"]["ldk"]
    report = Path(matrix["run_dir"]) / "reports" / "interop.md"
    assert "| ldk_payer_over_cltv_cap | 1054 | passed | passed |" in report.read_text()
    # what each story did, in the pair's own scenario report: the refusal in LDK's words
    for pair in ("ldk-lnd", "ldk-ldk"):
        steps = json.loads((Path(matrix["run_dir"]) / pair / "reports" / "scenarios.json").read_text())
        story = next(r for r in steps["results"] if r["name"] == "ldk_payer_over_cltv_cap")
        told = " ".join(s["message"] if isinstance(s, dict) else str(s) for s in story["steps"])
        assert "cannot pay it" in told and "FAILED" in told, (pair, told)


def test_interop_unknown_implementation_is_one_clear_error():
    proc = interop("release_after_delivery", "--payers", "cln", timeout=60)
    assert proc.returncode == 2 and "no Lightning implementation 'cln'" in proc.stderr, proc.stderr


def test_oracle_judges_ldk_nodes_truth_a_double_payout_to_an_ldk_seller_is_caught(ldkd_built):
    """The planted double payout on LDK buyers and sellers: the LDK seller's own channel balance
    shows the second payment (I1) and the hub's payments an unplanned one (I3)."""
    proc = interop("buyer_confirms_early", "--payers", "ldk", "--payees", "ldk", "--planted-bug", "double_payout",
                   "--seed", "3", "--json")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    cell = json.loads(proc.stdout)["cells"][0]
    assert cell["verdict"] == "FAILED" and "I3" in cell["error"], cell
    assert "seller2: the rules give" in cell["error"], cell
