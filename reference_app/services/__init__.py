"""Rules: escrow state machines, accounts, listings. No HTTP here; no SQL outside store models."""
