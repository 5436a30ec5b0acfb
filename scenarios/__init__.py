"""Escrow scenarios, actors and the invariant oracle. Arrives with issue 5."""
