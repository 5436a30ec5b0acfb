"""The first LND build shows one progress display (phase and counts), not a line per
`go: downloading`, and keeps go's full output in a log file that a failure names."""

from __future__ import annotations

import stat
import textwrap

import pytest

from regtest_cluster.provision import ProvisionError, lnd

# What `go build -v` prints on a first build (format captured from go 1.26 on this machine).
CAPTURED = """\
go: downloading go1.25.4 (linux/amd64)
go: downloading github.com/lightningnetwork/lnd v0.21.2-beta
go: downloading github.com/btcsuite/btcd v0.24.3-0.20250318170759-4f4ea81776d6
go: downloading google.golang.org/grpc v1.64.1
internal/goarch
internal/unsafeheader
runtime
github.com/btcsuite/btcd/btcec/v2
github.com/lightningnetwork/lnd/lnrpc
"""


def test_build_progress_counts_modules_then_packages_and_names_each_phase_once():
    state = lnd.BuildProgress()
    changes = [line for line in CAPTURED.splitlines() if state.feed(line)]
    assert changes == ["go: downloading go1.25.4 (linux/amd64)",
                       "go: downloading github.com/lightningnetwork/lnd v0.21.2-beta",
                       "internal/goarch"]
    assert (state.toolchain, state.modules, state.packages) == ("go1.25.4", 3, 5)
    assert state.describe() == "compiling: 5 packages" and state.other == []


def test_build_progress_keeps_errors_apart_from_progress():
    state = lnd.BuildProgress()
    for line in ["go: downloading github.com/a/b v1.0.0", "example.com/tiny", "# example.com/tiny",
                 "./main.go:3:20: syntax error: unexpected }, expected expression"]:
        state.feed(line)
    assert state.other == ["# example.com/tiny", "./main.go:3:20: syntax error: unexpected }, expected expression"]
    assert (state.modules, state.packages) == (1, 1)


def fake_go(tmp_path, downloads: int, exit_code: int):
    """A stand-in for the go tool: prints what a first build prints, then exits (writing the
    two binaries into -o's folder when it succeeds)."""
    script = tmp_path / "go"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        while [ $# -gt 0 ]; do [ "$1" = "-o" ] && out="$2"; shift; done
        for i in $(seq 1 {downloads}); do echo "go: downloading github.com/example/mod$i v1.0.$i"; done
        echo runtime
        echo github.com/lightningnetwork/lnd/lnrpc
        if [ {exit_code} -ne 0 ]; then
          echo "# github.com/lightningnetwork/lnd/lnrpc"; echo "lnrpc/x.go:1:1: something broke"; exit {exit_code}
        fi
        touch "$out/lnd" "$out/lncli"
        """))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_failed_build_prints_one_line_per_phase_and_names_the_full_log(monkeypatch, tmp_path):
    go = fake_go(tmp_path, downloads=300, exit_code=1)
    monkeypatch.setattr(lnd, "which", lambda tool: go)
    lines, statuses = [], []
    with pytest.raises(ProvisionError) as err:
        lnd.install(tmp_path / "cache", lines.append, status=statuses.append)
    log = lnd.build_log(tmp_path / "cache")
    assert [m.split(" (")[0] for m in lines] == [f"lnd: building {lnd.LND_VERSION} with tags "
                                                 f"{','.join(lnd.LND_BUILD_TAGS)}",
                                                 "lnd: downloading modules", "lnd: compiling"]
    assert statuses[299] == "lnd: downloading modules: 300" and statuses[-1] == "lnd: compiling: 2 packages"
    assert f"full log: {log}" in str(err.value) and "lnrpc/x.go:1:1: something broke" in str(err.value)
    assert "go: downloading" not in str(err.value)
    assert log.read_text().count("go: downloading") == 300


def test_successful_build_without_a_live_display_logs_only_the_phases(monkeypatch, tmp_path):
    monkeypatch.setattr(lnd, "which", lambda tool: fake_go(tmp_path, downloads=50, exit_code=0))
    lines: list[str] = []
    paths = lnd.install(tmp_path / "cache", lines.append)
    assert paths == lnd.installed(tmp_path / "cache") and paths["lnd"].is_file()
    assert [m.split(":")[1].split()[0] for m in lines] == ["building", "downloading", "compiling", "installed"]
    assert "50 modules downloaded, 2 packages compiled" in lines[-1]
