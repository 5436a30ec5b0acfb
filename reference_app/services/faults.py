"""Named crash points in the settle and payout paths, for fault injection.

Set ``ESCROWLAB_FAULT_POINTS='["after_settle"]'`` and the process dies
(SIGKILL-like, no cleanup) the first time it reaches that point, as a crash
would. Scenarios restart it and check that nothing was lost or paid twice.
"""

from __future__ import annotations

import os

POINTS = ("after_claim_release", "after_settle", "after_payout_marker", "after_payout_sent", "after_cancel")


def point(name: str, enabled: list[str]) -> None:
    if name in enabled:
        os._exit(137)
