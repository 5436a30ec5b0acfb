"""The escrow descriptor and the keys in it, checked against bitcoind."""

from __future__ import annotations

import pytest

from reference_app.services import onchain

pytestmark = pytest.mark.cluster


def test_build_escrow_keys_carry_origin_and_bitcoind_derives_the_arbiter_key(chain):
    escrow, arbiter = chain.escrow(timeout_blocks=144)

    assert escrow.descriptor.startswith("wsh(or_d(multi(2,[") and "older(144)" in escrow.descriptor
    assert escrow.address.startswith("bcrt1q") and len(escrow.address) == 64  # P2WSH
    assert arbiter.public == f"[{chain.keychain.fingerprint}/84h/1h/0h/0/0]{arbiter.pubkey}"
    # bitcoind reads our WIF as the same key, with the same origin.
    public = chain.rpc.getdescriptorinfo(f"pk({arbiter.private})")["descriptor"].split("#")[0]
    assert public == f"pk({arbiter.public})"
    assert onchain.TIMEOUT_FAVOURS == "seller" and escrow.timeout_key != escrow.seller_key


def test_build_escrow_reused_key_or_bad_timeout_rejected(chain):
    buyer, seller = onchain.party_key(chain.buyer), onchain.party_key(chain.seller)
    arbiter = chain.keychain.key(0).public

    with pytest.raises(onchain.EscrowScriptError, match="the seller and timeout keys are the same key"):
        onchain.build_escrow(chain.rpc, buyer, seller, arbiter, seller, 144)
    with pytest.raises(onchain.EscrowScriptError, match="timeout must be 1..65535 blocks, got 70000"):
        onchain.build_escrow(chain.rpc, buyer, seller, arbiter, onchain.party_key(chain.seller), 70_000)
