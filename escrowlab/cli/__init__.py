"""The one `escrowlab` command. Each subsystem adds its own sub-app here."""

from __future__ import annotations

import signal
import sys

import typer
from rich.markup import escape

from regtest_cluster.cluster import ClusterError
from regtest_cluster.daemon import DaemonError
from regtest_cluster.env import ConfigError
from regtest_cluster.nodes import LndError, RpcError
from regtest_cluster.provision import ProvisionError
from regtest_cluster.topology import TopologyError
from regtest_cluster.waiting import WaitTimeout
from harness.actors import ApiError
from scenarios.runner import UnknownScenario

from . import app as app_cmd
from . import bench, cluster, demo, explore, nodes, scenario, simulate
from . import load as load_cmd
from . import torture as torture_cmd
from .common import UserError, console, plain_flags
from .extras import MissingExtra, missing_extra_for, require_for

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

# Errors a user can act on: one clear message, no traceback, exit code 2.
KNOWN_ERRORS = (UserError, ClusterError, DaemonError, ConfigError, ProvisionError, TopologyError,
                WaitTimeout, LndError, RpcError, ApiError, UnknownScenario, MissingExtra)


def _known_errors() -> tuple[type[BaseException], ...]:
    # The app's config error comes from the [app] extra: a run that never imported it never raised it.
    node_config = getattr(sys.modules.get("reference_app.ln"), "NodeConfigError", None)
    return KNOWN_ERRORS + ((node_config,) if node_config else ())


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
