"""The simpy marketplace simulator (model and live modes). Arrives with issue 7."""
