"""The network drawing's geometry (pure): the hub in the middle, each channel line split
where its liquidity splits, peers outside the cluster drawn too."""

from __future__ import annotations

from reference_app.web.data import graph


def node(name: str, role: str) -> dict:
    return {"name": name, "role": role, "running": True}


def channel(owner: str, peer: str, local: int, remote: int, known: bool = True) -> dict:
    return {"chan_id": f"{owner}-{peer}", "owner": owner, "peer": peer, "peer_known": known,
            "local_pct": round(100 * local / (local + remote), 1), "htlcs": 0, "active": True}


def test_graph_puts_the_hub_in_the_middle_and_splits_lines_at_the_local_share():
    known = [node("hub", "hub"), node("buyer1", "buyer"), node("seller1", "seller")]
    g = graph(known, [channel("hub", "buyer1", 2_000_000, 8_000_000), channel("hub", "seller1", 10_000_000, 0)],
              size=400)
    at = {n["name"]: (n["x"], n["y"]) for n in g["nodes"]}
    assert at["hub"] == (200, 200)
    buyer = g["lines"][0]
    assert (buyer["x1"], buyer["y1"]) == at["hub"] and (buyer["x2"], buyer["y2"]) == at["buyer1"]
    assert abs(buyer["xm"] - (200 + 0.2 * (at["buyer1"][0] - 200))) < 0.2
    assert abs(buyer["ym"] - (200 + 0.2 * (at["buyer1"][1] - 200))) < 0.2
    seller = g["lines"][1]
    assert (seller["xm"], seller["ym"]) == at["seller1"]          # all local: the blue part is the whole line


def test_graph_draws_peers_outside_the_cluster_on_the_ring():
    g = graph([node("hub", "hub")], [channel("hub", "02abcdef0123…", 1, 1, known=False)], size=400)
    roles = {n["name"]: n["role"] for n in g["nodes"]}
    assert roles == {"hub": "hub", "02abcdef0123…": "peer"}
    assert len(g["lines"]) == 1
