"""Real regtest clusters: bitcoind plus several LND nodes, from one topology file.

Layers, bottom up: ``env`` (settings from the environment), ``provision``
(binaries), ``daemon`` (one process or container), ``nodes`` (bitcoind and LND
with typed RPC clients), ``topology`` (the declared network), ``cluster``
(bring-up and tear-down), ``state`` (a detached cluster's state file).
"""

from pathlib import Path

# The shipped topology files. Here rather than in ``topology`` so that naming one (the default
# of the CLI's --topology, shown in --help) imports neither yaml nor pydantic.
TOPOLOGY_DIR = Path(__file__).parent / "topologies"
