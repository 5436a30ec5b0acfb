"""minimarket: a second, small marketplace with Lightning hold-invoice escrow (ln_hold only).

It shares nothing with the reference app but the escrow protocol's words
(``escrow_protocol``): its own storage (``store``), its own LND client (``lnd``), its
own rules and worker (``escrow``) and its own HTTP API (``app``). ``driver.Driver``
is how escrowlab's harness acts on it; read it to write the driver of your own
marketplace. Run it with ``python -m examples.minimarket --help``.
"""
