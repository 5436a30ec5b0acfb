"""The signed-in user's profile: display name, encrypted address, payout node, notifications."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from reference_app.services import accounts
from escrow_protocol.webhook import address_hash
from reference_app.store.models import Notification, User

from .test_accounts import problem, signed_in

ADDRESS = "221B Baker Street, London NW1 6XE"
PUBKEY = "02" + "ab" * 32
MACAROON = "0201036c6e6402f801" + "cd" * 40


def self_signed_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lnd")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def payout_body(**over: str) -> dict:
    body = {"node_pubkey": PUBKEY, "rest_url": "https://127.0.0.1:8080", "macaroon_hex": MACAROON,
            "tls_cert_pem": self_signed_pem()}
    body.update(over)
    return body


def raw_user_row(api: TestClient, email: str = "alice@example.com") -> dict:
    """The row as stored, bypassing the ORM and the encryption box."""
    with api.app.state.ctx.db.engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM users WHERE email = :email"), {"email": email}).mappings().one()
    return dict(row)


# --- display name ----------------------------------------------------------------------------

def test_me_update_display_name(api):
    headers = signed_in(api)
    resp = api.patch("/me", headers=headers, json={"display_name": "  Alice   Liddell "})
    assert resp.status_code == 200 and resp.json()["display_name"] == "Alice Liddell"
    assert api.get("/me", headers=headers).json()["display_name"] == "Alice Liddell"


def test_me_update_empty_display_name_names_field(api):
    headers = signed_in(api)
    resp = api.patch("/me", headers=headers, json={"display_name": ""})
    assert problem(resp, 422, "validation_failed", "the display name is empty")["field"] == "display_name"
    assert api.get("/me", headers=headers).json()["display_name"] == "Alice"


def test_me_update_roles_rejected(api):
    headers = signed_in(api)
    resp = api.patch("/me", headers=headers, json={"roles": ["admin"]})
    problem(resp, 422, "validation_failed", "roles: Extra inputs are not permitted")
    assert api.get("/me", headers=headers).json()["roles"] == ["buyer"]


# --- address ---------------------------------------------------------------------------------

def test_address_stored_encrypted_with_matching_hash(api):
    headers = signed_in(api)
    resp = api.put("/me/address", headers=headers, json={"address": ADDRESS})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"address": ADDRESS, "address_hash": address_hash(ADDRESS)}
    row = raw_user_row(api)
    assert row["address_hash"] == address_hash(ADDRESS)
    assert b"Baker" not in bytes(row["address_enc"]) and ADDRESS.encode() not in bytes(row["address_enc"])
    assert api.get("/me/address", headers=headers).json()["address"] == ADDRESS
    assert api.get("/me", headers=headers).json()["has_address"] is True


def test_address_get_before_set_404(api):
    headers = signed_in(api)
    problem(api.get("/me/address", headers=headers), 404, "not_found",
            "no shipping address set: PUT /me/address first")


def test_address_is_owner_only(api):
    alice = signed_in(api)
    api.put("/me/address", headers=alice, json={"address": ADDRESS})
    bob = signed_in(api, "bob@example.com")
    problem(api.get("/me/address", headers=bob), 404, "not_found", "no shipping address set: PUT /me/address first")
    problem(api.get("/me/address"), 401, "not_authenticated",
            "log in first: send 'Authorization: Bearer <access token>'")


def test_address_blank_names_field(api):
    headers = signed_in(api)
    api.put("/me/address", headers=headers, json={"address": ADDRESS})
    resp = api.put("/me/address", headers=headers, json={"address": "   "})
    assert problem(resp, 422, "validation_failed", "the shipping address is empty")["field"] == "address"
    assert api.get("/me/address", headers=headers).json()["address"] == ADDRESS


# --- payout node -----------------------------------------------------------------------------

def test_payout_node_bind_stores_credentials_encrypted(api):
    headers = signed_in(api)
    body = payout_body()
    resp = api.put("/me/payout-node", headers=headers, json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["payout_node"] == {"node_pubkey": PUBKEY, "rest_url": "https://127.0.0.1:8080"}
    assert MACAROON not in resp.text and "CERTIFICATE" not in resp.text
    row = raw_user_row(api)
    assert MACAROON.encode() not in bytes(row["payout_macaroon_enc"])
    assert b"CERTIFICATE" not in bytes(row["payout_tls_cert_enc"])
    ctx = api.app.state.ctx
    with ctx.db.session() as session:
        user = session.scalars(select(User).where(User.email == "alice@example.com")).one()
        node = accounts.payout_node(ctx, user)
    assert node == (body["rest_url"], MACAROON, body["tls_cert_pem"].strip() + "\n", PUBKEY)


BAD_PAYOUT_FIELDS = [
    ("node_pubkey", "04" + "ab" * 32,
     "node_pubkey must be a compressed public key: 66 hex characters starting 02 or 03"),
    ("node_pubkey", "02" + "ab" * 31,
     "node_pubkey must be a compressed public key: 66 hex characters starting 02 or 03"),
    ("rest_url", "http://127.0.0.1:8080",
     "rest_url must be an https URL with a host, like https://node.example:8080"),
    ("rest_url", "https://127.0.0.1:notaport", "rest_url 'https://127.0.0.1:notaport' is not a valid URL"),
    ("rest_url", "https://user:pw@127.0.0.1:8080",
     "rest_url must be a plain https://host:port URL (no credentials, query or fragment, at most 300 characters)"),
    ("macaroon_hex", "0201zz",
     "macaroon_hex must be the macaroon's bytes in hex (an even number of hex characters, at most 16384)"),
    ("macaroon_hex", "020",
     "macaroon_hex must be the macaroon's bytes in hex (an even number of hex characters, at most 16384)"),
    ("tls_cert_pem", "not a cert",
     "tls_cert_pem must be one PEM certificate ('-----BEGIN CERTIFICATE-----' ...)"),
    ("tls_cert_pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
     "tls_cert_pem must be one PEM certificate ('-----BEGIN CERTIFICATE-----' ...): it does not parse"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_PAYOUT_FIELDS)
def test_payout_node_bind_invalid_field_changes_nothing(api, field, value, message):
    headers = signed_in(api)
    resp = api.put("/me/payout-node", headers=headers, json=payout_body(**{field: value}))
    assert problem(resp, 422, "validation_failed", message)["field"] == field
    assert api.get("/me", headers=headers).json()["payout_node"] is None


def test_payout_node_bind_missing_field_names_field(api):
    headers = signed_in(api)
    body = payout_body()
    del body["macaroon_hex"]
    resp = api.put("/me/payout-node", headers=headers, json=body)
    assert problem(resp, 422, "validation_failed", "macaroon_hex: Field required")["field"] == "macaroon_hex"


def test_payout_node_unbind(api):
    headers = signed_in(api)
    api.put("/me/payout-node", headers=headers, json=payout_body())
    assert api.delete("/me/payout-node", headers=headers).status_code == 204
    assert api.get("/me", headers=headers).json()["payout_node"] is None
    assert raw_user_row(api)["payout_macaroon_enc"] is None


# --- notifications ---------------------------------------------------------------------------

def add_notifications(api: TestClient, email: str, messages: list[str]) -> None:
    """Rows as the order transitions write them, one second apart, oldest first."""
    start = datetime.now(timezone.utc) - timedelta(minutes=5)
    with api.app.state.ctx.db.session() as session:
        user_id = session.scalars(select(User.id).where(User.email == email)).one()
        for i, message in enumerate(messages):
            session.add(Notification(user_id=user_id, kind="order.test", message=message,
                                     at=start + timedelta(seconds=i)))


def test_notifications_newest_first_and_paginated(api):
    headers = signed_in(api)
    add_notifications(api, "alice@example.com", ["one", "two", "three"])
    body = api.get("/me/notifications", headers=headers).json()
    assert [n["message"] for n in body["items"]] == ["three", "two", "one"]
    assert body["total"] == 3
    page = api.get("/me/notifications?limit=1&offset=1", headers=headers).json()
    assert [n["message"] for n in page["items"]] == ["two"]
    assert (page["total"], page["limit"], page["offset"]) == (3, 1, 1)


def test_notifications_mark_read_and_unread_filter(api):
    headers = signed_in(api)
    add_notifications(api, "alice@example.com", ["one", "two"])
    resp = api.post("/me/notifications/read", headers=headers)
    assert resp.status_code == 200 and resp.json() == {"marked": 2}
    add_notifications(api, "alice@example.com", ["three"])
    unread = api.get("/me/notifications?unread=true", headers=headers).json()
    assert [n["message"] for n in unread["items"]] == ["three"] and unread["total"] == 1
    assert api.post("/me/notifications/read", headers=headers).json() == {"marked": 1}


def test_notifications_only_own(api):
    alice = signed_in(api)
    signed_in(api, "bob@example.com")
    add_notifications(api, "bob@example.com", ["for bob"])
    assert api.get("/me/notifications", headers=alice).json()["items"] == []
    assert api.post("/me/notifications/read", headers=alice).json() == {"marked": 0}


def test_notifications_bad_limit_names_field(api):
    headers = signed_in(api)
    resp = api.get("/me/notifications?limit=0", headers=headers)
    assert resp.status_code == 422 and resp.json()["field"] == "limit"
