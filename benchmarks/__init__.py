"""Benchmarks, each measured side by side with a baseline in one run: `python -m benchmarks`."""
