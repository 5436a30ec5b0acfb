"""Getting node binaries: provisioned into the cache, or brought by the user.

``resolve`` is what the rest of the cluster calls; ``install`` is what
``escrowlab nodes install`` calls; ``doctor`` reports what is where. ``ldk``
builds the optional LDK node (``ldkd``), for topologies with ``impl: ldk`` nodes.
"""

from . import bitcoind, ldk, lnd
from .binaries import Binaries, MissingBinaries, ProvisionError, doctor, install, resolve

__all__ = ["Binaries", "MissingBinaries", "ProvisionError", "doctor", "install", "resolve"]
