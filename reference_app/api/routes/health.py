from fastapi import APIRouter, Depends

from ...context import AppContext
from ..deps import get_ctx

router = APIRouter(tags=["health"])


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
    return {"status": "ok", "node": node}
