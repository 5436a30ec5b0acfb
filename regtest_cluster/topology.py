"""Topology files: a declared regtest network, validated before anything starts.

A topology names its nodes (with roles, on-chain funding and implementation:
``impl: lnd`` by default, or ``impl: ldk`` for our ldk-node daemon) and its
channels (from, to, capacity, push). Every error names the field it is about,
on one line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator, model_validator

from . import TOPOLOGY_DIR

Role = Literal["hub", "buyer", "seller", "courier", "arbiter", "router", "node"]
# Lightning implementations a node can run: LND, or ldkd (ldk-node; see docs/ldk.md).
IMPLS = ("lnd", "ldk")

MIN_CHANNEL_SATS = 20_000
MAX_CHANNEL_SATS = 1_000_000_000  # wumbo channels are enabled
# What each opener keeps on top of its channels for the funding fee and anchors.
OPENER_RESERVE_SATS = 100_000


class TopologyError(ValueError):
    """Raised for a topology that cannot be loaded; the message names the file and field."""


class NodeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    role: Role = "node"
    funding_sats: int = Field(default=0, ge=0, le=2_000_000_000)
    utxos: int = Field(default=4, ge=1, le=50, description="how many outputs the funding is split into")
    # lnd's --accept-keysend (spontaneous payments, which SimLN sends); None: the topology's setting
    accept_keysend: StrictBool | None = None
    impl: str = "lnd"

    @field_validator("impl")
    @classmethod
    def _impl(cls, v: object) -> str:
        if v not in IMPLS:
            raise ValueError(f"unknown implementation {v!r} (known: {', '.join(IMPLS)})")
        return v  # type: ignore[return-value]

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", v):
            raise ValueError("must be lower-case letters, digits, '-' or '_', starting with a letter, at most 32 long")
        return v


class ChannelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    capacity_sats: int = Field(ge=MIN_CHANNEL_SATS, le=MAX_CHANNEL_SATS)
    push_sats: int = Field(default=0, ge=0)
    private: bool = False

    @model_validator(mode="after")
    def _push_below_capacity(self) -> "ChannelSpec":
        if self.push_sats >= self.capacity_sats:
            raise ValueError(f"push_sats ({self.push_sats}) must be below capacity_sats ({self.capacity_sats})")
        if self.from_ == self.to:
            raise ValueError(f"a channel needs two nodes; from and to are both {self.to!r}")
        return self


class Topology(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    description: str = ""
    base_port: int | None = Field(default=None, ge=1024, le=65000)
    accept_keysend: StrictBool = False  # every LND's default; a node's own setting wins
    nodes: list[NodeSpec] = Field(min_length=1)
    channels: list[ChannelSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> "Topology":
        names = [n.name for n in self.nodes]
        seen: set[str] = set()
        for i, n in enumerate(names):
            if n in seen:
                raise _FieldError(f"nodes[{i}].name", f"duplicate node name {n!r}")
            seen.add(n)
        for i, node in enumerate(self.nodes):
            if node.role == "hub" and node.impl != "lnd":
                raise _FieldError(f"nodes[{i}].impl", f"the hub {node.name!r} must stay LND (impl: lnd): the "
                                  f"marketplace drives its hold invoices over LND's API; put LDK on buyers and sellers")
        for i, ch in enumerate(self.channels):
            for field, ref in (("from", ch.from_), ("to", ch.to)):
                if ref not in seen:
                    raise _FieldError(f"channels[{i}].{field}",
                                      f"unknown node {ref!r} (nodes: {', '.join(names)})")
        for node in self.nodes:
            need = sum(c.capacity_sats + OPENER_RESERVE_SATS for c in self.channels if c.from_ == node.name)
            if need > node.funding_sats:
                i = names.index(node.name)
                raise _FieldError(f"nodes[{i}].funding_sats",
                                  f"{node.name} opens channels needing {need} sats (capacity plus "
                                  f"{OPENER_RESERVE_SATS} fee reserve each) but is funded {node.funding_sats}")
        return self

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def impl(self, name: str) -> str:
        """Node ``name``'s implementation: ``lnd`` or ``ldk``."""
        return self.node(name).impl

    def keysend(self, name: str) -> bool:
        """Whether node ``name``'s lnd runs with ``--accept-keysend`` (its own setting, else the topology's)."""
        own = self.node(name).accept_keysend
        return self.accept_keysend if own is None else own


class _FieldError(ValueError):
    def __init__(self, loc: str, msg: str) -> None:
        self.loc, self.msg = loc, msg
        super().__init__(msg)


def _loc(parts: tuple) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + ("from" if p == "from_" else str(p))
    return out


def parse(data: object, source: str = "<topology>") -> Topology:
    if not isinstance(data, dict):
        raise TopologyError(f"{source}: the top level must be a mapping with 'name', 'nodes' and 'channels'")
    try:
        return Topology.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _FieldError):
            raise TopologyError(f"{source}: {ctx_error.loc}: {ctx_error.msg}") from None
        loc = _loc(err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        raise TopologyError(f"{source}: {loc}: {msg}") from None


def load(path_or_name: str | Path) -> Topology:
    """Load a topology file, or a shipped one by name (``hub``, ``line``)."""
    path = Path(path_or_name)
    if not path.exists() and not path.suffix:
        path = TOPOLOGY_DIR / f"{path_or_name}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in TOPOLOGY_DIR.glob("*.yaml")))
        raise TopologyError(f"{path_or_name}: no such topology file (shipped: {shipped})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise TopologyError(f"{path}:{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse(data, str(path))
