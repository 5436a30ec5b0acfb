"""The escrow protocol: the vocabulary a marketplace and escrowlab's harness share.

It holds names, formats and pure formulas, never a marketplace's decisions:
- ``states``: the canonical order states and events, and which states are terminal;
- ``modes``: the escrow mode names;
- ``webhook``: the courier webhook's body, headers and signature, and the address hash;
- ``formulas``: the fee, the hold-invoice CLTV sizing and the lock horizon;
- ``actions``: what a party can ask of a marketplace, and the roles that ask.

It imports nothing else of escrowlab. ``docs/protocol.md`` describes it for outsiders.
"""

from .actions import ACTIONS, ROLES, Action
from .formulas import PPM, fee_sats, hold_cltv_blocks, lock_horizon, split_shares
from .modes import MODE_NAMES, Mode
from .states import FUNDED_STATES, PENDING, TERMINAL, Event, State
from .webhook import COURIER_STATUSES, address_hash, courier_body, courier_headers, sign_courier

__all__ = ["ACTIONS", "COURIER_STATUSES", "FUNDED_STATES", "MODE_NAMES", "PENDING", "PPM", "ROLES", "TERMINAL",
           "Action", "Event", "Mode", "State", "address_hash", "courier_body", "courier_headers", "fee_sats",
           "hold_cltv_blocks", "lock_horizon", "sign_courier", "split_shares"]
