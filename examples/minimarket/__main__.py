"""Run minimarket against a hub LND:

    python -m examples.minimarket --port 8090 --state ./mm \\
        --hub-rest https://127.0.0.1:10009 --hub-macaroon admin.macaroon --hub-cert tls.cert

Secrets stay off the command line (other users of the machine can read it):
``MINIMARKET_ADMIN_KEY`` is the admin's API key, ``MINIMARKET_COURIERS`` the couriers'
webhook secrets as JSON (``{"fastship": "..."}``), and ``MINIMARKET_SETTINGS`` the rule
settings as JSON (``escrow.DEFAULTS`` names; ``planted_bug`` switches on a deliberate defect).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from pathlib import Path

import uvicorn
from cryptography.fernet import Fernet

from .app import create_app
from .escrow import DEFAULTS, FAULT_POINTS, PLANTED_BUGS, Escrow
from .lnd import Lnd
from .store import Store

log = logging.getLogger("minimarket")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.minimarket", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", required=True, help="folder of the SQLite file and the preimage key")
    parser.add_argument("--hub-rest", required=True, help="the hub LND's REST URL")
    parser.add_argument("--hub-macaroon", required=True, help="path of the hub's admin.macaroon")
    parser.add_argument("--hub-cert", required=True, help="path of the hub's tls.cert")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per node call

    given = json.loads(os.environ.get("MINIMARKET_SETTINGS") or "{}")
    if set(given) - set(DEFAULTS):
        log.info("ignoring settings minimarket does not have: %s", ", ".join(sorted(set(given) - set(DEFAULTS))))
    settings = {k: v for k, v in given.items() if k in DEFAULTS}
    if settings.get("planted_bug") not in (None, *PLANTED_BUGS):
        sys.exit(f"no planted bug {settings['planted_bug']!r} (known: {', '.join(PLANTED_BUGS)})")
    if set(settings.get("fault_points") or []) - set(FAULT_POINTS):
        sys.exit(f"unknown fault points {settings['fault_points']} (known: {', '.join(FAULT_POINTS)})")

    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)
    key_file = state / "preimage.key"  # seals the hold preimages; kept beside, not in, the database
    if not key_file.exists():
        key_file.write_bytes(Fernet.generate_key())
        key_file.chmod(0o600)
    store = Store(str(state / "minimarket.sqlite"))
    admin_key = os.environ.get("MINIMARKET_ADMIN_KEY", "")
    if admin_key:
        with store.tx() as db:
            if db.execute("UPDATE users SET api_key = ? WHERE roles = 'admin'", (admin_key,)).rowcount == 0:
                db.execute("INSERT INTO users (name, roles, api_key) VALUES ('admin', 'admin', ?)", (admin_key,))

    hub = Lnd(args.hub_rest, Path(args.hub_macaroon).read_bytes().hex(), args.hub_cert)
    escrow = Escrow(store, hub, settings, key_file.read_bytes())
    app = create_app(escrow, json.loads(os.environ.get("MINIMARKET_COURIERS") or "{}"))
    stop = threading.Event()
    threading.Thread(target=escrow.run, args=(stop,), name="worker", daemon=True).start()
    log.info("minimarket on 127.0.0.1:%s, state %s, planted bug %s", args.port, state, escrow.bug)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    stop.set()


if __name__ == "__main__":
    main()
