"""Benchmarks: `python -m cardpool.bench planner` prints JSON figures."""
