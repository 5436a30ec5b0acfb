"""The harness: everything that drives or judges a marketplace from outside.

- ``driver``: the ``Marketplace`` interface, the only way the harness acts on a
  marketplace and reads what it says; ``http`` has ``HttpMarketplace``, the driver
  of the reference app.
- ``world``, ``actors*``: the cluster, the marketplace and the synthetic parties.
- ``evidence``: node truth gathered for the oracle.
- ``oracle``: the invariants, one module per escrow mode.

It imports the escrow protocol and the cluster, never a marketplace's code.
"""
