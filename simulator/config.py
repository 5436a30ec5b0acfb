"""Simulator configuration: YAML loaded into frozen dataclasses whose field names carry units.

Validation is pydantic's; a bad file gives one ``SimConfigError`` naming the field, e.g.
``buyers.arrivals_per_day: must be > 0``. Trade-window defaults mirror the reference
app's ``Settings`` (reference_app/config.py), so a model run and a live run share rules.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic.dataclasses import dataclass

from escrow_protocol import formulas

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]  # .inf in YAML would never end a run
PositiveInt = Annotated[int, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]
MODES = ("ln_hold", "onchain_multisig", "custodial")
_STRICT = ConfigDict(extra="forbid")
# A weekday marketplace: quiet at night, a lunch bump and an evening peak (relative weights, UTC hours).
DEFAULT_HOURLY_PROFILE = (0.3, 0.2, 0.15, 0.1, 0.1, 0.15, 0.3, 0.6, 0.9, 1.0, 1.1, 1.2,
                          1.4, 1.3, 1.1, 1.0, 1.0, 1.1, 1.3, 1.6, 1.8, 1.7, 1.2, 0.6)


class SimConfigError(ValueError):
    """A simulator config that cannot be used; the message names the field."""


@dataclass(frozen=True, config=_STRICT)
class Buyers:
    arrivals_per_day: Positive
    hourly_profile: tuple[NonNegative, ...] = DEFAULT_HOURLY_PROFILE
    basket_items_mean: Annotated[float, Field(ge=1)] = 1.3
    item_price_median_sats: PositiveInt = 40_000
    item_price_sigma: NonNegative = 0.9
    escrow_mode_mix: dict[Literal["ln_hold", "onchain_multisig", "custodial"], NonNegative] = \
        Field(default_factory=lambda: {"ln_hold": 0.6, "onchain_multisig": 0.15, "custodial": 0.25})
    confirm_probability: Probability = 0.45
    confirm_delay_median_h: Positive = 8.0
    dispute_probability: Probability = 0.02

    @model_validator(mode="after")
    def _shapes(self) -> "Buyers":
        if len(self.hourly_profile) != 24 or sum(self.hourly_profile) <= 0:
            raise ValueError("hourly_profile: needs 24 weights, not all zero")
        if sum(self.escrow_mode_mix.values()) <= 0:
            raise ValueError("escrow_mode_mix: needs at least one mode with weight > 0")
        return self


@dataclass(frozen=True, config=_STRICT)
class Sellers:
    ship_delay_median_h: Positive = 20.0
    ship_delay_sigma: NonNegative = 0.6
    never_ship_probability: Probability = 0.01


@dataclass(frozen=True, config=_STRICT)
class Couriers:
    transit_median_h: Positive = 48.0
    transit_sigma: NonNegative = 0.4
    loss_probability: Probability = 0.005


@dataclass(frozen=True, config=_STRICT)
class Arbiters:
    count: PositiveInt = 10
    handling_mean_h: Positive = 1.5


@dataclass(frozen=True, config=_STRICT)
class Disputes:
    ruling_mix: dict[Literal["release", "refund", "split"], NonNegative] = \
        Field(default_factory=lambda: {"release": 0.45, "refund": 0.4, "split": 0.15})
    split_buyer_share_pct: Annotated[float, Field(ge=0, le=100)] = 50.0


@dataclass(frozen=True, config=_STRICT)
class Blocks:
    interval_mean_s: Positive = 600.0
    weight_limit_wu: PositiveInt = 4_000_000
    background_fill_min_fraction: Probability = 0.5
    background_fill_max_fraction: Probability = 0.9
    base_fee_sat_vb: Positive = 2.0
    fund_tx_vb: Positive = 152.5
    release_tx_min_vb: Positive = 146.0
    release_tx_max_vb: Positive = 177.0
    withdrawal_tx_vb: Positive = 141.0
    confirmations: PositiveInt = 1

    @model_validator(mode="after")
    def _ordered(self) -> "Blocks":
        if self.release_tx_max_vb < self.release_tx_min_vb:
            raise ValueError("release_tx_max_vb: must be >= release_tx_min_vb")
        if self.background_fill_max_fraction < self.background_fill_min_fraction:
            raise ValueError("background_fill_max_fraction: must be >= background_fill_min_fraction")
        return self


@dataclass(frozen=True, config=_STRICT)
class Lightning:
    channels: PositiveInt = 64
    channel_capacity_sats: PositiveInt = 16_777_215
    htlc_slots_per_direction: PositiveInt = 483
    reserve_fraction: Probability = 0.01
    route_attempts: PositiveInt = 3
    routing_fee_base_msat: NonNegativeInt = 1_000
    routing_fee_ppm: NonNegativeInt = 100
    payout_fee_limit_sats: NonNegativeInt = 50
    max_route_cltv_blocks: PositiveInt = 2_016
    # The payers' wallets the market serves: the hold must fit the tightest one's route CLTV cap
    # (escrow_protocol.formulas.PAYER_CLTV_CAPS: LND 2016, LDK 1008 at their defaults)
    payer_impls: tuple[Literal["lnd", "ldk"], ...] = ("lnd",)
    outbound_liquidity_sats: PositiveInt = 2_000_000_000
    rebalance_sats_per_day: NonNegativeInt = 400_000_000


@dataclass(frozen=True, config=_STRICT)
class Windows:
    """The app's trade windows (reference_app/config.py): whichever of seconds and blocks ends first."""

    ship_window_s: PositiveInt = 3 * 86_400
    ship_window_blocks: PositiveInt = 36
    delivery_window_s: PositiveInt = 14 * 86_400
    delivery_window_blocks: PositiveInt = 72
    dispute_window_s: PositiveInt = 2 * 86_400
    dispute_window_blocks: PositiveInt = 24
    ruling_window_s: PositiveInt = 14 * 86_400
    ruling_window_blocks: PositiveInt = 2_016
    speedup_factor: Annotated[float, Field(ge=1)] = 1.7
    guardian_margin_blocks: PositiveInt = 24
    hold_expiry_delta_blocks: PositiveInt = 18
    fee_ppm: Annotated[int, Field(ge=0, le=200_000)] = 10_000


@dataclass(frozen=True, config=_STRICT)
class Custodial:
    hot_wallet_initial_sats: NonNegativeInt = 500_000_000
    hot_wallet_max_sats: PositiveInt = 1_000_000_000
    seller_withdraw_fraction: Probability = 0.7


@dataclass(frozen=True, config=_STRICT)
class Run:
    seed: int = 1
    duration_days: Positive = 30.0
    sample_interval_s: Positive = 3_600.0
    load_multiplier: Positive = 1.0


@dataclass(frozen=True, config=_STRICT)
class Verdict:
    growth_per_year: Annotated[float, Field(gt=1)] = 2.0
    sweep_multipliers: tuple[Positive, ...] = ()
    sweep_days: Positive = 10.0


@dataclass(frozen=True, config=_STRICT)
class Live:
    orders: PositiveInt = 100
    sim_seconds_per_wall_second: Positive = 600.0
    blocks_per_10_sim_minutes: Positive = 1.0
    buyer_nodes: tuple[str, ...] = ("buyer1", "buyer2")
    seller_nodes: tuple[str, ...] = ("seller1", "seller2")
    windows_blocks: PositiveInt = 6
    concurrency: PositiveInt = 8
    max_wall_s: Positive = 900.0
    item_price_min_sats: PositiveInt = 10_000
    item_price_max_sats: PositiveInt = 60_000


@dataclass(frozen=True, config=_STRICT)
class SimConfig:
    name: str
    buyers: Buyers
    sellers: Sellers = Field(default_factory=Sellers)
    couriers: Couriers = Field(default_factory=Couriers)
    arbiters: Arbiters = Field(default_factory=Arbiters)
    disputes: Disputes = Field(default_factory=Disputes)
    blocks: Blocks = Field(default_factory=Blocks)
    lightning: Lightning = Field(default_factory=Lightning)
    windows: Windows = Field(default_factory=Windows)
    custodial: Custodial = Field(default_factory=Custodial)
    run: Run = Field(default_factory=Run)
    verdict: Verdict = Field(default_factory=Verdict)
    live: Live = Field(default_factory=Live)


_ADAPTER = TypeAdapter(SimConfig)
_PHRASES = {"greater_than": "must be > {gt:g}", "greater_than_equal": "must be >= {ge:g}",
            "less_than": "must be < {lt:g}", "less_than_equal": "must be <= {le:g}",
            "missing": "is required", "extra_forbidden": "is not a known field",
            "unexpected_keyword_argument": "is not a known field"}


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    phrase = _PHRASES.get(err["type"])
    msg = phrase.format(**err.get("ctx", {})) if phrase else err["msg"]
    if err["type"] == "value_error" and ": " in msg:  # our own validators name the field themselves
        field, _, msg = msg.removeprefix("Value error, ").partition(": ")
        loc.append(field)
    return f"{'.'.join(loc) or '(top level)'}: {msg}"


def parse(data: dict) -> SimConfig:
    """Validate a config mapping; raises SimConfigError naming the first bad field."""
    if not isinstance(data, dict):
        raise SimConfigError("(top level): a simulator config is a mapping")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise SimConfigError(_one_line(exc)) from None


CONFIG_DIR = Path(__file__).parent / "configs"


def shipped() -> list[str]:
    """The configs that ship with the package, by name (``year-10k``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load(path: str | Path) -> SimConfig:
    """A config file by path, or a shipped one by name (what a pip-installed user has)."""
    path = Path(path)
    if not path.is_file() and path.name == str(path) and (CONFIG_DIR / f"{path.name}.yaml").is_file():
        path = CONFIG_DIR / f"{path.name}.yaml"
    if not path.is_file():
        raise SimConfigError(f"no simulator config at {path}; shipped: {', '.join(shipped())}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SimConfigError(f"{path}: not valid YAML ({exc})") from None
    return parse(data)


def with_sweep(config: SimConfig, multipliers: tuple[float, ...] | None = None,
               days: float | None = None) -> SimConfig:
    """``config`` with its load sweep's multipliers and days replaced (None keeps each), validated
    as the YAML's would be (pydantic's ValidationError for a bad one)."""
    verdict = config.verdict
    return dataclasses.replace(config, verdict=dataclasses.replace(
        verdict, sweep_multipliers=verdict.sweep_multipliers if multipliers is None else tuple(multipliers),
        sweep_days=verdict.sweep_days if days is None else days))


def as_dict(config: SimConfig) -> dict:
    return _ADAPTER.dump_python(config, mode="json")


def route_cltv_cap(ln: Lightning) -> tuple[int, str]:
    """The tightest route CLTV cap the hold must fit, and whose it is: ``max_route_cltv_blocks``
    or a payer implementation's cap, whichever is lower."""
    caps = {"max_route_cltv_blocks": ln.max_route_cltv_blocks,
            **{impl: formulas.PAYER_CLTV_CAPS[impl] for impl in ln.payer_impls}}
    who = min(caps, key=lambda k: (caps[k], k == "max_route_cltv_blocks"))  # a tie names the wallet
    return caps[who], who


def hold_cltv_blocks(w: Windows) -> int:
    """The hold-invoice CLTV of the protocol's formula, for these windows."""
    return formulas.hold_cltv_blocks(w.ship_window_blocks, w.delivery_window_blocks, w.dispute_window_blocks,
                                     w.speedup_factor, w.guardian_margin_blocks, w.hold_expiry_delta_blocks)


def guardian_after_blocks(w: Windows) -> int:
    """Blocks after funding at which the guardian acts: the CLTV less its delta and margin."""
    return hold_cltv_blocks(w) - w.hold_expiry_delta_blocks - w.guardian_margin_blocks
