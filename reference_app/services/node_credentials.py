"""Shape checks for the credentials of a user's own Lightning node (payout binding).

They check form only; the node is first contacted when a payout needs an invoice.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from cryptography import x509

from .errors import ValidationFailed

PUBKEY_RE = re.compile(r"0[23][0-9a-fA-F]{64}")
HEX_RE = re.compile(r"(?:[0-9a-fA-F]{2})+")
MAX_URL_LEN = 300  # the width of users.payout_rest_url
MAX_MACAROON_HEX_LEN = 16_384
MAX_CERT_PEM_LEN = 16_384


def clean_pubkey(pubkey: str) -> str:
    pubkey = pubkey.strip()
    if not PUBKEY_RE.fullmatch(pubkey):
        raise ValidationFailed("node_pubkey must be a compressed public key: 66 hex characters starting "
                               "02 or 03", field="node_pubkey")
    return pubkey.lower()


def clean_rest_url(url: str) -> str:
    url = url.strip()
    try:
        parts = urlsplit(url)
        _ = parts.port  # urlsplit checks the port only when asked
    except ValueError:
        raise ValidationFailed(f"rest_url {url!r} is not a valid URL", field="rest_url") from None
    if parts.scheme != "https" or not parts.hostname:
        raise ValidationFailed("rest_url must be an https URL with a host, like https://node.example:8080",
                               field="rest_url")
    if parts.query or parts.fragment or parts.username or len(url) > MAX_URL_LEN:
        raise ValidationFailed("rest_url must be a plain https://host:port URL (no credentials, query "
                               f"or fragment, at most {MAX_URL_LEN} characters)", field="rest_url")
    return url.rstrip("/")


def clean_macaroon(macaroon_hex: str) -> str:
    macaroon_hex = macaroon_hex.strip()
    if len(macaroon_hex) > MAX_MACAROON_HEX_LEN or not HEX_RE.fullmatch(macaroon_hex):
        raise ValidationFailed("macaroon_hex must be the macaroon's bytes in hex (an even number of "
                               f"hex characters, at most {MAX_MACAROON_HEX_LEN})", field="macaroon_hex")
    return macaroon_hex.lower()


def clean_cert(pem: str) -> str:
    pem = pem.strip()
    problem = "tls_cert_pem must be one PEM certificate ('-----BEGIN CERTIFICATE-----' ...)"
    if len(pem) > MAX_CERT_PEM_LEN or "-----BEGIN CERTIFICATE-----" not in pem:
        raise ValidationFailed(problem, field="tls_cert_pem")
    try:
        x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise ValidationFailed(problem + ": it does not parse", field="tls_cert_pem") from None
    return pem + "\n"
