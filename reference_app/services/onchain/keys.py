"""Escrow keys: the marketplace's arbiter keys from its HD seed, and the parties' keys.

The arbiter key of escrow ``i`` is the BIP32 child ``m/84'/<coin>'/<account>'/0/i`` of the
seed the app keeps encrypted, so every escrow has a fresh key and the seed alone recovers
all of them (I16). Derivation happens here, in Python: bitcoind never sees the seed, only
the one child key it is asked to sign with (``ArbiterKey.private``).

A party (buyer, seller) keeps its keys in its own bitcoind descriptor wallet and hands the
marketplace a key expression *with origin*, ``[fingerprint/path]pubkey``. The origin ends
up as ``bip32_derivs`` in every PSBT, which is how the party's wallet recognises the input
as its own and signs it; a bare pubkey would come back unsigned.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from functools import cached_property

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from regtest_cluster.nodes.bitcoind import BitcoinRpc

from .errors import KeyDerivationError

# Order of the secp256k1 group.
CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
HARDENED = 0x80000000
# WIF version byte and BIP44 coin type: mainnet vs every test network (regtest included).
NETWORKS = {"main": (0x80, 0), "test": (0xEF, 1), "testnet4": (0xEF, 1), "signet": (0xEF, 1),
            "regtest": (0xEF, 1)}
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# What getaddressinfo's "desc" looks like for a descriptor wallet's receive address.
_PARTY_DESC = re.compile(r"wpkh\((\[[0-9a-f]{8}(?:/\d+[h']?)+\](?:02|03)[0-9a-f]{64})\)#[a-z0-9]{8}")


def _pubkey(secret: int) -> bytes:
    point = ec.derive_private_key(secret, ec.SECP256K1()).public_key()
    return point.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)


def _hash160(data: bytes) -> bytes:
    try:
        ripemd = hashlib.new("ripemd160")
    except ValueError:
        raise KeyDerivationError("this Python's OpenSSL lacks RIPEMD-160, needed for BIP32 "
                                 "fingerprints (enable OpenSSL's legacy provider)") from None
    ripemd.update(hashlib.sha256(data).digest())
    return ripemd.digest()


def _base58check(payload: bytes) -> str:
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


@dataclass(frozen=True)
class _Node:
    """A BIP32 extended private key: secret and chain code."""

    secret: int
    chain: bytes

    @cached_property
    def pubkey(self) -> bytes:
        return _pubkey(self.secret)

    def child(self, index: int) -> "_Node":
        if index & HARDENED:
            data = b"\0" + self.secret.to_bytes(32, "big") + index.to_bytes(4, "big")
        else:
            data = self.pubkey + index.to_bytes(4, "big")
        digest = hmac.new(self.chain, data, hashlib.sha512).digest()
        tweak = int.from_bytes(digest[:32], "big")
        secret = (tweak + self.secret) % CURVE_ORDER
        if tweak >= CURVE_ORDER or secret == 0:
            # BIP32: probability below 2^-127; the index is simply unusable.
            raise KeyDerivationError(f"BIP32 child {index} is invalid for this seed; use another index")
        return _Node(secret, digest[32:])


def master_node(seed: bytes) -> _Node:
    if not 16 <= len(seed) <= 64:
        raise KeyDerivationError(f"a BIP32 seed is 16 to 64 bytes, got {len(seed)}")
    digest = hmac.new(b"Bitcoin seed", seed, hashlib.sha512).digest()
    secret = int.from_bytes(digest[:32], "big")
    if not 0 < secret < CURVE_ORDER:
        raise KeyDerivationError("this seed gives an invalid BIP32 master key; generate another")
    return _Node(secret, digest[32:])


@dataclass(frozen=True)
class ArbiterKey:
    """The marketplace's key for one escrow. ``public`` goes into the escrow descriptor;
    ``private`` (a WIF with the same origin) is handed to bitcoind only to sign."""

    index: int
    fingerprint: str   # the seed's master fingerprint, hex
    path: str          # e.g. 84h/1h/0h/0/7
    pubkey: str        # compressed, hex
    wif: str = field(repr=False)

    @property
    def origin(self) -> str:
        return f"[{self.fingerprint}/{self.path}]"

    @property
    def public(self) -> str:
        return self.origin + self.pubkey

    @property
    def private(self) -> str:
        return self.origin + self.wif


class ArbiterKeychain:
    """Derives per-escrow arbiter keys ``m/84'/coin'/account'/0/index`` from the app's seed."""

    def __init__(self, seed: bytes, network: str = "regtest", account: int = 0) -> None:
        if network not in NETWORKS:
            raise KeyDerivationError(f"unknown network {network!r}; expected one of {', '.join(NETWORKS)}")
        self._wif_version, coin = NETWORKS[network]
        master = master_node(seed)
        self.fingerprint = _hash160(master.pubkey)[:4].hex()
        self._prefix = f"84h/{coin}h/{account}h/0"
        # The hardened steps are done once; each escrow then costs one derivation.
        self._external = master.child(84 | HARDENED).child(coin | HARDENED).child(account | HARDENED).child(0)

    def key(self, index: int) -> ArbiterKey:
        if not 0 <= index < HARDENED:
            raise KeyDerivationError(f"escrow index must be in [0, 2^31), got {index}")
        node = self._external.child(index)
        wif = _base58check(bytes([self._wif_version]) + node.secret.to_bytes(32, "big") + b"\x01")
        return ArbiterKey(index=index, fingerprint=self.fingerprint, path=f"{self._prefix}/{index}",
                          pubkey=node.pubkey.hex(), wif=wif)


def party_key(wallet: BitcoinRpc) -> str:
    """A fresh key of the party owning ``wallet``, as ``[fingerprint/path]pubkey``.

    Used by actors and tests to hand their key to the marketplace. The favoured party of
    the timeout branch calls it twice: miniscript forbids a key appearing twice in a script.
    """
    address = wallet.getnewaddress()
    desc = wallet.getaddressinfo(address)["desc"]
    match = _PARTY_DESC.fullmatch(desc)
    if not match:
        raise KeyDerivationError(f"wallet {wallet.wallet!r} gave {desc!r} for {address}; expected "
                                 "wpkh([origin]pubkey), i.e. a descriptor wallet's bech32 address")
    return match.group(1)
