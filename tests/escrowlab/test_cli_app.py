"""`escrowlab app serve` finding its hub node: one clear line, exit 2, when it cannot."""

from __future__ import annotations

import os
import subprocess
import sys


def serve(tmp_path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ESCROWLAB_")}
    clean.update(ESCROWLAB_CACHE=str(tmp_path / "cache"), ESCROWLAB_DATA_DIR=str(tmp_path / "app"), **env)
    return subprocess.run([sys.executable, "-m", "escrowlab", "app", "serve", "--port", "1"],
                          capture_output=True, text=True, timeout=120, env=clean)


def test_serve_without_cluster_says_how_to_start_one(tmp_path):
    proc = serve(tmp_path)
    assert proc.returncode == 2, proc.stderr + proc.stdout
    out = proc.stdout + proc.stderr
    assert "no detached cluster named 'default'" in out and "escrowlab cluster up --detach" in out
    assert "Traceback" not in out


def test_serve_with_explicit_node_missing_macaroon_names_the_variable(tmp_path):
    cert = tmp_path / "tls.cert"
    cert.write_text("not used")
    proc = serve(tmp_path, ESCROWLAB_LND_REST_URL="https://127.0.0.1:1",
                 ESCROWLAB_LND_MACAROON_PATH=str(tmp_path / "missing.macaroon"),
                 ESCROWLAB_LND_TLS_CERT_PATH=str(cert))
    assert proc.returncode == 2, proc.stderr + proc.stdout
    out = proc.stdout + proc.stderr
    assert f"ESCROWLAB_LND_MACAROON_PATH: no file at {tmp_path / 'missing.macaroon'}" in out
    assert "Traceback" not in out


def test_a_setting_the_app_refuses_is_one_line_naming_its_variable_and_exit_2(tmp_path):
    proc = serve(tmp_path, ESCROWLAB_GIL_SWITCH_INTERVAL_S="0", ESCROWLAB_WORKER_INTERVAL_S="soon")
    assert proc.returncode == 2, proc.stderr + proc.stdout
    out = proc.stdout + proc.stderr
    assert "ESCROWLAB_GIL_SWITCH_INTERVAL_S: Input should be greater than 0" in out
    assert "ESCROWLAB_WORKER_INTERVAL_S: Input should be a valid number" in out
    assert "soon" not in out  # a value is never echoed: it may be a secret
    assert "Traceback" not in out


def test_a_rule_over_several_settings_is_reported_in_its_own_words(tmp_path):
    proc = serve(tmp_path, ESCROWLAB_ENVIRONMENT="production")
    assert proc.returncode == 2, proc.stderr + proc.stdout
    out = proc.stdout + proc.stderr
    assert "production needs secret_key" in out and "Value error" not in out and "Traceback" not in out


def test_the_apps_own_process_takes_the_gil_switch_interval_setting(monkeypatch):
    from reference_app.config import Settings
    from reference_app.main import own_process

    before = sys.getswitchinterval()
    monkeypatch.setenv("ESCROWLAB_GIL_SWITCH_INTERVAL_S", "0.002")
    try:
        own_process(Settings())
        assert sys.getswitchinterval() == 0.002
        assert Settings.model_fields["gil_switch_interval_s"].default == 0.0005
    finally:
        sys.setswitchinterval(before)
