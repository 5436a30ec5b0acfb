"""Benchmarks: each measures its figure (and its baseline, where there is one) in one run."""
