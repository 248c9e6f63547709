"""Cluster benchmarks: each starts a private local cluster (localkube, KWOK nodes) with this checkout's
operator and prints JSON. Part of the e2e kit, not of the installed package: run them from a checkout with
`PYTHONPATH=e2e python -m clusterbench start|recovery|scale` (or `make bench`); `python -m cardpool.bench`
hands these names over to this package when it can import it.
"""

BENCHMARKS = ("start", "recovery", "scale")
