"""Benchmarks of the router.net engine against real peers (pynetdicom, DCMTK).

`python -m bench.echo` measures C-ECHO round trips per second over one
association and associations per second, for ours -> ours, pynetdicom ->
pynetdicom and DCMTK -> DCMTK, in one run, and prints the ratios.
"""
