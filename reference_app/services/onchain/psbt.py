"""Just enough BIP174 parsing to check a PSBT before and after signing, without an RPC.

The marketplace checks every PSBT it handles: each input must carry ``witness_utxo``
(segwit signatures commit to the input amount; a signer without it cannot see what it
signs for), and a signer must have added a signature. Both are read here, offline.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

PSBT_MAGIC = b"psbt\xff"
GLOBAL_UNSIGNED_TX = 0x00
IN_WITNESS_UTXO = 0x01
IN_PARTIAL_SIG = 0x02
IN_FINAL_SCRIPTWITNESS = 0x08


class PsbtParseError(ValueError):
    """The text is not a base64 BIP174 PSBT we can read."""


@dataclass(frozen=True)
class PsbtInput:
    has_witness_utxo: bool
    signed_by: frozenset[str]   # pubkeys (hex) with a partial signature
    finalized: bool


@dataclass(frozen=True)
class PsbtSummary:
    version: int
    sequences: tuple[int, ...]
    inputs: tuple[PsbtInput, ...]
    output_sats: tuple[int, ...]

    @property
    def signatures(self) -> int:
        return sum(len(i.signed_by) for i in self.inputs)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise PsbtParseError("PSBT ends early")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def varint(self) -> int:
        first = self.take(1)[0]
        width = {0xFD: 2, 0xFE: 4, 0xFF: 8}.get(first)
        return first if width is None else int.from_bytes(self.take(width), "little")

    def bytes_(self) -> bytes:
        return self.take(self.varint())

    def map(self) -> list[tuple[bytes, bytes]]:
        entries = []
        while (key := self.bytes_()):
            entries.append((key, self.bytes_()))
        return entries


def _unsigned_tx(raw: bytes) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    tx = _Reader(raw)
    version = int.from_bytes(tx.take(4), "little")
    sequences = []
    for _ in range(tx.varint()):
        tx.take(36)   # outpoint
        tx.bytes_()   # scriptSig, empty in an unsigned tx
        sequences.append(int.from_bytes(tx.take(4), "little"))
    amounts = []
    for _ in range(tx.varint()):
        amounts.append(int.from_bytes(tx.take(8), "little"))
        tx.bytes_()   # scriptPubKey
    return version, tuple(sequences), tuple(amounts)


def summarize(psbt: str) -> PsbtSummary:
    try:
        data = base64.b64decode(psbt, validate=True)
    except (binascii.Error, ValueError):
        raise PsbtParseError("PSBT is not valid base64") from None
    if not data.startswith(PSBT_MAGIC):
        raise PsbtParseError("missing the PSBT magic bytes")
    reader = _Reader(data)
    reader.take(len(PSBT_MAGIC))
    tx = next((v for k, v in reader.map() if k[0] == GLOBAL_UNSIGNED_TX), None)
    if tx is None:
        raise PsbtParseError("PSBT has no unsigned transaction")
    version, sequences, amounts = _unsigned_tx(tx)
    inputs = []
    for _ in sequences:
        entries = reader.map()
        inputs.append(PsbtInput(
            has_witness_utxo=any(k[0] == IN_WITNESS_UTXO for k, _ in entries),
            signed_by=frozenset(k[1:].hex() for k, _ in entries if k[0] == IN_PARTIAL_SIG),
            finalized=any(k[0] == IN_FINAL_SCRIPTWITNESS for k, _ in entries),
        ))
    return PsbtSummary(version=version, sequences=sequences, inputs=tuple(inputs), output_sats=amounts)
