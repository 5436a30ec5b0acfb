"""The on-chain escrow's schema family: party keys, the escrow as the chain shows it, PSBTs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OnchainKeysIn(In):
    key: str = Field(max_length=200, description="[fingerprint/path]pubkey from your own descriptor wallet")
    timeout_key: str | None = Field(default=None, max_length=200,
                                    description="sellers: a second key, alone able to spend after N blocks")


class OnchainKeysOut(BaseModel):
    key: str
    timeout_key: str | None
    payout_address: str = Field(description="where escrow spends pay you: wpkh(key)")


class UtxoOut(BaseModel):
    txid: str
    vout: int
    amount_sats: int
    confirmations: int


class SpendOutput(BaseModel):
    role: str
    address: str
    amount_sats: int = Field(description="what the output pays (the fee payer's is net of the miner fee)")


class SpendOut(BaseModel):
    kind: str
    signer: str
    awaiting_signature: bool
    txid: str | None
    confirmations: int | None
    height: int | None
    fee_from: str
    fee_sats: int
    inputs: list[str]
    outputs: list[SpendOutput]


class EscrowOut(BaseModel):
    order_id: int
    address: str
    descriptor: str
    amount_sats: int = Field(description="what the buyer pays to the address: the price")
    required_confirmations: int
    timeout_blocks: int
    timeout_height: int | None = Field(description="first block in which the seller's timeout branch can spend")
    funding_status: str
    confirmed_sats: int
    total_sats: int
    confirmations: int
    utxos: list[UtxoOut]
    buyer_key: str
    seller_key: str
    arbiter_key: str
    timeout_key: str
    buyer_address: str
    seller_address: str
    marketplace_address: str
    spend: SpendOut | None


class PsbtOut(BaseModel):
    order_id: int
    kind: str
    signer: str
    psbt: str = Field(description="base64 PSBT with witness_utxo; sign it with walletprocesspsbt")
    fee_from: str
    fee_sats: int
    outputs: list[SpendOutput]


class PsbtIn(In):
    psbt: str = Field(min_length=10, max_length=200_000)


class PsbtAccepted(BaseModel):
    order_id: int
    kind: str
    accepted: bool
