"""The invariant oracle: I1–I18 from DESIGN.md, each a named check on node truth.

``base`` holds what every check shares; ``ln_hold``, ``onchain`` and ``custodial``
hold each escrow mode's checks; ``registry`` gathers them. Nothing here imports a
marketplace: the app's claims arrive through the driver, node truth from the cluster.
"""

from harness.oracle.base import (AUTOMATIC, CANCELLING_CLAIMS, PPM, RELEASE_GROUNDS, SETTLING_CLAIMS, TERMINAL,
                                 Context, Violation, expected_deltas)
from harness.oracle.registry import NOT_YET, check, exercised, names, registry

__all__ = ["AUTOMATIC", "CANCELLING_CLAIMS", "NOT_YET", "PPM", "RELEASE_GROUNDS", "SETTLING_CLAIMS", "TERMINAL",
           "Context", "Violation", "check", "exercised", "expected_deltas", "names", "registry"]
