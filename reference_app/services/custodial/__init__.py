"""Custodial accounts (the dBay model): a double-entry ledger over one bitcoind
hot wallet and the hub's LND.

Modules: ``ledger`` (accounts, idempotent balanced transfers, checks),
``escrow`` (hold / release / refund / split of orders paid from balances),
``deposits`` (per-user addresses, crediting after k confirmations),
``ln_deposits`` (hub invoices in), ``ln_withdrawals`` (payments out, reserved while in flight),
``onchain`` (batched withdrawals), ``reconcile`` (ledger against node truth).

Accounts. Per user: ``available``, ``held`` (escrowed for orders) and
``inflight`` (reserved for withdrawals not final yet), none ever negative.
System: ``sys:fees`` (marketplace revenue, never negative) and three asset
accounts mirroring node holdings: ``sys:hot_wallet`` (k-confirmed coins in the
custody wallet), ``sys:onchain_outgoing`` (broadcast batches not yet
k-confirmed), ``sys:hub_ln`` (hub LN balance owed to custody). Assets carry
negative balances (entries are credit-positive), so every transfer and the
whole ledger sum to zero. No separate ``escrow`` account: an order's hold sits
in the buyer's ``held`` balance and its ``order:<id>:hold`` posting is the
per-order record. Pre-confirmation deposits are not in the ledger at all.

Deposit addresses: bitcoind's own BIP84 descriptor wallet, no new dependency.
The custody wallet (``custody_wallet``) is a normal descriptor wallet that
holds the keys (``wpkh(tprv/84h/1h/0h/0/*)``); each user's address is
``getnewaddress(label="user:<id>")``, made once and stored with its HD path.
Why not ``deriveaddresses(xpub, index=user id)`` imported watch-only: (1) a
descriptor wallet only watches indexes inside its range, so user ids beyond
the keypool (1000 by default) would be paid and silently never seen unless
every new user also extended the range of every wallet involved; handing out
addresses with ``getnewaddress`` cannot fall outside it. (2) A watch-only
wallet cannot spend, so withdrawals would need the same keys in a second
wallet, and two wallets seeing the same coins is the double count that
reconciliation exists to catch. (3) Labels keep the user mapping in the
wallet itself, so it survives a lost database (``listreceivedbylabel``), and
private keys never leave bitcoind. embit/bitcoinlib were not needed.

Parameters (k confirmations, fee reserve ppm, minimum withdrawal) are function
arguments with defaults until they move into ``reference_app/config.py``.
"""

from .deposits import custody_wallet, deposit_address, scan_deposits
from .escrow import hold, refund, release, split
from .ledger import Mismatch, Posted, UserBalances, check, transfer, user_balances
from .ln_deposits import credit_ln_deposit, ln_deposit_invoice, poll_ln_deposits
from .ln_withdrawals import ln_withdraw, resume_withdrawals
from .onchain import check_batches, request_onchain_withdrawal, run_withdrawal_batch
from .reconcile import Report, reconcile

__all__ = [
    "Mismatch", "Posted", "Report", "UserBalances", "check", "check_batches", "credit_ln_deposit", "custody_wallet",
    "deposit_address", "hold", "ln_deposit_invoice", "ln_withdraw", "poll_ln_deposits", "reconcile", "refund",
    "release", "request_onchain_withdrawal", "resume_withdrawals", "run_withdrawal_batch", "scan_deposits", "split",
    "transfer", "user_balances",
]
