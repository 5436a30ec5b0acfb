"""The app's one Settings object: read from the environment, validated, and
built in ``create_app(settings)``, never at import time."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRETS_FILE = "app-secrets.json"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESCROWLAB_", extra="ignore", frozen=True,
                                      populate_by_name=True)

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("runs/app")
    # bare DATABASE_URL, as hosting platforms set it (ESCROWLAB_DATABASE_URL works too)
    database_url: str = Field(default="", validation_alias=AliasChoices("DATABASE_URL", "ESCROWLAB_DATABASE_URL",
                                                                        "database_url"))
    # the harness's runs folder, whose reports the dashboard lists (ESCROWLAB_RUNS; unset: ./runs)
    runs_dir: Path | None = Field(default=None, validation_alias=AliasChoices("ESCROWLAB_RUNS", "runs_dir"))
    auto_migrate: bool = True

    # secrets: generated and kept in data_dir in development, required in production
    secret_key: str = ""                      # signs JWTs
    encryption_keys: list[str] = []           # Fernet keys; the first encrypts, all decrypt (rotation)
    courier_secrets: dict[str, str] = {}      # courier name -> webhook HMAC secret
    bootstrap_admin_email: str = ""
    bootstrap_admin_password: str = ""

    # where the hub LND is: a detached cluster's state file, or explicit paths
    cluster_state_file: Path | None = None
    hub_node: str = "hub"
    # `escrowlab app serve` runs this many processes, each the API and a worker, on one port
    # (they share the database; its compare-and-swap keeps them correct: use PostgreSQL)
    processes: int = Field(default=1, ge=1, le=64)
    # which of them this is, and the name they find each other by (set by `app serve`: shares.py)
    process_index: int = Field(default=0, ge=0, lt=64)
    process_group: str = ""
    # a token its launcher chose, echoed by /health: the launcher knows it reached this app and
    # not another one that answers on the same port (the harness sets a new one for each start)
    instance: str = ""
    lnd_grpc_host: str = ""                    # lnd's rpclisten, e.g. 127.0.0.1:10009
    lnd_rest_url: str = ""                     # no longer used by the app (it speaks gRPC); named in errors
    lnd_macaroon_path: Path | None = None
    lnd_tls_cert_path: Path | None = None

    # the app's bitcoind (on-chain and custodial modes): from the cluster state file, or explicit
    bitcoind_rpc_url: str = ""
    bitcoind_rpc_user: str = ""
    bitcoind_rpc_password: str = ""
    arbiter_seed: str = ""                     # hex BIP32 seed of the marketplace's arbiter keys
    onchain_confirmations: int = Field(default=1, ge=1, le=100)
    # the seller's default branch (older(N)): beyond every trade window and the ruling
    # window, stretched for fast blocks, so it only ever decides for a vanished marketplace
    onchain_timeout_blocks: int = Field(default=4032, ge=10)
    onchain_fee_rate_sat_vb: float = Field(default=2.0, gt=0)
    custodial_confirmations: int = Field(default=3, ge=1, le=100)
    custodial_fee_reserve_ppm: int = Field(default=10_000, ge=0)
    custodial_fee_reserve_min_sats: int = Field(default=10, ge=0)
    custodial_min_onchain_withdrawal_sats: int = Field(default=10_000, ge=546)

    # money
    fee_ppm: int = Field(default=10_000, ge=0, le=200_000)         # marketplace commission, 1 %
    payout_fee_limit_sats: int = Field(default=50, ge=0)            # routing budget, paid from the fee
    payout_max_final_cltv: int = 432
    # The tightest route CLTV cap among the payers' wallets served (LND 2016, LDK 1008 at their
    # defaults): hold invoices are sized to fit under it, or the app refuses to start
    payer_cltv_cap: int = Field(default=2016, ge=24)
    payout_min_expiry_s: int = 600
    min_price_sats: int = 1_000
    max_price_sats: int = 10_000_000

    # trade windows: wall-clock seconds and blocks (both apply, whichever comes first)
    funding_timeout_s: int = 900
    funding_timeout_blocks: int = 12
    ship_window_s: int = 3 * 86_400
    ship_window_blocks: int = 36
    delivery_window_s: int = 14 * 86_400
    delivery_window_blocks: int = 72
    dispute_window_s: int = 2 * 86_400
    dispute_window_blocks: int = 24
    ruling_window_s: int = 14 * 86_400
    ruling_window_blocks: int = 2_016
    speedup_factor: float = 1.7               # blocks may come faster than 10 minutes (I8)
    guardian_margin_blocks: int = 24
    hold_expiry_delta_blocks: int = 18        # lnd >= 0.21 invoices.holdexpirydelta

    # auth
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 14 * 86_400
    totp_max_failures: int = 5
    lockout_s: int = 900
    webhook_tolerance_s: int = 300
    # rate limits (api/ratelimit.py): rule -> [burst, refill per minute]; generous for writes,
    # so the scenarios and load profiles stay under them; login per address and per account
    rate_limits_enabled: bool = True
    rate_limits: dict[str, tuple[int, float]] = {
        "login_address": (300, 60), "login_account": (10, 10), "totp": (10, 5),
        "refresh": (60, 30), "write_account": (600, 600), "write_address": (600, 300),
        "webhook_courier": (600, 600)}

    # The GIL switch interval of the app's own processes (`escrowlab app serve`, `app worker`, bench api's)
    # (sys.setswitchinterval; CPython's default is 5 ms). A thread back from a call that let the
    # GIL go (an SQLite step, a socket send, a gRPC call) waits up to this long for it while
    # another of the app's threads runs Python: at 5 ms an order's ship and confirm, a few such
    # calls each, waited longer than they ran (docs/benchmarks.md). An app served in-process (a
    # test, a scenario) leaves its host process's interval alone.
    gil_switch_interval_s: float = Field(default=0.0005, gt=0, le=0.1)

    # worker
    run_worker_inprocess: bool = True
    worker_interval_s: float = 0.2
    payout_max_attempts: int = 5
    payout_timeout_s: int = 60
    payout_retry_base_s: float = 1.0

    # notifications, auctions and GDPR (services/market_loop.py runs them in the background)
    run_market_loop: bool = True
    market_loop_interval_s: float = Field(default=0.5, gt=0)
    webhook_max_attempts: int = Field(default=5, ge=1)
    webhook_retry_base_s: float = Field(default=1.0, gt=0)
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    notification_retention_days: int = Field(default=365, ge=1)    # read notifications older than this go
    message_retention_days: int = Field(default=730, ge=1)         # chat of orders ended longer ago is blanked

    # fault injection for the scenario suite: named crash points (see services/faults.py)
    fault_points: list[str] = []
    planted_bug: str | None = None            # one deliberate defect, for proving the oracle (services/faults.py)
    # argon2 cost: "light" for harness runs that start dozens of apps (services/accounts.py); never production
    password_hashing: Literal["standard", "light"] = "standard"

    @model_validator(mode="after")
    def _safe_outside_development(self) -> "Settings":
        if self.environment == "production":
            missing = [n for n in ("secret_key", "encryption_keys", "courier_secrets", "database_url", "arbiter_seed")
                       if not getattr(self, n)]
            if missing:
                raise ValueError(f"production needs {', '.join(missing)} set explicitly")
            if len(self.secret_key) < 32:
                raise ValueError("secret_key must be at least 32 characters in production")
            if self.database_url.startswith("sqlite") and ":memory:" in self.database_url:
                raise ValueError("an in-memory database loses every escrow on restart")
            if self.password_hashing != "standard":
                raise ValueError("password_hashing must be standard in production")
        if self.planted_bug is not None:
            from .services.faults import PLANTED_BUGS

            if self.environment == "production":
                raise ValueError("planted_bug is for proving the test oracle and is refused in production")
            if self.planted_bug not in PLANTED_BUGS:
                raise ValueError(f"unknown planted_bug {self.planted_bug!r} (known: {', '.join(PLANTED_BUGS)})")
        if any(burst < 1 or per_min <= 0 for burst, per_min in self.rate_limits.values()):
            raise ValueError("each rate limit needs a burst of at least 1 and a positive refill per minute")
        if self.hold_expiry_delta_blocks < 1 or self.guardian_margin_blocks < 1:
            raise ValueError("guardian_margin_blocks and hold_expiry_delta_blocks must be positive")
        self._holds_fit_payers()
        return self

    def _holds_fit_payers(self) -> None:
        """A hold invoice above the payers' route CLTV cap cannot be paid at all: refuse windows
        that need one, naming the windows and what fits."""
        from escrow_protocol import formulas

        trade = self.ship_window_blocks + self.delivery_window_blocks + self.dispute_window_blocks
        cltv = formulas.hold_cltv_blocks(self.ship_window_blocks, self.delivery_window_blocks,
                                         self.dispute_window_blocks, self.speedup_factor,
                                         self.guardian_margin_blocks, self.hold_expiry_delta_blocks)
        if cltv > self.payer_cltv_cap:
            fit = formulas.max_trade_blocks(self.payer_cltv_cap, self.speedup_factor, self.guardian_margin_blocks,
                                            self.hold_expiry_delta_blocks)
            raise ValueError(
                f"hold invoices would ask a CLTV of {cltv} blocks (ship {self.ship_window_blocks} + delivery "
                f"{self.delivery_window_blocks} + dispute {self.dispute_window_blocks} = {trade} blocks of windows "
                f"x speedup {self.speedup_factor}, + guardian margin {self.guardian_margin_blocks} + hold expiry delta "
                f"{self.hold_expiry_delta_blocks}), above payer_cltv_cap {self.payer_cltv_cap}: no payer's wallet "
                f"capped there could fund an order. At most {fit} blocks of ship + delivery + dispute windows fit")

    def with_dev_defaults(self) -> "Settings":
        """Fill unset secrets and the database URL for development and tests.

        Secrets persist in ``data_dir`` so a restarted worker can still decrypt
        preimages it stored earlier.
        """
        if self.environment == "production":
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / DEV_SECRETS_FILE
        stored = json.loads(path.read_text()) if path.exists() else {}
        before = dict(stored)
        if not stored:
            from cryptography.fernet import Fernet

            stored = {"secret_key": secrets.token_urlsafe(48), "arbiter_seed": secrets.token_hex(32),
                      "encryption_keys": [Fernet.generate_key().decode()],
                      "courier_secrets": {"fastship": secrets.token_hex(32), "slowpost": secrets.token_hex(32)}}
        stored.setdefault("arbiter_seed", secrets.token_hex(32))  # data dirs made before it existed
        if stored != before:
            # Written only when it changes, and whole (a new file renamed over the old): every app
            # process reads it at start, and one reading while another rewrote it in place once
            # read an empty file and failed to start (two app processes, restarted after a crash).
            fresh = path.with_name(f".{path.name}.{os.getpid()}")
            fresh.write_text(json.dumps(stored, indent=2))
            fresh.chmod(0o600)
            os.replace(fresh, path)
        updates = {k: v for k, v in stored.items() if not getattr(self, k)}
        if not self.database_url:
            updates["database_url"] = f"sqlite:///{(self.data_dir / 'app.db').resolve()}"
        return self.model_copy(update=updates)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
