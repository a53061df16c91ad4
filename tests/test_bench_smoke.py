"""Smoke tests of the benchmark harnesses (bench/echo.py, bench/store.py, bench/replay.py): tiny counts, one run, every pair.

They prove the harnesses start and end their peers and return positive figures, and that
the C-STORE benchmark notices a receiver that lost instances; the figures themselves mean
nothing at these counts. `make bench` runs the real thing.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import subprocess
import time

import pytest

from bench import echo, replay, store, store_report
from bench.floor import measure_floor
from bench.instances import instance_set
from bench.procs import Peers, Usage, free_port, timed_run, wait_exits
from tests.interop.store_data import SMALL, data_digest

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


# ---- C-STORE benchmark (bench/store.py) ------------------------------------------------------
STORE_TIMEOUT = 150  # every available pair, 1 and 4 associations, a fresh receiver per run


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    return instance_set(SMALL, 8, cache=tmp_path_factory.mktemp("bench-cache"))


@pytest.mark.timeout(STORE_TIMEOUT)
def test_store_every_pair_sends_and_counts(tiny_set, tmp_path):
    pairs = store.available_pairs(floor=True)
    cells = store.measure(pairs, [tiny_set], (1, 4), runs=1, out_root=tmp_path, start_repeats=1)
    assert len(cells) == 2 * len(pairs)
    for cell in cells:
        if not cell.pair.involves_ours and cell.failures:
            continue  # a fault between two peers (pynetdicom's, seen with 4 associations) is reported, not ours
        assert not cell.failures, f"{cell.pair.label}, {cell.associations} association(s): {cell.failures}"
        (run,) = cell.runs
        assert run.wall > 0 and run.start_cost > 0
        assert run.receiver.cpu_seconds >= 0 and run.receiver.peak_rss > 1 << 20
    assert list(tmp_path.iterdir()) == [], "every run's folder is removed after it is counted"
    text = store_report.report(cells, runs=1)
    assert "small: 8 instances" in text and "4 associations" in text and "FAILED ours" not in text
    assert "FAILED DCMTK -> Python floor" not in text


@pytest.mark.timeout(60)
def test_store_a_receiver_that_loses_instances_fails_the_run(tiny_set, tmp_path):
    ignoring = store.Peer("ours --ignore", store.OURS.scu, lambda port, out: [*store.OURS.scp(port, out), "--ignore"])
    (cell,) = store.measure([store.Pair(store.OURS, ignoring)], [tiny_set], (1,), runs=1, out_root=tmp_path,
                            start_repeats=1)
    assert cell.runs == []
    assert len(cell.failures) == 1 and "received 0 of 8 files" in cell.failures[0]
    assert "FAILED ours -> ours --ignore: received 0 of 8 files" in store_report.report([cell], runs=1)


def _cell(pair: store.Pair, instances, walls: list[float], start: float) -> store.Cell:
    usage = Usage(cpu_seconds=0.5, peak_rss=40_000_000)
    return store.Cell(pair, instances, 1, [store.Run(wall, start, usage) for wall in walls])


def test_store_report_ratios_use_the_net_medians(tiny_set):
    ours = _cell(store.Pair(store.OURS, store.OURS), tiny_set, [1.4, 1.0, 9.0], start=0.5)  # net median 0.9
    dcmtk = _cell(store.Pair(store.DCMTK, store.DCMTK), tiny_set, [1.9, 1.8, 2.0], start=0.0)  # net median 1.9
    receiver = _cell(store.Pair(store.DCMTK, store.OURS), tiny_set, [2.2], start=0.0)
    text = store_report.report([ours, dcmtk, receiver], runs=3)
    assert "ours -> ours / DCMTK -> DCMTK" in text and "2.11 (raw  1.36)  target >= 1: met" in text
    assert "DCMTK -> ours / DCMTK -> DCMTK" in text and "0.86 (raw  0.86)  target >= 0.9: MISSED" in text
    assert "| ours -> ours | 9 |" in text  # 8 instances in 0.9 s, net


# ---- replayed stream (bench/replay.py) --------------------------------------------------------
def test_replay_stream_is_what_a_modality_sends(tiny_set):
    stream = replay.encode_stream(tiny_set.files)
    assert stream.count == 8
    assert stream.pdus[0][0] == 0x01 and stream.pdus[-1][0] == 0x05  # A-ASSOCIATE-RQ ... A-RELEASE-RQ
    assert all(pdu[0] == 0x04 for pdu in stream.pdus[1:-1])  # P-DATA-TF: a command and a data set each
    assert len(stream.pdus) == 2 + 2 * 8


def test_replay_serves_every_instance_and_stores_it_bit_for_bit(tiny_set, tmp_path):
    stream = replay.encode_stream(tiny_set.files)
    stored = tmp_path / "stored"
    stored.mkdir()
    scp = replay.ReplayedScp(stored)
    try:
        assert scp.serve(stream) > 0  # raises unless all 8 were answered and the association released
    finally:
        scp.close()
    assert sorted(data_digest(path) for path in stored.iterdir()) == sorted(data_digest(p) for p in tiny_set.files)
    assert replay.bare_loop(stream) > 0


@pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK not installed")
@pytest.mark.timeout(60)
def test_the_floor_receiver_stores_every_instance_bit_for_bit(tiny_set, tmp_path):
    out, port = tmp_path / "floor", free_port()
    with Peers() as peers:
        peers.start("floor", store.FLOOR.scp(port, out), port, cwd=store.ROOT)
        sent = subprocess.run(store.DCMTK.scu(port, tiny_set.files), env={**os.environ, **store.DCMTK.env},
                              capture_output=True, text=True, timeout=30)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert sorted(data_digest(path) for path in out.iterdir()) == sorted(data_digest(p) for p in tiny_set.files)


def test_replay_notices_an_unanswered_request(tiny_set):
    stream = replay.encode_stream(tiny_set.files)
    cut = replay.Stream(stream.pdus[:-2], stream.count, stream.transfer_syntax)  # the last data set never ends
    scp = replay.ReplayedScp(None)
    try:
        with pytest.raises(RuntimeError, match="7 of 8 C-STOREs answered"):
            scp.serve(cut)
    finally:
        scp.close()


def test_exits_are_waited_for_without_sleeping(monkeypatch):
    """The timers see a client's exit when it happens: Popen.wait with a timeout sleeps up to
    50 ms between looks, which made every transfer look up to 50 ms longer than it was."""
    procs = [subprocess.Popen(["sh", "-c", f"sleep 0.05; exit {code}"]) for code in (0, 3)]

    def no_sleeping(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s")

    monkeypatch.setattr(time, "sleep", no_sleeping)
    assert wait_exits(procs, time.perf_counter() + 10) == (0, 3)
    assert timed_run(["true"]) > 0


def test_a_client_that_overruns_times_out():
    proc = subprocess.Popen(["sleep", "10"])
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            wait_exits([proc], time.perf_counter() + 0.1)
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(subprocess.TimeoutExpired):
        timed_run(["sleep", "10"], timeout=0.1)
