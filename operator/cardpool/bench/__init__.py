"""Benchmarks: `python -m cardpool.bench planner|defrag` print JSON figures. The cluster benchmarks (start,
recovery, scale) live in the e2e kit (e2e/clusterbench); `python -m cardpool.bench NAME` hands them over."""
