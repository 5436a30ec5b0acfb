"""Funding of the escrow address as the chain shows it: every case, and the spends they lead to."""

from __future__ import annotations

import pytest

from reference_app.services import onchain
from reference_app.services.onchain import FundingStatus, WalletSigner

from .conftest import K

pytestmark = pytest.mark.cluster
PRICE, COMMISSION = 100_000, 1_000


def test_funding_classifies_every_case(chain):
    payments = {"none": (), "exact": (PRICE,), "overpaid": (PRICE + 5_000,),
                "underpaid": (PRICE - 5_000,), "double": (PRICE, PRICE)}
    escrows = {case: chain.escrow()[0] for case in payments}
    for case, amounts in payments.items():
        chain.pay(escrows[case], *amounts)
    expected = [(escrows[case], PRICE) for case in payments]

    seen = onchain.fundings(chain.watch, expected, K)
    assert {c: seen[e.address].status for c, e in escrows.items()} == {
        "none": "none", "exact": "pending", "overpaid": "pending", "underpaid": "pending", "double": "pending"}
    chain.mine()
    seen = onchain.fundings(chain.watch, expected, K, previous=seen)

    assert {c: (seen[e.address].status, seen[e.address].funded, seen[e.address].excess_sats)
            for c, e in escrows.items()} == {
        "none": (FundingStatus.NONE, False, 0), "exact": (FundingStatus.EXACT, True, 0),
        "overpaid": (FundingStatus.OVERPAID, True, 5_000), "underpaid": (FundingStatus.UNDERPAID, False, 0),
        "double": (FundingStatus.DOUBLE, True, PRICE)}
    assert [u.confirmations for u in seen[escrows["double"].address].utxos] == [1, 1]


def test_release_overpaid_returns_excess_to_buyer(chain):
    escrow, arbiter = chain.escrow()
    chain.pay(escrow, PRICE + 5_000)
    chain.mine()
    funding = chain.funding(escrow, PRICE)
    assert funding.status == FundingStatus.OVERPAID
    terms = chain.terms(PRICE, COMMISSION)

    done = onchain.release(chain.rpc, chain.watch, escrow, funding, terms,
                           [chain.arbiter(arbiter), WalletSigner(chain.seller)])
    chain.assert_witness_utxo(done.spend.psbt)
    chain.mine()

    assert chain.paid_to(done.txid) == {terms.seller_address: PRICE - COMMISSION - done.spend.fee_sats,
                                        terms.marketplace_address: COMMISSION,
                                        terms.buyer_address: 5_000}


def test_refund_underpaid_returns_what_arrived(chain):
    escrow, arbiter = chain.escrow()
    chain.pay(escrow, PRICE - 5_000)
    chain.mine()
    funding = chain.funding(escrow, PRICE)
    assert (funding.status, funding.funded) == (FundingStatus.UNDERPAID, False)
    terms = chain.terms(PRICE, COMMISSION)
    with pytest.raises(onchain.NotFunded, match="cannot release: 95000 sats confirmed of the 100000 owed"):
        onchain.release(chain.rpc, chain.watch, escrow, funding, terms,
                        [chain.arbiter(arbiter), WalletSigner(chain.seller)])

    done = onchain.refund(chain.rpc, chain.watch, escrow, funding, terms,
                          [chain.arbiter(arbiter), WalletSigner(chain.buyer)])
    chain.assert_witness_utxo(done.spend.psbt)
    chain.mine()

    assert chain.paid_to(done.txid) == {terms.buyer_address: PRICE - 5_000 - done.spend.fee_sats}


def test_release_paid_twice_spends_both_and_returns_excess(chain):
    escrow, arbiter = chain.escrow()
    chain.pay(escrow, PRICE, 30_000)
    chain.mine()
    funding = chain.funding(escrow, PRICE)
    assert (funding.status, funding.funded, len(funding.utxos)) == (FundingStatus.DOUBLE, True, 2)
    terms = chain.terms(PRICE, COMMISSION)

    done = onchain.release(chain.rpc, chain.watch, escrow, funding, terms,
                           [chain.arbiter(arbiter), WalletSigner(chain.seller)])
    chain.assert_witness_utxo(done.spend.psbt)
    chain.mine()

    spent = {(i["txid"], i["vout"]) for i in chain.rpc.getrawtransaction(done.txid, True)["vin"]}
    assert spent == {(u.txid, u.vout) for u in funding.utxos}
    assert chain.paid_to(done.txid) == {terms.seller_address: PRICE - COMMISSION - done.spend.fee_sats,
                                        terms.marketplace_address: COMMISSION,
                                        terms.buyer_address: 30_000}
    assert chain.funding(escrow, PRICE, previous=funding).status == FundingStatus.SPENT


def test_funding_reorg_of_funding_block_is_reorged(chain):
    escrow, _ = chain.escrow()
    (txid,) = chain.pay(escrow, PRICE)
    (block,) = chain.mine()
    confirmed = chain.funding(escrow, PRICE)
    assert (confirmed.status, confirmed.funded) == (FundingStatus.EXACT, True)

    chain.rpc.invalidateblock(block)
    reorged = chain.funding(escrow, PRICE, previous=confirmed)
    assert (reorged.status, reorged.funded) == (FundingStatus.REORGED, False)
    assert reorged.lost == (f"{txid}:{confirmed.utxos[0].vout}",)
    # The funding went back to the mempool: once reorged, it is merely pending again.
    assert chain.funding(escrow, PRICE, previous=reorged).status == FundingStatus.PENDING

    chain.rpc.reconsiderblock(block)
    assert chain.funding(escrow, PRICE, previous=reorged).status == FundingStatus.EXACT
