"""Encryption at rest (preimages, addresses, TOTP seeds, payout credentials).

MultiFernet: the first key encrypts, every key decrypts, so keys rotate by
putting a new key first and re-encrypting with ``rotate``.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class Box:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is needed")
        self._f = MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])

    def seal(self, data: bytes) -> bytes:
        return self._f.encrypt(data)

    def open(self, token: bytes) -> bytes:
        try:
            return self._f.decrypt(token)
        except InvalidToken:
            raise ValueError("cannot decrypt: no configured key matches") from None

    def rotate(self, token: bytes) -> bytes:
        return self._f.rotate(token)
