from fastapi import APIRouter, Depends

from ...context import AppContext
from ..routing import Route
from ..deps import get_ctx

router = APIRouter(route_class=Route, tags=["health"])


@router.get("/health")
def health(ctx: AppContext = Depends(get_ctx)) -> dict:
    """Liveness, plus whether the hub node answers (without failing when it does not)."""
    node = {"configured": ctx.hub is not None}
    if ctx.hub is not None:
        try:
            info = ctx.hub.getinfo()
            node.update(reachable=True, block_height=int(info["block_height"]), pubkey=info["identity_pubkey"])
        except Exception as exc:  # health reports, it does not fail
            node.update(reachable=False, error=str(exc))
        # whether the hub's block stream keeps this process's height current; false while the
        # height is asked instead (no stream yet, a hub restarting, an lnd without chainrpc, or a
        # process whose worker runs elsewhere: `escrowlab app worker` follows the blocks there)
        node["height_pushed"] = ctx.tip_pushed
    # Work done since start by the process that answers, for benchmarks (queries and node calls
    # per escrow; with several app processes, the wakes it sent to the owners of other orders
    # and the rings to the others' notification streams, and those it could not deliver); never reset.
    counters = {"db_queries": ctx.db.queries, "lnd_calls": ctx.hub.calls if ctx.hub is not None else 0,
                "lnd_calls_by_method": getattr(ctx.hub, "calls_by_method", {}),
                "wakes_sent": ctx.shares.sent, "wakes_dropped": ctx.shares.dropped,
                "rings_sent": ctx.shares.rings_sent, "rings_dropped": ctx.shares.rings_dropped}
    process = {"index": ctx.shares.index, "of": ctx.shares.count}
    return {"status": "ok", "instance": ctx.settings.instance, "node": node, "process": process,
            "counters": counters}


# The rule settings a harness needs to judge this marketplace (the escrow protocol's names).
RULES = ("fee_ppm", "payout_fee_limit_sats", "funding_timeout_s", "funding_timeout_blocks", "ship_window_s",
         "ship_window_blocks", "delivery_window_s", "delivery_window_blocks", "dispute_window_s",
         "dispute_window_blocks", "ruling_window_s", "ruling_window_blocks", "speedup_factor",
         "guardian_margin_blocks", "hold_expiry_delta_blocks", "onchain_confirmations", "onchain_timeout_blocks",
         "onchain_fee_rate_sat_vb", "custodial_confirmations", "custodial_fee_reserve_ppm", "payout_min_expiry_s",
         "payout_max_final_cltv")


@router.get("/rules")
def rules(ctx: AppContext = Depends(get_ctx)) -> dict:
    """The escrow rules this marketplace runs with: fee, windows, margins, and the modes it serves."""
    return {"modes": sorted(ctx.modes), **{name: getattr(ctx.settings, name) for name in RULES}}
