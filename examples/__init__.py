"""Example marketplaces that escrowlab judges from outside, each with its own driver."""
