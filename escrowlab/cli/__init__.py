"""The one `escrowlab` command. Each subsystem adds its own sub-app here."""

from __future__ import annotations

import signal
import sys

import typer
from rich.markup import escape

from . import app as app_cmd
from . import bench, cluster, demo, explore, nodes, scenario, simulate
from . import load as load_cmd
from . import torture as torture_cmd
from .common import console, plain_flags
from .extras import missing_extra_for, require_for

plain_flags()  # before any help is drawn: flags show no `<bool>`

app = typer.Typer(
    name="escrowlab",
    help="Prove Bitcoin and Lightning marketplace escrow correct and fast, on real regtest nodes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def version() -> str:
    """The installed distribution's version; the package's own in a checkout that is not installed."""
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version("escrowlab")
    except PackageNotFoundError:
        from escrowlab import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"escrowlab {version()}\n")
        raise typer.Exit()


@app.callback()
def _root(_version: bool = typer.Option(False, "--version", "-V", callback=_print_version, is_eager=True,
                                        help="Print the version and exit.")) -> None:
    """Prove Bitcoin and Lightning marketplace escrow correct and fast, on real regtest nodes."""


app.add_typer(nodes.app, name="nodes")
app.add_typer(cluster.app, name="cluster")
app.add_typer(app_cmd.app, name="app")
app.add_typer(scenario.app, name="scenario")
app.add_typer(bench.app, name="bench")
app.command(name="demo")(demo.demo)
app.command(name="simulate")(simulate.simulate)
app.command(name="load")(load_cmd.load)
app.command(name="torture")(torture_cmd.torture)
app.command(name="explore")(explore.explore)
app.command(name="replay")(explore.replay)

# Errors a user can act on: one clear message, no traceback, exit code 2. Named by the module
# that defines each rather than imported: importing them would load the cluster and the harness
# into every `--help` (and the app's error needs the [app] extra); each command imports what it uses.
KNOWN_ERRORS = (
    ("escrowlab.cli.common", "UserError"),
    ("escrowlab.cli.extras", "MissingExtra"),
    ("regtest_cluster.cluster", "ClusterError"),
    ("regtest_cluster.daemon", "DaemonError"),
    ("regtest_cluster.env", "ConfigError"),
    ("regtest_cluster.provision.errors", "ProvisionError"),
    ("regtest_cluster.topology", "TopologyError"),
    ("regtest_cluster.waiting", "WaitTimeout"),
    ("regtest_cluster.nodes.lnd", "LndError"),
    ("regtest_cluster.nodes.bitcoind", "RpcError"),
    ("harness.driver", "ApiError"),
    ("scenarios.runner", "UnknownScenario"),
    ("reference_app.ln", "NodeConfigError"),
)


def _known_errors() -> tuple[type[BaseException], ...]:
    """The known errors whose module this run imported, looked up when an error reaches ``main``:
    a module never imported cannot have raised its error."""
    found = (getattr(sys.modules.get(module), name, None) for module, name in KNOWN_ERRORS)
    return tuple(error for error in found if error is not None)


def _terminate(signum, frame):  # noqa: ARG001
    # Turn SIGTERM into an exception so every `finally` runs and no node is left behind.
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C stops us even when started from a background job, which inherits SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        require_for(sys.argv[1:])
        app()
    except _known_errors() as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, emoji=False)
        sys.exit(2)
    except ModuleNotFoundError as exc:
        missing = missing_extra_for(sys.argv[1:], exc.name)  # a subcommand or backend that needs an extra
        if missing is None:
            raise
        console.print(f"[bold red]error:[/] {escape(str(missing))}", soft_wrap=True, emoji=False)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
