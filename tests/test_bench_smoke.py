"""Smoke test of the benchmark harness (bench/echo.py): tiny counts, one run, every pair.

It proves the harness starts and ends its peers and returns positive figures; the
figures themselves mean nothing at these counts. `make bench` runs the real thing.
"""

from __future__ import annotations

import importlib.util
import math
import shutil

import pytest

from bench import echo
from bench.floor import measure_floor

pytestmark = pytest.mark.timeout(30)


def _positive(values: list[float]) -> bool:
    return bool(values) and all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in values)


def test_ours_figures_are_positive():
    result = echo.measure_ours(echoes=20, assocs=5, runs=1, warmup=5)
    assert _positive(result.echo) and _positive(result.assoc)
    assert result.failures == 0


@pytest.mark.skipif(importlib.util.find_spec("pynetdicom") is None, reason="pynetdicom (dev extra) not installed")
def test_pynetdicom_figures_are_positive():
    result = echo.measure_pynetdicom(echoes=20, assocs=5, runs=1, warmup=5, timeout=20.0)
    assert _positive(result.echo) and _positive(result.assoc)
    assert result.failures == 0


@pytest.mark.skipif(not (shutil.which("echoscu") and shutil.which("storescp")), reason="DCMTK not installed (make peers)")
def test_dcmtk_figures_are_computed():
    # (t(N) - t(1)) / (N - 1) needs an N whose echoes outlast the process-time jitter (~1 ms): 1,000 take ~70 ms.
    result = echo.measure_dcmtk(echoes=1000, assocs=5, runs=1)
    assert _positive(result.echo)
    # Five processes are too few for the start-cost subtraction to be reliably positive: only check it ran.
    assert len(result.assoc) == 1 and len(result.extra["raw processes/s"]) == 1
    assert _positive(result.extra["raw processes/s"])


def test_report_prints_the_table_and_ratios():
    ours = echo.Result("ours -> ours", echo=[2.0], assoc=[3.0], echo_count=20, assoc_count=5)
    peer = echo.Result("DCMTK echoscu -> storescp (TCP_NODELAY=1)", echo=[4.0], assoc=[1.0], echo_count=20, assoc_count=5)
    text = echo.report([ours, peer], runs=1, elapsed=1.0, floor=[measure_floor(20, warmup=5)])
    assert "round trips   0.50" in text and "associations   3.00" in text
    assert "bare Python TCP ping-pong" in text
