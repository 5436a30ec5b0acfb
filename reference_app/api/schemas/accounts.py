"""Request and response bodies for accounts: auth, profile, payout node, notifications, admin.

Inputs forbid unknown fields, so a typo (or an attempt to set ``roles`` on
``PATCH /me``) gets a 422 naming the field instead of being ignored. Outputs
are built field by field and never carry hashes, seeds or sealed blobs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from ...services.accounts import TokenPair
from ...store.models import Notification, User

Role = Literal["buyer", "seller", "courier", "arbiter", "admin"]
CODE_PATTERN = r"^\d{6}$"


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- auth --------------------------------------------------------------------------------

class RegisterIn(In):
    email: EmailStr
    password: str = Field(description="at least 10 characters")
    display_name: str
    roles: list[Role] = Field(default=["buyer"], description="any of buyer, seller, courier")


class LoginIn(In):
    email: EmailStr
    password: str = Field(max_length=1024)
    totp_code: str | None = Field(default=None, pattern=CODE_PATTERN)


class RefreshIn(In):
    refresh_token: str


class TokensOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the access token expires")

    @classmethod
    def of(cls, pair: TokenPair, expires_in: int) -> "TokensOut":
        return cls(access_token=pair.access, refresh_token=pair.refresh, expires_in=expires_in)


class TotpEnrolOut(BaseModel):
    """Shown once, at enrolment, so the user can add it to an authenticator app."""
    secret: str
    otpauth_uri: str


class TotpCodeIn(In):
    code: str = Field(pattern=CODE_PATTERN, description="the 6-digit code from the authenticator app")


# --- profile -----------------------------------------------------------------------------

class PayoutNodeOut(BaseModel):
    """Where payouts go; the macaroon and certificate stay sealed on the server."""
    node_pubkey: str
    rest_url: str


class UserOut(BaseModel):
    id: int
    email: str
    display_name: str
    roles: list[str]
    blocked: bool
    totp_enabled: bool
    has_address: bool
    payout_node: PayoutNodeOut | None
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> "UserOut":
        node = (PayoutNodeOut(node_pubkey=user.node_pubkey, rest_url=user.payout_rest_url)
                if user.node_pubkey and user.payout_rest_url else None)
        return cls(id=user.id, email=user.email, display_name=user.display_name,
                   roles=[r for r in user.roles.split(",") if r], blocked=bool(user.blocked),
                   totp_enabled=bool(user.totp_enabled), has_address=user.address_enc is not None,
                   payout_node=node, created_at=user.created_at)


class UserUpdate(In):
    display_name: str | None = None


class AddressIn(In):
    address: str


class AddressOut(BaseModel):
    address: str
    address_hash: str = Field(description="what a courier reports on delivery")


class PayoutNodeIn(In):
    node_pubkey: str = Field(description="66 hex characters, starting 02 or 03")
    rest_url: str = Field(description="https://host:port of the node's REST API")
    macaroon_hex: str = Field(description="an invoice macaroon, hex-encoded")
    tls_cert_pem: str = Field(description="the node's TLS certificate, PEM")


# --- notifications -----------------------------------------------------------------------

class NotificationOut(BaseModel):
    id: int
    order_id: int | None
    kind: str
    message: str
    read: bool
    at: datetime

    @classmethod
    def of(cls, n: Notification) -> "NotificationOut":
        return cls(id=n.id, order_id=n.order_id, kind=n.kind, message=n.message, read=n.read, at=n.at)


class NotificationPage(BaseModel):
    items: list[NotificationOut]
    total: int
    limit: int
    offset: int


class MarkedReadOut(BaseModel):
    marked: int


# --- admin -------------------------------------------------------------------------------

class UserPage(BaseModel):
    items: list[UserOut]
    total: int
    limit: int
    offset: int


class RoleChangeIn(In):
    role: Role
    grant: bool


class BlockIn(In):
    blocked: bool
