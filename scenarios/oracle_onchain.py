"""Invariant checks for onchain escrow: being written (issue 4)."""

CHECKS: dict = {}
