"""Locating the hub node: a state file, or explicit gRPC settings; each mistake is one clear error."""

from __future__ import annotations

import pytest

from reference_app.config import Settings
from reference_app.ln import NodeConfigError, hub_client


def test_rest_only_settings_name_the_grpc_variable(tmp_path):
    (tmp_path / "m").write_bytes(b"\x02")
    (tmp_path / "c").write_text("cert")
    settings = Settings(lnd_rest_url="https://127.0.0.1:8080", lnd_macaroon_path=tmp_path / "m",
                        lnd_tls_cert_path=tmp_path / "c")
    with pytest.raises(NodeConfigError, match="ESCROWLAB_LND_GRPC_HOST is not set"):
        hub_client(settings)


def test_missing_certificate_is_named(tmp_path):
    (tmp_path / "m").write_bytes(b"\x02")
    settings = Settings(lnd_grpc_host="127.0.0.1:10009", lnd_macaroon_path=tmp_path / "m")
    with pytest.raises(NodeConfigError, match="ESCROWLAB_LND_TLS_CERT_PATH is not set"):
        hub_client(settings)


def test_nothing_configured_says_how(tmp_path):
    with pytest.raises(NodeConfigError, match="ESCROWLAB_CLUSTER_STATE_FILE, or ESCROWLAB_LND_GRPC_HOST"):
        hub_client(Settings())
