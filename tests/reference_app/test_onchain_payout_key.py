"""On-chain key binding accepts only keys whose P2WPKH outputs the party's wallet shows
(BIP84, path 84h/...), and says why it refuses the others (a 44h pkh() key was accepted, and
the release then went to an address the seller's wallet did not show)."""

from __future__ import annotations

import pytest

from reference_app.services.errors import ValidationFailed
from reference_app.services.modes.onchain_multisig_api import check_payout_key

PUB = "02" + "ab" * 32


@pytest.mark.parametrize("origin", ["d34db33f/84h/1h/0h/0/3", "d34db33f/84'/0'/0'/1/9"])
def test_bip84_key_is_accepted(origin):
    check_payout_key(f"[{origin}]{PUB}")


@pytest.mark.parametrize("origin, why", [
    ("d34db33f/44h/1h/0h/0/3", "a legacy pkh() key (BIP44)"),
    ("d34db33f/49h/1h/0h/0/3", "a nested SegWit sh(wpkh()) key (BIP49)"),
    ("d34db33f/86h/1h/0h/0/3", "a taproot tr() key (BIP86)"),
    ("d34db33f/84/1h/0h/0/3", "from path 84/1h/0h/0/3, not BIP84's 84h/..."),
    ("d34db33f/0h/0h/5h", "from path 0h/0h/5h, not BIP84's 84h/..."),
])
def test_other_keys_are_refused_saying_the_wallet_would_not_show_the_payout(origin, why):
    with pytest.raises(ValidationFailed) as err:
        check_payout_key(f"[{origin}]{PUB}")
    assert err.value.extra["field"] == "key"
    assert err.value.message.startswith(f"key is {why}: escrow releases and refunds pay you to wpkh(key)")
    assert "your wallet shows only for keys of its wpkh() descriptor" in err.value.message
