"""Exploring: generated adversarial escrow histories, judged by the model and the oracle.

``history``: one history (generated from a seed, or replayed from a trace) as a scenario;
``run``: the budgeted loop, shrinking, trace files and the report.
"""
