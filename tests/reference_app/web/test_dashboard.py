"""The dashboard end to end in headless Chromium (Debian's chromium package) against the
app on 127.0.0.1 with real cluster data; the screenshot is kept in a run folder."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from regtest_cluster.env import ClusterEnv
from regtest_cluster.rundir import new_run_dir
from harness.actors_custodial import list_custodial
from tests.reference_app.notifications.conftest import DEPOSIT, NOT_INITIATED_LOG, PRICE

pytestmark = [pytest.mark.cluster, NOT_INITIATED_LOG]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: apt-get install chromium")
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-background-networking",
                           "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                           "--window-size=1280,900", *args], capture_output=True, text=True, timeout=120)


def test_dashboard_shows_cluster_orders_and_reports_in_chromium(served_market, tmp_path, monkeypatch):
    market = served_market
    run_dir = new_run_dir(ClusterEnv.from_environ().runs_dir, "dashboard")   # kept: CI uploads runs/
    runs = tmp_path / "runs"
    report_dir = runs / "0001-scenarios" / "reports"
    report_dir.mkdir(parents=True)
    (report_dir / "summary.json").write_text('{"schema": "escrowlab.scenario-run/1", "passed": 1}')
    monkeypatch.setattr(market.ctx, "settings", market.ctx.settings.model_copy(update={"runs_dir": runs}))

    buyer, _account = market.funded_buyer(DEPOSIT)
    seller = market.seller(bind=False)
    order = buyer.buy(list_custodial(seller, "dashboard item", PRICE)["id"])
    assert order["state"] == "FUNDED"

    anonymous = market.http.get("/dashboard")
    assert anonymous.status_code == 401 and "for admins" in anonymous.text
    not_admin = market.http.get("/dashboard", params={"token": buyer.token})
    assert not_admin.status_code == 401

    url = f"{market.url}/dashboard?token={market.admin.token}"
    dom = chromium(tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    for node in market.cluster.nodes:
        assert f'data-node="{node}"' in html, node
    assert f'data-order="{order["id"]}"' in html
    assert "state-funded" in html and ">FUNDED<" in html
    assert 'id="reconciliation">ok<' in html
    assert "0001-scenarios / summary.json" in html

    shot = run_dir / "dashboard.png"
    taken = chromium(tmp_path / "profile-shot", f"--screenshot={shot}", url)
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.stat().st_size > 10_000
    print(f"\ndashboard screenshot: {shot}")
