"""On-chain 2-of-3 multisig escrow (P2WSH, with the seller's timeout branch).

- ``keys``: per-escrow arbiter keys from the app's BIP32 seed; ``party_key`` for actors.
- ``script``: the descriptor and address (and why the timeout favours the seller).
- ``watch``: the watch-only wallet, and funding observed and classified.
- ``spend``: PSBT creation, signing by wallet or by arbiter key, finalize, broadcast.
- ``flows``: release, refund, ruling, timeout spend, CPFP fee bump.

Plain dataclasses in and out; persistence is the caller's.
"""

from .errors import (EscrowScriptError, IncompleteSpend, InvalidSpend, KeyDerivationError,
                     MissingWitnessUtxo, NotASigner, NotFunded, SpendRejected, TimelockNotReached,
                     WatchFailed)
from .flows import (DEFAULT_FEE_RATE_SAT_VB, Settlement, Terms, bump_fee, refund, release, ruling,
                    settle, timeout_spend)
from .keys import ArbiterKey, ArbiterKeychain, party_key
from .psbt import PsbtSummary, summarize
from .script import TIMEOUT_FAVOURS, EscrowScript, build_escrow
from .spend import (DUST_SATS, ArbiterSigner, Output, Signer, Spend, WalletSigner, broadcast,
                    create_spend, finalize)
from .watch import WATCH_WALLET, Funding, FundingStatus, Utxo, funding, fundings, open_watch_wallet, watch

__all__ = [
    "ArbiterKey", "ArbiterKeychain", "ArbiterSigner", "DEFAULT_FEE_RATE_SAT_VB", "DUST_SATS",
    "EscrowScript", "EscrowScriptError", "Funding", "FundingStatus", "IncompleteSpend", "InvalidSpend",
    "KeyDerivationError", "MissingWitnessUtxo", "NotASigner", "NotFunded", "Output", "PsbtSummary",
    "Settlement", "Signer", "Spend", "SpendRejected", "TIMEOUT_FAVOURS", "Terms", "TimelockNotReached",
    "Utxo", "WATCH_WALLET", "WalletSigner", "WatchFailed", "broadcast", "build_escrow", "bump_fee",
    "create_spend", "finalize", "funding", "fundings", "open_watch_wallet", "party_key", "refund",
    "release", "ruling", "settle", "summarize", "timeout_spend", "watch",
]
