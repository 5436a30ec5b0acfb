"""Errors of the on-chain escrow. Each names its cause and has a stable code, like the
app's other domain errors, so the API can map them without knowing this package."""

from __future__ import annotations

from ..errors import DomainError


class KeyDerivationError(DomainError):
    """The seed, network or index cannot give a key, or a party's wallet gave an unusable one."""
    code, status = "key_derivation_failed", 422


class EscrowScriptError(DomainError):
    """The escrow's keys or timeout cannot make a valid script (e.g. a key used twice)."""
    code, status = "invalid_escrow_script", 422


class WatchFailed(DomainError):
    """bitcoind refused to import an escrow descriptor into the watch-only wallet."""
    code, status = "watch_failed", 503


class NotFunded(DomainError):
    """A spend was asked for an escrow whose funding does not cover it (or has no UTXO)."""
    code, status = "not_funded", 409


class InvalidSpend(DomainError):
    """The outputs do not add up to the escrow's UTXOs, or the fee payer's output cannot pay."""
    code, status = "invalid_spend", 422


class MissingWitnessUtxo(DomainError):
    """A PSBT input lacks witness_utxo: signers could not check the amount they sign for."""
    code, status = "missing_witness_utxo", 500


class NotASigner(DomainError):
    """The signer holds none of the keys the spend needs; the PSBT came back unchanged."""
    code, status = "not_a_signer", 403


class IncompleteSpend(DomainError):
    """The signatures collected satisfy no branch of the escrow script."""
    code, status = "incomplete_spend", 409


class TimelockNotReached(DomainError):
    """The timeout branch was tried before N blocks passed since funding (non-BIP68-final)."""
    code, status = "timelock_not_reached", 409


class SpendRejected(DomainError):
    """bitcoind refused the finished transaction for a reason other than the timelock."""
    code, status = "spend_rejected", 409
