"""The escrow script: a P2WSH 2-of-3 of buyer, seller and arbiter, with a timeout branch.

    wsh(or_d(multi(2,B,S,A),and_v(v:pk(T),older(N))))

Any two of buyer, seller and marketplace arbiter spend at any time. After N blocks since
the funding transaction confirmed, the key T alone spends too. T belongs to the **seller**.

Why the seller. The timeout is the ruling applied when nobody rules, so it must be the
outcome that is right in the case where nobody *can* rule, i.e. the marketplace has gone:

- Before shipment the marketplace refunds unshipped orders itself (buyer + arbiter sign),
  and every dispute is ruled by buyer or seller + arbiter. Both happen well before N: N is
  larger than the ship, delivery and dispute windows together, with the fast-block factor
  of I8. So as long as the marketplace exists, the timeout never decides an order (I7).
- When the marketplace has vanished, a seller who shipped holds the goods' value in the
  escrow, and the buyer has the goods. Favouring the buyer would let any buyer take both
  by waiting N blocks; favouring the seller returns the seller's money, which is what a
  delivered order owes. A buyer whose order never shipped is protected by the refund the
  marketplace makes before N, and otherwise can still agree a refund with the seller
  (buyer + seller is a valid 2-of-3 at any time); funds are never stranded (I16).
- OpenBazaar made the same choice (vendor key after a CSV delay), for the same reason.

T is a second seller key, not S: miniscript rejects a key used twice in one script
("contains duplicate public keys"), so the seller hands over two keys.

N is relative (``older``, BIP68/CSV): it counts from the funding confirmation, so a reorg
that re-mines the funding later moves the deadline later too. N < 65536 blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from regtest_cluster.nodes.bitcoind import BitcoinRpc, RpcError

from .errors import EscrowScriptError
from .keys import ArbiterKey

# Whose key the timeout branch names; see the module docstring for why.
TIMEOUT_FAVOURS = "seller"
MAX_RELATIVE_BLOCKS = 0xFFFF  # BIP68 keeps 16 bits for a block count


@dataclass(frozen=True)
class EscrowScript:
    """One escrow's script, as the marketplace stores it (all public)."""

    descriptor: str        # checksummed, with every key's origin
    address: str           # the P2WSH address the buyer pays
    timeout_blocks: int    # N
    buyer_key: str
    seller_key: str
    arbiter_key: str
    timeout_key: str       # the seller's second key, alone after N blocks

    def role_of(self, pubkey: str) -> str:
        """Who holds a pubkey (hex), for messages about who signed."""
        keys = {"buyer": self.buyer_key, "seller": self.seller_key, "arbiter": self.arbiter_key,
                f"{TIMEOUT_FAVOURS} (timeout key)": self.timeout_key}
        return next((role for role, key in keys.items() if key.endswith("]" + pubkey) or key == pubkey),
                    f"unknown key {pubkey}")

    def signing_descriptor(self, arbiter: ArbiterKey) -> str:
        """The same descriptor with the arbiter's WIF in place of its pubkey: it expands to
        the same script, and gives bitcoind the one private key it needs to sign."""
        if arbiter.public != self.arbiter_key:
            raise EscrowScriptError(f"arbiter key {arbiter.path} is not this escrow's arbiter key")
        body = self.descriptor.split("#", 1)[0]
        return body.replace(arbiter.public, arbiter.private)


def _policy(buyer: str, seller: str, arbiter: str, timeout_key: str, blocks: int) -> str:
    return f"wsh(or_d(multi(2,{buyer},{seller},{arbiter}),and_v(v:pk({timeout_key}),older({blocks}))))"


def build_escrow(rpc: BitcoinRpc, buyer_key: str, seller_key: str, arbiter_key: str,
                 timeout_key: str, timeout_blocks: int) -> EscrowScript:
    """Make an escrow's descriptor and address. Keys are ``[origin]pubkey`` expressions
    (``party_key``, ``ArbiterKey.public``); the key order is fixed: ``multi`` is not sorted,
    so buyer, seller, arbiter is part of the contract. No wallet is touched."""
    if not 1 <= timeout_blocks <= MAX_RELATIVE_BLOCKS:
        raise EscrowScriptError(f"timeout must be 1..{MAX_RELATIVE_BLOCKS} blocks, got {timeout_blocks}")
    keys = {"buyer": buyer_key, "seller": seller_key, "arbiter": arbiter_key, "timeout": timeout_key}
    pubkeys = {role: key.rsplit("]", 1)[-1] for role, key in keys.items()}
    if len(set(pubkeys.values())) != len(pubkeys):
        same = sorted(r for r in pubkeys if list(pubkeys.values()).count(pubkeys[r]) > 1)
        raise EscrowScriptError(f"the {' and '.join(same)} keys are the same key; each must be distinct")
    try:
        descriptor = rpc.getdescriptorinfo(_policy(buyer_key, seller_key, arbiter_key, timeout_key,
                                                   timeout_blocks))["descriptor"]
        (address,) = rpc.deriveaddresses(descriptor)
    except RpcError as exc:
        if exc.code not in (-5, -8):  # invalid key/descriptor or parameter; anything else is not ours
            raise
        raise EscrowScriptError(f"bitcoind rejected the escrow descriptor: {exc.message}") from exc
    return EscrowScript(descriptor=descriptor, address=address, timeout_blocks=timeout_blocks,
                        buyer_key=buyer_key, seller_key=seller_key, arbiter_key=arbiter_key,
                        timeout_key=timeout_key)
