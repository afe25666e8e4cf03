"""Benchmarks, run by `make bench` (`python -m bench`): figures and same-run ratios, not tests."""
