"""Release, refund, ruling, timeout and fee bump of the 2-of-3 escrow, on a real bitcoind."""

from __future__ import annotations

import pytest

from reference_app.services import onchain
from reference_app.services.onchain import FundingStatus, WalletSigner

from .conftest import TIMEOUT_BLOCKS

pytestmark = pytest.mark.cluster
PRICE, COMMISSION = 100_000, 1_000


def test_release_exact_pays_seller_price_minus_commission_and_fee(chain):
    escrow, arbiter = chain.escrow()
    chain.pay(escrow, PRICE)
    chain.mine()
    funding = chain.funding(escrow, PRICE)
    assert (funding.status, funding.funded, funding.excess_sats) == (FundingStatus.EXACT, True, 0)
    terms = chain.terms(PRICE, COMMISSION)

    done = onchain.release(chain.rpc, chain.watch, escrow, funding, terms,
                           [chain.arbiter(arbiter), WalletSigner(chain.seller)])
    chain.assert_witness_utxo(done.spend.psbt)
    in_mempool = chain.funding(escrow, PRICE, previous=funding)
    assert in_mempool.status == FundingStatus.SPENT
    chain.mine()

    assert chain.confirmations(done.txid) == 1
    fee = done.spend.fee_sats
    assert 0 < fee < 1_000
    assert chain.paid_to(done.txid) == {terms.seller_address: PRICE - COMMISSION - fee,
                                        terms.marketplace_address: COMMISSION}
    assert chain.funding(escrow, PRICE, previous=in_mempool).status == FundingStatus.SPENT


def test_release_buyer_and_seller_without_marketplace(chain):
    escrow, _ = chain.escrow()
    chain.pay(escrow, PRICE)
    chain.mine()
    funding = chain.funding(escrow, PRICE)
    terms = chain.terms(PRICE, COMMISSION)

    done = onchain.release(chain.rpc, chain.watch, escrow, funding, terms,
                           [WalletSigner(chain.buyer), WalletSigner(chain.seller)])

    assert chain.paid_to(done.txid)[terms.seller_address] == PRICE - COMMISSION - done.spend.fee_sats


def test_refund_arbiter_and_buyer_returns_all_minus_fee(chain):
    escrow, arbiter = chain.escrow()
    chain.pay(escrow, PRICE)
    chain.mine()
    funding = chain.funding(escrow, PRICE)
    terms = chain.terms(PRICE, COMMISSION)

    done = onchain.refund(chain.rpc, chain.watch, escrow, funding, terms,
                          [chain.arbiter(arbiter), WalletSigner(chain.buyer)])
    chain.assert_witness_utxo(done.spend.psbt)
    chain.mine()

    assert chain.confirmations(done.txid) == 1
    assert chain.paid_to(done.txid) == {terms.buyer_address: PRICE - done.spend.fee_sats}


def test_ruling_split_pays_both(chain):
    escrow, arbiter = chain.escrow()
    chain.pay(escrow, PRICE)
    chain.mine()
    funding = chain.funding(escrow, PRICE)
    terms = chain.terms(PRICE, COMMISSION)

    # 70 % to the seller: the seller wins the larger share, so signs and pays the fee.
    done = onchain.ruling(chain.rpc, chain.watch, escrow, funding, terms, 70_000,
                          [chain.arbiter(arbiter), WalletSigner(chain.seller)])
    chain.assert_witness_utxo(done.spend.psbt)
    chain.mine()

    assert chain.confirmations(done.txid) == 1
    assert chain.paid_to(done.txid) == {terms.seller_address: 70_000 - 700 - done.spend.fee_sats,
                                        terms.marketplace_address: 700,
                                        terms.buyer_address: 30_000}


def test_release_one_party_or_a_wrong_key_is_refused(chain):
    escrow, arbiter = chain.escrow()
    _, other_escrows_key = chain.escrow()
    chain.pay(escrow, PRICE)
    chain.mine()
    funding = chain.funding(escrow, PRICE)
    terms = chain.terms(PRICE, COMMISSION)

    def release(*signers):
        return onchain.release(chain.rpc, chain.watch, escrow, funding, terms, list(signers))

    # The seller's wallet signs with both its keys; the timeout one is no use before N blocks.
    for alone, signed in [(WalletSigner(chain.seller), r"seller, seller \(timeout key\)"),
                          (WalletSigner(chain.buyer), "buyer"), (chain.arbiter(arbiter), "arbiter")]:
        with pytest.raises(onchain.IncompleteSpend, match=f"signatures of {signed} satisfy no branch"):
            release(alone)
    with pytest.raises(onchain.NotASigner, match="wallet 'escrow-watch' holds none of this escrow's keys"):
        release(chain.arbiter(arbiter), WalletSigner(chain.watch))
    with pytest.raises(onchain.EscrowScriptError, match="84h/1h/0h/0/1 is not this escrow's arbiter key"):
        release(chain.arbiter(other_escrows_key), WalletSigner(chain.seller))
    assert chain.funding(escrow, PRICE, previous=funding).status == FundingStatus.EXACT  # nothing moved


def test_timeout_spend_early_rejected_then_seller_alone_after_n_blocks(chain):
    escrow, _ = chain.escrow(timeout_blocks=TIMEOUT_BLOCKS)
    chain.pay(escrow, PRICE)
    chain.mine()
    to = chain.seller.getnewaddress()

    # BIP68: the spend may enter block conf_height + N, i.e. once the funding has N confirmations.
    for _ in range(TIMEOUT_BLOCKS - 1):
        with pytest.raises(onchain.TimelockNotReached, match="non-BIP68-final"):
            onchain.timeout_spend(chain.rpc, chain.watch, escrow, chain.funding(escrow, PRICE), chain.seller, to)
        chain.mine()
    funding = chain.funding(escrow, PRICE)
    assert funding.utxos[0].confirmations == TIMEOUT_BLOCKS

    done = onchain.timeout_spend(chain.rpc, chain.watch, escrow, funding, chain.seller, to)
    chain.assert_witness_utxo(done.spend.psbt)
    assert set(onchain.summarize(done.spend.psbt).sequences) == {TIMEOUT_BLOCKS}
    chain.mine()

    assert chain.confirmations(done.txid) == 1
    assert chain.paid_to(done.txid) == {to: PRICE - done.spend.fee_sats}


def test_bump_fee_cpfp_confirms_stuck_release(chain):
    escrow, arbiter = chain.escrow()
    chain.pay(escrow, PRICE)
    chain.mine()
    funding = chain.funding(escrow, PRICE)
    done = onchain.release(chain.rpc, chain.watch, escrow, funding, chain.terms(PRICE, COMMISSION),
                           [chain.arbiter(arbiter), WalletSigner(chain.seller)], fee_rate_sat_vb=1)
    # Stuck: the miner values the release at zero fee, below the block's minimum fee rate.
    chain.rpc.prioritisetransaction(done.txid, -done.spend.fee_sats)
    chain.mine()
    assert chain.confirmations(done.txid) == 0

    child = onchain.bump_fee(chain.seller, done, "seller", fee_rate_sat_vb=10)
    package = chain.rpc.getmempoolentry(child)
    assert package["ancestorcount"] == 2
    chain.mine()

    assert chain.confirmations(done.txid) == 1 and chain.confirmations(child) == 1
