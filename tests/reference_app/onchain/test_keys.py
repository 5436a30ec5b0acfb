"""Arbiter key derivation and PSBT reading: pure functions, no node needed."""

from __future__ import annotations

import pytest

from reference_app.services import onchain
from reference_app.services.onchain.keys import HARDENED, master_node
from reference_app.services.onchain.psbt import PsbtParseError


def test_derive_bip32_test_vector_1():
    # BIP32 test vector 1, chain m/0H/1/2H/2/1000000000.
    node = master_node(bytes.fromhex("000102030405060708090a0b0c0d0e0f"))
    for index in (0 | HARDENED, 1, 2 | HARDENED, 2, 1_000_000_000):
        node = node.child(index)
    assert node.pubkey.hex() == "022a471424da5e657499d1ff51cb43c47481a03b1e77f951fe64cec9f5a48f7011"
    assert node.secret == 0x471b76e389e528d6de6d816857e012c5455051cad6660850e58372a6c3e6e7c8


def test_derive_arbiter_keys_fresh_per_escrow_with_origin():
    chain = onchain.ArbiterKeychain(bytes.fromhex("000102030405060708090a0b0c0d0e0f"))
    first, second = chain.key(0), chain.key(1)

    assert chain.fingerprint == "3442193e"  # the vector's master fingerprint
    assert first.public.startswith("[3442193e/84h/1h/0h/0/0]") and second.path == "84h/1h/0h/0/1"
    assert first.pubkey != second.pubkey and chain.key(0) == first
    assert first.wif[0] == "c" and first.wif not in repr(first)  # testnet WIF, kept out of logs


def test_derive_bad_seed_or_index_rejected():
    with pytest.raises(onchain.KeyDerivationError, match="a BIP32 seed is 16 to 64 bytes, got 8"):
        onchain.ArbiterKeychain(bytes(8))
    with pytest.raises(onchain.KeyDerivationError, match="unknown network 'mainnet'"):
        onchain.ArbiterKeychain(bytes(32), network="mainnet")
    with pytest.raises(onchain.KeyDerivationError, match=r"escrow index must be in \[0, 2\^31\), got -1"):
        onchain.ArbiterKeychain(bytes(32)).key(-1)


def test_summarize_garbage_rejected():
    with pytest.raises(PsbtParseError, match="missing the PSBT magic bytes"):
        onchain.summarize("aGVsbG8=")
