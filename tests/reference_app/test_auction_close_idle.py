"""The market loop's pass over auctions asks no node anything while no auction is open: it passes
twice a second, and each pass asked bitcoind for the height before it looked for an auction to
close. (Closing auctions on the real cluster: tests/reference_app/auctions.)"""

from __future__ import annotations

import pytest

from reference_app.services import auctions
from reference_app.services.errors import NodeUnavailable
from reference_app.store.models import Listing
from reference_app.store.models_market import Auction

from .test_accounts import register


def test_with_no_auction_open_the_close_pass_needs_no_node(api):
    ctx = api.app.state.ctx
    assert ctx.chain is None and ctx.hub is None  # an app with no node to tell the height
    ctx.modes = {**ctx.modes, auctions.MODE: object()}  # as if the custodial mode ran
    assert auctions.close_due(ctx) == []  # none open: no height asked for
    seller = register(api, "carol@example.com", ["seller"])
    with ctx.db.session() as session:  # one open auction: now the pass needs the height, and says so
        listing = Listing(seller_id=seller["id"], title="a lamp", category="home", price_sats=6_000, stock=1)
        session.add(listing)
        session.flush()
        session.add(Auction(listing_id=listing.id, seller_id=seller["id"], state="OPEN", start_price_sats=1_000,
                            reserve_sats=0, min_increment_sats=100, end_height=500, extend_blocks=2))
    with pytest.raises(NodeUnavailable, match="chain height"):
        auctions.close_due(ctx)
