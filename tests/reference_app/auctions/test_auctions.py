"""English auctions backed by custodial holds, on the real cluster: outbid holds are
released at once, the anti-sniping rule extends the end, the close opens the winner's
escrow, and that escrow completes; the ledger reconciles with the nodes throughout."""

from __future__ import annotations

import pytest

from regtest_cluster.waiting import wait_for
from tests.reference_app.auctions.conftest import NOT_INITIATED_LOG, bid, bidder, height, open_auction

pytestmark = [pytest.mark.cluster, NOT_INITIATED_LOG]
DEPOSIT = 100_000
FEE_PPM = 10_000


def assert_reconciled(market) -> None:
    report = market.reconcile()
    assert report["ok"], report["mismatches"]


def auction_state(party, auction_id: int) -> dict:
    return party.call("GET", f"/auctions/{auction_id}")


def test_three_bidders_outbid_released_and_winner_escrow_completes(market):
    alice, alice_acc = bidder(market, "buyer1", DEPOSIT)
    bob, bob_acc = bidder(market, "buyer2", DEPOSIT)
    carol, carol_acc = bidder(market, "carol", DEPOSIT)
    seller = market.seller(bind=False)
    auction = open_auction(seller, 20_000, reserve_sats=30_000)
    aid = auction["id"]

    assert bid(alice, aid, 20_000).status_code == 201
    alice_acc.wait_balance(available_sats=DEPOSIT - 20_000, held_sats=20_000)
    assert bid(bob, aid, 25_000).status_code == 201
    alice_acc.wait_balance(available_sats=DEPOSIT, held_sats=0)      # released with the new bid's commit
    bob_acc.wait_balance(available_sats=DEPOSIT - 25_000, held_sats=25_000)
    assert bid(carol, aid, 31_000).status_code == 201
    bob_acc.wait_balance(available_sats=DEPOSIT, held_sats=0)
    assert_reconciled(market)

    # anti-sniping: a bid within extend_blocks of the end moves the end
    end = auction_state(bob, aid)["end_height"]
    market.mine(end - height(market) - 2)
    sniped = bid(bob, aid, 32_000)
    assert sniped.status_code == 201, sniped.text
    assert sniped.json()["end_height"] == height(market) + 3 > end
    carol_acc.wait_balance(available_sats=DEPOSIT, held_sats=0)

    market.mine(sniped.json()["end_height"] - height(market))       # the market loop closes it
    closed = wait_for(lambda: (a := auction_state(bob, aid))["state"] == "CLOSED" and a, timeout=30,
                      what="the market loop to close the auction")
    assert (closed["outcome"], closed["high_bidder_id"], closed["high_bid_sats"]) == ("sold", bob.id, 32_000)
    assert [b["status"] for b in closed["bids"]] == ["OUTBID", "OUTBID", "OUTBID", "WON"]
    again = bob.call("POST", f"/auctions/{aid}/close")                  # idempotent
    assert (again["state"], again["order_id"]) == ("CLOSED", closed["order_id"])

    order = bob.order(closed["order_id"])
    assert (order["state"], order["escrow_mode"], order["price_sats"]) == ("FUNDED", "custodial", 32_000)
    bob_acc.wait_balance(available_sats=DEPOSIT - 32_000, held_sats=32_000)
    for account in (alice_acc, carol_acc):
        account.wait_balance(available_sats=DEPOSIT, held_sats=0)
    assert_reconciled(market)

    seller.ship(order["id"], "fastship", "AU-1001")
    bob.confirm(order["id"])
    bob.wait_state(order["id"], "RELEASED")
    fee = 32_000 * FEE_PPM // 1_000_000
    market.account(seller).wait_balance(available_sats=32_000 - fee, held_sats=0)
    bob_acc.wait_balance(available_sats=DEPOSIT - 32_000, held_sats=0)
    assert_reconciled(market)


def test_bid_below_increment_and_after_close_are_refused_and_change_nothing(market):
    alice, alice_acc = bidder(market, "buyer1", DEPOSIT)
    bob, bob_acc = bidder(market, "buyer2", DEPOSIT)
    seller = market.seller(bind=False)
    aid = open_auction(seller, 20_000, reserve_sats=50_000, duration_blocks=6, extend_blocks=0)["id"]
    assert bid(alice, aid, 21_000).status_code == 201
    before = auction_state(bob, aid)

    low = bid(bob, aid, 21_500)                       # leading 21 000 + increment 1 000
    assert low.status_code == 422
    assert (low.json()["code"], low.json()["field"], low.json()["minimum_sats"]) == ("bid_too_low", "amount_sats",
                                                                                      22_000)
    assert auction_state(bob, aid) == before
    assert (bob_acc.wallet()["available_sats"], bob_acc.wallet()["held_sats"]) == (DEPOSIT, 0)

    own = bid(seller, aid, 30_000)
    assert (own.status_code, own.json()["code"]) == (403, "permission_denied")

    market.mine(6)
    late = bid(bob, aid, 40_000)
    assert late.status_code == 409
    assert late.json()["code"] == "auction_closed"
    assert "no more bids" in late.json()["detail"]
    assert (bob_acc.wallet()["available_sats"], bob_acc.wallet()["held_sats"]) == (DEPOSIT, 0)

    closed = wait_for(lambda: (a := auction_state(bob, aid))["state"] == "CLOSED" and a, timeout=30,
                      what="the market loop to close the auction")
    assert (closed["outcome"], closed["order_id"]) == ("reserve_not_met", None)
    alice_acc.wait_balance(available_sats=DEPOSIT, held_sats=0)        # the unmet reserve releases the hold
    assert bob.call("GET", f"/listings/{closed['listing_id']}")["stock"] == 1
    after = bid(bob, aid, 60_000)
    assert after.json()["code"] == "auction_closed"
    assert auction_state(bob, aid) == closed
    assert_reconciled(market)


def test_bid_retry_with_same_key_holds_once_and_no_bids_closes_cleanly(market):
    alice, alice_acc = bidder(market, "buyer1", DEPOSIT)
    seller = market.seller(bind=False)
    aid = open_auction(seller, 10_000, reserve_sats=0, duration_blocks=4)["id"]
    first, second = bid(alice, aid, 12_000, key="bid-1"), bid(alice, aid, 12_000, key="bid-1")
    assert (first.status_code, second.status_code) == (201, 201)
    assert len(second.json()["bids"]) == 1
    alice_acc.wait_balance(available_sats=DEPOSIT - 12_000, held_sats=12_000)
    reused = bid(alice, aid, 15_000, key="bid-1")
    assert (reused.status_code, reused.json()["code"]) == (409, "conflict")

    empty = open_auction(seller, 10_000, duration_blocks=2, extend_blocks=0)["id"]
    early = seller.attempt("POST", f"/auctions/{empty}/close")
    assert (early.status_code, early.json()["code"]) == (409, "auction_not_ended")
    market.mine(4)
    for auction_id, outcome in ((empty, "no_bids"), (aid, "sold")):
        closed = wait_for(lambda a=auction_id: (x := auction_state(alice, a))["state"] == "CLOSED" and x,
                          timeout=30, what=f"auction {auction_id} to close")
        assert closed["outcome"] == outcome
    alice_acc.wait_balance(available_sats=DEPOSIT - 12_000, held_sats=12_000)  # now the order's escrow
    assert_reconciled(market)


def test_racing_bids_of_the_same_amount_exactly_one_leads(market):
    alice, alice_acc = bidder(market, "buyer1", DEPOSIT)
    bob, bob_acc = bidder(market, "buyer2", DEPOSIT)
    seller = market.seller(bind=False)
    aid = open_auction(seller, 20_000)["id"]
    codes = alice_acc.race([lambda: bid(alice, aid, 25_000), lambda: bid(bob, aid, 25_000)])
    assert sorted(codes)[0] == 201 and sorted(codes)[1] in (409, 422)   # CAS conflict, or too low once serialised
    leader = auction_state(alice, aid)
    assert leader["high_bid_sats"] == 25_000 and len(leader["bids"]) == 1
    winner_acc, loser_acc = (alice_acc, bob_acc) if leader["high_bidder_id"] == alice.id else (bob_acc, alice_acc)
    winner_acc.wait_balance(available_sats=DEPOSIT - 25_000, held_sats=25_000)
    loser_acc.wait_balance(available_sats=DEPOSIT, held_sats=0)
    assert_reconciled(market)
