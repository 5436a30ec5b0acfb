"""custodial scenarios: being written (issue 4)."""

SCENARIOS: list = []
