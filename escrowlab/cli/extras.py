"""Which pip extra each command needs, and one clear line when it is missing.

The core install (cluster, pytest fixtures, CLI, harness) is light; the reference app,
Locust, the docker backend and the simulator come as extras (pyproject.toml). A command
run without its extra exits 2 with ``escrowlab load needs the [load] extra: pip install
'escrowlab[load]'`` rather than a traceback from deep inside an import.
"""

from __future__ import annotations

import importlib.util

# An extra is installed when all of these import; keep in step with pyproject.toml.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "app": ("fastapi", "uvicorn", "sqlalchemy", "alembic", "pydantic_settings", "argon2", "jwt", "pyotp",
            "cryptography", "psycopg", "email_validator", "jinja2", "grpc", "google.protobuf"),
    "sim": ("simpy", "numpy", "matplotlib"),
    "docker": ("docker", "cryptography"),
    "load": ("locust", "numpy", "matplotlib"),
}
# Extras whose own extras come with them (pyproject: load = ["escrowlab[app]", ...]).
INCLUDES: dict[str, tuple[str, ...]] = {"load": ("app",)}

# The extras a top-level command needs before it can start; unlisted commands need the core only.
COMMAND_EXTRAS: dict[str, tuple[str, ...]] = {
    "app": ("app",),
    "scenario": ("app",),
    "demo": ("app",),
    "explore": ("app",),
    "replay": ("app",),
    "torture": ("app",),
    "load": ("load",),
    "simulate": ("sim",),
}

# Where a module several extras bring (cryptography) is credited, for commands that need no
# extra up front: in `cluster` it is the k8s export's or the docker backend's.
CREDIT: dict[str, tuple[str, ...]] = {"cluster": ("docker",)}


class MissingExtra(Exception):
    """A command needs an extra that is not installed: printed as one line, exit code 2."""

    def __init__(self, command: str, extras: list[str]) -> None:
        self.command, self.extras = command, extras
        names = " and ".join(f"[{name}]" for name in extras)
        noun = "extra" if len(extras) == 1 else "extras"
        super().__init__(f"escrowlab {command} needs the {names} {noun}: "
                         f"pip install 'escrowlab[{','.join(extras)}]'")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing, or a half-removed module
        return False


def _expand(extras: tuple[str, ...] | list[str]) -> list[str]:
    out: list[str] = []
    for name in extras:
        for each in (*INCLUDES.get(name, ()), name):
            if each not in out:
                out.append(each)
    return out


def missing(*extras: str) -> list[str]:
    """The extras among ``extras`` (and those they include) that are not installed."""
    gone = [name for name in _expand(extras) if not all(_importable(m) for m in EXTRA_MODULES[name])]
    # Name the extra the user asked for: [load] brings [app] with it.
    return [name for name in extras if name in gone or any(i in gone for i in INCLUDES.get(name, ()))]


def require(command: str, *extras: str) -> None:
    """Raise MissingExtra unless every extra ``command`` needs is installed."""
    gone = missing(*extras)
    if gone:
        raise MissingExtra(command, gone)


# Commands with subcommands: a message names both words (`escrowlab app serve`).
GROUPS = frozenset({"nodes", "cluster", "app", "scenario", "bench"})


def _command(argv: list[str]) -> tuple[str, str]:
    """The top-level command in ``argv`` and the name a message gives it ("" and "" for none)."""
    words = [arg for arg in argv if not arg.startswith("-")]
    if not words:
        return "", ""
    return words[0], " ".join(words[:2]) if words[0] in GROUPS else words[0]


def require_for(argv: list[str]) -> None:
    """Check the extras of the top-level command in ``argv`` (the arguments after ``escrowlab``)."""
    top, name = _command(argv)
    if top in COMMAND_EXTRAS:
        require(name, *COMMAND_EXTRAS[top])


def extra_for_module(module: str | None, command_extras: tuple[str, ...] = ()) -> str | None:
    """The extra that brings ``module`` (a ModuleNotFoundError's name), preferring the command's own."""
    if not module:
        return None
    top = module.split(".")[0]
    owners = [name for name, modules in EXTRA_MODULES.items()
              if any(m == module or m.split(".")[0] == top for m in modules)]
    for name in _expand(command_extras):
        if name in owners:
            return name
    return owners[0] if owners else None


def missing_extra_for(argv: list[str], module: str | None) -> MissingExtra | None:
    """What to say when running ``argv`` failed to import ``module``: the extra that brings it, if any."""
    top, name = _command(argv)
    extra = extra_for_module(module, COMMAND_EXTRAS.get(top) or CREDIT.get(top, ()))
    return MissingExtra(name or "this command", [extra]) if extra else None
