"""Benchmarks: each path of Bicameral against a baseline doing the same work without it.

`python -m bench --size default` (or `make bench`) starts what it needs (a
throwaway PostgreSQL, the suite's Elasticsearch node on 127.0.0.1:9250, the
service as child processes), measures every path against its baseline in the
same run, prints a table and writes `bench/results/latest.json`. Figures are
ratios system/baseline; absolute numbers stand beside them. Nothing here is a
test: no figure is asserted anywhere.
"""
