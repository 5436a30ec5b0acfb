"""Settings read the environment names the app has always answered to."""

from __future__ import annotations

from pathlib import Path

from reference_app.config import Settings


def test_bare_database_url_and_runs_folder_are_settings_fields(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "sqlite:////tmp/from-env.db")
    monkeypatch.setenv("ESCROWLAB_RUNS", "/tmp/escrowlab-runs")
    s = Settings()
    assert s.database_url == "sqlite:////tmp/from-env.db"
    assert s.runs_dir == Path("/tmp/escrowlab-runs")


def test_prefixed_database_url_and_no_runs_folder(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("ESCROWLAB_RUNS", raising=False)
    monkeypatch.setenv("ESCROWLAB_DATABASE_URL", "sqlite:////tmp/prefixed.db")
    s = Settings()
    assert s.database_url == "sqlite:////tmp/prefixed.db" and s.runs_dir is None
    assert Settings(database_url="sqlite:////tmp/x.db", runs_dir="/tmp/r").runs_dir == Path("/tmp/r")
