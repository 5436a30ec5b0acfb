"""Invariant checks for custodial escrow: being written (issue 4)."""

CHECKS: dict = {}
