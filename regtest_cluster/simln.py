"""A running cluster as SimLN's ``sim.json``, to generate payment activity on it.

SimLN (github.com/bitcoin-dev-project/sim-ln, run as ``sim-cli``) reads a JSON
file with two lists, as its README documents them:

- ``nodes``: the nodes it may send from. For LND, ``id`` (any string, or the
  node's public key), ``address`` (the gRPC endpoint, written here as
  ``https://host:port``, which every SimLN version accepts), ``macaroon`` and
  ``cert`` (paths to the admin macaroon and the TLS certificate);
- ``activity``: defined payments, each ``source``, ``destination``,
  ``interval_secs``, ``amount_msat`` and optionally ``count`` and
  ``start_secs``. With no activity, SimLN makes random payments among ``nodes``.

SimLN pays by keysend, so every receiving LND needs ``--accept-keysend`` (a
topology's ``accept_keysend``). Everything here comes from ``cluster status``;
nothing is read from the nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

SPEC_FORM = "SOURCE:DESTINATION:INTERVAL_SECS:AMOUNT_MSAT[:COUNT[:START_SECS]]"


class SimlnError(ValueError):
    """An activity or node choice that cannot make a valid sim.json; the message says which."""


@dataclass(frozen=True)
class Activity:
    source: str
    destination: str
    interval_secs: int
    amount_msat: int
    count: int | None = None
    start_secs: int | None = None

    def as_json(self) -> dict:
        out = {"source": self.source, "destination": self.destination,
               "interval_secs": self.interval_secs, "amount_msat": self.amount_msat}
        if self.count is not None:
            out["count"] = self.count
        if self.start_secs is not None:
            out["start_secs"] = self.start_secs
        return out


def parse_activity(spec: str) -> Activity:
    """``buyer1:seller1:10:1000000`` -> every 10 s, 1,000,000 msat from buyer1 to seller1."""
    parts = spec.split(":")
    if not 4 <= len(parts) <= 6 or not all(parts):
        raise SimlnError(f"--activity {spec!r}: expected {SPEC_FORM}")
    source, destination, *numbers = parts
    names = ("interval_secs", "amount_msat", "count", "start_secs")
    values: dict[str, int] = {}
    for name, text in zip(names, numbers):
        try:
            values[name] = int(text)
        except ValueError:
            raise SimlnError(f"--activity {spec!r}: {name} must be a whole number, got {text!r}") from None
    for name in ("interval_secs", "amount_msat", "count"):
        if name in values and values[name] < 1:
            raise SimlnError(f"--activity {spec!r}: {name} must be at least 1, got {values[name]}")
    if not 0 <= values.get("start_secs", 0) <= 65_535:  # SimLN reads it as a u16
        raise SimlnError(f"--activity {spec!r}: start_secs must be 0 to 65535")
    if source == destination:
        raise SimlnError(f"--activity {spec!r}: source and destination are both {source!r}")
    return Activity(source, destination, **values)


def sim_json(status: dict, activity: list[Activity] = (), only: list[str] | None = None) -> dict:
    """SimLN's configuration for the LND nodes in ``status`` (what ``cluster status --json`` prints).

    ``only`` limits ``nodes`` to those names (SimLN sends only from listed nodes, and random
    activity pays only among them); every activity source must be listed, and a destination
    must be a node of the cluster."""
    by_name = {n["name"]: n for n in status["nodes"]}
    names = list(only) if only else list(by_name)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SimlnError(f"no node named {', '.join(map(repr, unknown))} in the cluster "
                         f"(nodes: {', '.join(by_name)})")
    for a in activity:
        if a.source not in names:
            raise SimlnError(f"activity source {a.source!r} is not one of the nodes SimLN controls "
                             f"({', '.join(names)})")
        if a.destination not in by_name:
            raise SimlnError(f"activity destination {a.destination!r} is not a node of the cluster "
                             f"(nodes: {', '.join(by_name)})")
    nodes = [{"id": name, "address": f"https://{by_name[name]['grpc_host']}",
              "macaroon": by_name[name]["macaroon"], "cert": by_name[name]["tls_cert"]} for name in names]
    return {"nodes": nodes, "activity": [a.as_json() for a in activity]}


def warnings(status: dict, config: dict) -> list[str]:
    """What would make SimLN's payments fail on this cluster: a receiver without keysend, a node down."""
    by_name = {n["name"]: n for n in status["nodes"]}
    ids = [n["id"] for n in config["nodes"]]
    receivers = {a["destination"] for a in config["activity"]} if config["activity"] else set(ids)
    out = []
    no_keysend = sorted(r for r in receivers if by_name[r].get("accept_keysend") is False)
    if no_keysend:
        out.append(f"{', '.join(no_keysend)} do not accept keysend, so SimLN's payments to them fail: "
                   "set accept_keysend: true in the topology (for every node, or per node) and start it again")
    down = [i for i in ids if by_name[i].get("running") is False]
    if down:
        out.append(f"{', '.join(down)} not running now; SimLN cannot connect to them")
    return out
