"""`escrowlab app`: serve the reference marketplace against the detached cluster."""

from __future__ import annotations

import secrets
import signal
from pathlib import Path

import typer

from .common import UserError, console, emit_json, env, name_flag, wait_for_stop

app = typer.Typer(help="Run the reference marketplace against the detached cluster.", no_args_is_help=True)

NAME_OPT = typer.Option("default", "--name", help="Which detached cluster to use.")


STATE_FILE_OPT = typer.Option(None, "--state-file", help="A cluster state file to use instead of --name's.")


def app_settings(name: str, state_file: Path | None = None, **overrides):
    """Settings from the environment, pointed at the detached cluster's state file,
    unless the environment names the hub node itself (ESCROWLAB_LND_GRPC_HOST and its
    credentials: a cluster escrowlab did not start, e.g. on Kubernetes)."""
    from regtest_cluster import launcher
    from regtest_cluster.state import state_path

    if state_file is None and name == "default":
        explicit = _settings(**overrides)
        if (explicit.lnd_grpc_host or explicit.lnd_rest_url) and not explicit.cluster_state_file:
            return explicit
    path = state_file or state_path(launcher.state_dir(env()), name)
    if not path.is_file():
        raise UserError(f"no detached cluster named {name!r} ({path} does not exist): start one with "
                        f"`escrowlab cluster up --detach{name_flag(name)}`")
    return _settings(cluster_state_file=path, **overrides)


def _settings(**given):
    """The app's settings from the environment; a value it refuses is a UserError naming its
    variable (ESCROWLAB_...) and why, not a traceback. The value is not echoed: it may be a secret."""
    from pydantic import ValidationError

    from reference_app.config import Settings

    try:
        return Settings(**given)
    except ValidationError as exc:
        prefix = Settings.model_config["env_prefix"]
        problems = []
        for error in exc.errors():
            if not error["loc"]:  # a rule over several settings (a model validator) says what it needs
                problems.append(error["msg"].removeprefix("Value error, "))
                continue
            field = str(error["loc"][0])
            var = field if field.isupper() else f"{prefix}{field.upper()}"
            problems.append(f"{var}: {error['msg']}")
        raise UserError("the app's settings are not valid: " + "; ".join(problems)) from None


@app.command()
def serve(host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
          port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
          name: str = NAME_OPT, state_file: Path | None = STATE_FILE_OPT,
          worker: bool = typer.Option(True, "--worker/--no-worker",
                                      help="Run the background worker in this process."),
          processes: int = typer.Option(None, "--processes", min=1, max=64,
                                        help="Processes serving the port, each with its own worker "
                                             "(default: ESCROWLAB_PROCESSES, else 1); use PostgreSQL.")) -> None:
    """Serve the marketplace API (OpenAPI at /docs). A port in use exits 2 before anything starts."""
    from reference_app.main import create_app, own_process, prepare_once

    from .listen import listen_socket

    settings = app_settings(name, state_file, run_worker_inprocess=worker)
    own_process(settings)
    if processes is not None:
        settings = settings.model_copy(update={"processes": processes})
    sock = listen_socket(host, port)  # the URL is printed only once the port is ours
    try:
        n = settings.processes
        if n > 1:  # fork before any thread or node channel exists: each child builds its own app
            # Each process's worker carries out its own share of the orders (reference_app/shares.py).
            settings = prepare_once(settings).model_copy(update={"process_group": secrets.token_hex(6)})
            index, children = _fork(n - 1)
            settings = settings.model_copy(update={"process_index": index})
            if children is None:
                _serve(create_app(settings), host, port, sock)
                return
            console.print(f"marketplace on http://{host}:{port} (docs at /docs), {n} processes, "
                          f"hub node from cluster {name!r}")
            _supervise(children, lambda: _serve(create_app(settings), host, port, sock))
            return
        application = create_app(settings)
        console.print(f"marketplace on http://{host}:{port} (docs at /docs), hub node from cluster {name!r}")
        _serve(application, host, port, sock)
    finally:
        sock.close()


def _serve(application, host: str, port: int, sock) -> None:
    import uvicorn

    from reference_app.serve import Server

    Server(uvicorn.Config(application, host=host, port=port, log_level="warning")).run(sockets=[sock])


def _fork(count: int) -> tuple[int, list[int] | None]:
    """Fork ``count`` children sharing the listening socket: (its index 1..count, None) in a
    child, (0, their pids) in the parent. A child dies with its parent (PR_SET_PDEATHSIG), so a
    killed app leaves nothing running."""
    import ctypes
    import os

    pids = []
    for index in range(1, count + 1):
        pid = os.fork()
        if pid == 0:
            try:
                ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            except (OSError, AttributeError):
                pass
            return index, None
        pids.append(pid)
    return 0, pids


def _supervise(children: list[int], serve_here) -> None:
    """Serve in this process too; on exit stop the children. A child that dies takes the app down
    (exit 1): half an app serving is worse than none, and the harness restarts it."""
    import os
    import threading

    def watch() -> None:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return
        log_pid = f"app process {pid} exited ({status >> 8})"
        console.print(f"[red]{log_pid}: stopping[/red]")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="children", daemon=True).start()
    try:
        serve_here()
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


@app.command("worker")
def worker_cmd(name: str = NAME_OPT, state_file: Path | None = STATE_FILE_OPT) -> None:
    """Run the background worker alone (invoices, deadlines, guardian, payouts)."""
    from reference_app.main import build_context, own_process
    from reference_app.worker import Worker

    settings = app_settings(name, state_file)
    own_process(settings)
    w = Worker(build_context(settings))
    w.start()
    console.print("worker running; Ctrl-C stops it")
    try:
        wait_for_stop()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        w.stop()


@app.command("reconcile")
def reconcile_cmd(name: str = NAME_OPT, state_file: Path | None = STATE_FILE_OPT,
                  json_out: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Compare the custodial ledger with bitcoind and the hub; exit 1 on any mismatch."""
    from dataclasses import asdict

    from reference_app.main import build_context
    from reference_app.services.modes.custodial import wallet_name

    ctx = build_context(app_settings(name, state_file))
    mode = ctx.modes.get("custodial")
    if mode is None:
        raise UserError("this app has no bitcoind, so it has no custodial ledger to reconcile")
    report = mode.reconcile()
    if json_out:
        emit_json({"ok": report.ok, "wallet": wallet_name(ctx.settings), "totals": report.totals,
                   "mismatches": [asdict(m) for m in report.mismatches]})
    else:
        for key, value in report.totals.items():
            console.print(f"{key:>28}  {value:>15,}")
        for m in report.mismatches:
            console.print(f"[red]MISMATCH[/red] {m.account}: expected {m.expected:,}, actual {m.actual:,} ({m.detail})")
        console.print("reconciled: no mismatch" if report.ok else f"{len(report.mismatches)} mismatch(es)")
    if not report.ok:
        raise typer.Exit(1)
