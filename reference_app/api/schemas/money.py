"""Amounts of money on the wire: whole satoshis, as JSON integers and nothing else.

Lax parsing took ``"5000"`` and ``5000.0`` as 5000: a client that sends a string or a
float has a bug in how it handles money, and should hear so (422) rather than have it
rounded or parsed for it. Every money field of every request body uses ``Sats``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

Sats = Annotated[int, Field(strict=True, description="whole satoshis, a JSON integer (not a string or a float)")]
