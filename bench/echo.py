"""C-ECHO benchmark: ours vs pynetdicom vs DCMTK, same run, loopback (`python -m bench.echo`).

Two figures per pair, each the median of R runs (interleaved: run 1 of every pair, then run 2, ...):
  * round trips/s: C-ECHOs over ONE association, after a warm-up;
  * associations/s: open + one C-ECHO + release, one after another.

Pairs (every SCP is a separate process on a free 127.0.0.1 port, ended by pid):
  * ours -> ours: `python -m router.net echoscp PORT -q`; our SCU timed inside this process.
  * pynetdicom -> pynetdicom: `python -m pynetdicom echoscp PORT -q`; the SCU is timed inside
    a separate Python process (bench/pynetdicom_peer.py) so pynetdicom never loads here.
    As shipped (it never sets TCP_NODELAY) and, labelled, with TCP_NODELAY forced on
    by monkeypatching both its SCU and its SCP.
  * DCMTK: `echoscu` -> `storescp`, TCP_NODELAY=1 in both environments. A process can only
    be timed from outside, so interpreter-free arithmetic removes its start cost:
      round trips/s = (N - 1) / (t(echoscu --repeat N) - t(echoscu --repeat 1))
      (`--repeat` re-uses one association: checked against storescp -v, one
      "Association Received" for N echo requests);
      associations/s = M / (sum t(echoscu) - sum t(baseline)) over M processes, interleaved,
      with two baselines: `echoscu` to a bound-but-closed port (process + dictionary +
      network start, connection refused: everything but the association; the figure the
      ratios use) and `echoscu --version` (process start only; shown for reference).
Ratios printed against the targets: ours >= 5x pynetdicom, ours/DCMTK >= 0.5. Printed, not asserted.

A reference line times a bare Python TCP ping-pong (no DICOM) on the same machine.
`python -m bench.echo --profile` profiles both sides of ours -> ours with cProfile instead.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.metadata
import json
import math
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.floor import floor_run, measure_floor, start_floor
from bench.profiled_scp import format_stats
from bench.procs import LOOPBACK, ClosedPort, Peers, free_port, timed_run

ROOT = Path(__file__).resolve().parents[1]
PEER_SCRIPT = Path(__file__).resolve().with_name("pynetdicom_peer.py")
PROFILED_SCP = "bench.profiled_scp"  # run with -m: as a script, bench/router.py would shadow the router package
VERIFICATION = "1.2.840.10008.1.1"
DCMTK_ENV = {"TCP_NODELAY": "1"}
ECHOSCU_TIMEOUTS = ["-to", "5", "-ta", "5", "-td", "5"]

TARGET_PYNETDICOM = 5.0
TARGET_DCMTK = 0.5


@dataclass
class Result:
    """The per-run figures of one pair; `median` is what the table and ratios use."""

    label: str
    echo: list[float] = field(default_factory=list)
    assoc: list[float] = field(default_factory=list)
    echo_count: int = 0
    assoc_count: int = 0
    notes: list[str] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)
    failures: int = 0
    repeated_runs: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def echo_median(self) -> float:
        return statistics.median(self.echo)

    @property
    def assoc_median(self) -> float:
        return statistics.median(self.assoc)


# ---- ours -------------------------------------------------------------------

def _ours_scp(peers: Peers) -> int:
    port = free_port()
    peers.start("ours-echoscp", [sys.executable, "-m", "router.net", "echoscp", str(port), "-q"], port, cwd=ROOT)
    return port


def _ours_ae():
    from router.net import AE

    ae = AE("BENCHSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10.0
    ae.add_requested_context(VERIFICATION)
    return ae


def _ok(status) -> bool:
    return getattr(status, "Status", None) == 0


def _ours_echo_run(ae, port: int, echoes: int, warmup: int, profiler: cProfile.Profile | None = None) -> tuple[float, int]:
    assoc = ae.associate(LOOPBACK, port)
    if not assoc.is_established:
        raise RuntimeError("ours: the association for the round-trip run was not established")
    try:
        for _ in range(warmup):
            assoc.send_c_echo()
        failures = 0
        if profiler is not None:
            profiler.enable()
        start = time.perf_counter()
        for _ in range(echoes):
            if not _ok(assoc.send_c_echo()):
                failures += 1
        elapsed = time.perf_counter() - start
        if profiler is not None:
            profiler.disable()
    finally:
        assoc.release()
    return echoes / elapsed, failures


def _ours_assoc_run(ae, port: int, assocs: int, profiler: cProfile.Profile | None = None) -> tuple[float, int]:
    failures = 0
    if profiler is not None:
        profiler.enable()
    start = time.perf_counter()
    for _ in range(assocs):
        assoc = ae.associate(LOOPBACK, port)
        if assoc.is_established:
            if not _ok(assoc.send_c_echo()):
                failures += 1
            assoc.release()
        else:
            failures += 1
    elapsed = time.perf_counter() - start
    if profiler is not None:
        profiler.disable()
    return assocs / elapsed, failures


def _repeated(result: Result, run, *args) -> tuple[float, int]:
    """A run whose association is lost midway is repeated (at most twice), counted and reported."""
    for attempt in range(3):
        try:
            return run(*args)
        except RuntimeError as exc:
            result.errors.append(str(exc))
            if attempt == 2:
                raise
            result.repeated_runs += 1
    raise AssertionError("unreachable")


class Pair:
    """One SCU -> SCP pair: `start` its SCP (ended with `peers`), then `run_once` per run."""

    label = ""

    def result(self) -> Result:
        raise NotImplementedError

    def start(self, peers: Peers) -> None:
        raise NotImplementedError

    def run_once(self, result: Result) -> None:
        """Append one round-trip figure and one association figure to `result`."""
        raise NotImplementedError

    def finish(self, result: Result) -> None:
        """Add the notes saying how the figures were made."""


class OursPair(Pair):
    """ours -> ours: our echoscp in its own process, our SCU timed in this one."""

    label = "ours -> ours"

    def __init__(self, echoes: int, assocs: int, warmup: int = 200) -> None:
        self.echoes, self.assocs, self.warmup = echoes, assocs, warmup

    def result(self) -> Result:
        return Result(self.label, echo_count=self.echoes, assoc_count=self.assocs)

    def start(self, peers: Peers) -> None:
        self.port = _ours_scp(peers)
        self.ae = _ours_ae()
        _ours_assoc_run(self.ae, self.port, min(10, self.assocs))  # warm-up

    def run_once(self, result: Result) -> None:
        rate, failed = _repeated(result, _ours_echo_run, self.ae, self.port, self.echoes, self.warmup)
        result.echo.append(rate)
        result.failures += failed
        rate, failed = _repeated(result, _ours_assoc_run, self.ae, self.port, self.assocs)
        result.assoc.append(rate)
        result.failures += failed

    def finish(self, result: Result) -> None:
        result.notes.append(f"SCU timed in-process (perf_counter around the loop, after {self.warmup} warm-up echoes); "
                            "SCP `python -m router.net echoscp PORT -q`")


class PynetdicomPair(Pair):
    """pynetdicom -> pynetdicom: its echoscp app; its AE as SCU, timed inside a separate process."""

    def __init__(self, echoes: int, assocs: int, warmup: int = 50, nodelay: bool = False, timeout: float = 120.0) -> None:
        self.echoes, self.assocs, self.warmup, self.nodelay, self.timeout = echoes, assocs, warmup, nodelay, timeout
        self.label = "pynetdicom -> pynetdicom" + (" (TCP_NODELAY forced on)" if nodelay else " (as shipped)")

    def result(self) -> Result:
        return Result(self.label, echo_count=self.echoes, assoc_count=self.assocs)

    def start(self, peers: Peers) -> None:
        self.port = free_port()
        if self.nodelay:
            scp = [sys.executable, str(PEER_SCRIPT), "scp", "--nodelay", str(self.port), "-q"]
        else:
            scp = [sys.executable, "-m", "pynetdicom", "echoscp", str(self.port), "-q"]
        peers.start("pynetdicom-echoscp", scp, self.port)

    def run_once(self, result: Result) -> None:
        scu = [sys.executable, str(PEER_SCRIPT), "scu", LOOPBACK, str(self.port), "--echoes", str(self.echoes),
               "--assocs", str(self.assocs), "--runs", "1", "--warmup", str(self.warmup)]
        if self.nodelay:
            scu.append("--nodelay")
        done = subprocess.run(scu, check=False, capture_output=True, text=True, timeout=self.timeout, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"pynetdicom SCU failed ({done.returncode}): {done.stderr[-3000:]}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        result.echo += figures["echo"]
        result.assoc += figures["assoc"]
        result.failures += figures["echo_failures"] + figures["assoc_failures"]
        result.repeated_runs += figures["repeated_runs"]
        result.errors += figures["errors"]

    def finish(self, result: Result) -> None:
        how = ("TCP_NODELAY patched into its SCU socket and every socket its SCP accepts" if self.nodelay
               else "no TCP_NODELAY (as shipped)")
        scp = "bench/pynetdicom_peer.py scp --nodelay (its echoscp app)" if self.nodelay else "`python -m pynetdicom echoscp`"
        result.notes.append(f"SCU timed inside its own Python process (bench/pynetdicom_peer.py, {self.warmup} warm-up "
                            f"echoes); SCP {scp}; {how}")


def _echoscu(port: int, *options: str) -> list[str]:
    return ["echoscu", *ECHOSCU_TIMEOUTS, *options, LOOPBACK, str(port)]


class DcmtkPair(Pair):
    """DCMTK echoscu -> storescp with TCP_NODELAY=1; start costs removed as the module docstring says."""

    label = "DCMTK echoscu -> storescp (TCP_NODELAY=1)"

    def __init__(self, echoes: int, assocs: int) -> None:
        self.echoes, self.assocs = echoes, assocs

    def result(self) -> Result:
        return Result(self.label, echo_count=self.echoes, assoc_count=self.assocs,
                      extra={"raw processes/s": [], "net of --version": []})

    def start(self, peers: Peers) -> None:
        closed = ClosedPort()
        peers.defer(closed.close)
        self.closed_port = closed.port
        self.port = free_port()
        outdir = peers.workdir / "storescp"
        outdir.mkdir(exist_ok=True)
        peers.start("storescp", ["storescp", "-od", str(outdir), str(self.port)], self.port, env=DCMTK_ENV)
        timed_run(_echoscu(self.port), env=DCMTK_ENV)  # warm-up (page cache, dictionary)

    def run_once(self, result: Result) -> None:
        port, n = self.port, self.echoes
        singles = [timed_run(_echoscu(port), env=DCMTK_ENV) for _ in range(3)]
        many = timed_run(_echoscu(port, "--repeat", str(n)), env=DCMTK_ENV, timeout=120.0)
        singles += [timed_run(_echoscu(port), env=DCMTK_ENV) for _ in range(2)]
        one = statistics.median(singles)
        result.echo.append((n - 1) / (many - one) if many > one else float("nan"))

        full = refused = version = 0.0
        for _ in range(self.assocs):
            full += timed_run(_echoscu(port), env=DCMTK_ENV)
            refused += timed_run(_echoscu(self.closed_port, "-q"), env=DCMTK_ENV, check=False)
            version += timed_run(["echoscu", "--version"], env=DCMTK_ENV)
        result.assoc.append(self.assocs / (full - refused) if full > refused else float("nan"))
        result.extra["raw processes/s"].append(self.assocs / full)
        result.extra["net of --version"].append(self.assocs / (full - version) if full > version else float("nan"))

    def finish(self, result: Result) -> None:
        raw, net_version = result.extra["raw processes/s"], result.extra["net of --version"]
        result.notes += [
            (f"round trips/s = (N-1) / (t(echoscu --repeat N) - t(echoscu, 1 echo)), N={self.echoes}; "
             "t(1) = median of 5 processes; --repeat re-uses one association"),
            (f"associations/s = M / (sum t(echoscu) - sum t(echoscu to a closed port)), M={self.assocs} processes each, "
             "interleaved; removes process + dictionary + network start"),
            (f"  for reference: raw echoscu processes/s {_fmt(statistics.median(raw))} {_runs(raw)}; "
             f"net of `echoscu --version` (process start only) {_fmt(statistics.median(net_version))}/s {_runs(net_version)}"),
        ]


def measure(pairs: list[Pair], runs: int, floor_count: int = 0) -> tuple[list[Result], list[float]]:
    """Start every pair's SCP, then do the runs interleaved (run 1 of every pair, then run 2, ...,
    the order rotated each run) so that load from elsewhere on the machine spreads over all pairs."""
    results = [pair.result() for pair in pairs]
    floor: list[float] = []
    with Peers() as peers:
        for pair in pairs:
            pair.start(peers)
        floor_port = start_floor(peers) if floor_count else None
        order = list(range(len(pairs)))
        for run in range(runs):
            for index in order[run % len(order):] + order[: run % len(order)]:
                pairs[index].run_once(results[index])
            if floor_port is not None:
                floor.append(floor_run(floor_port, floor_count))
    for pair, result in zip(pairs, results):
        pair.finish(result)
    return results, floor


def measure_ours(echoes: int, assocs: int, runs: int = 3, warmup: int = 200) -> Result:
    return measure([OursPair(echoes, assocs, warmup)], runs)[0][0]


def measure_pynetdicom(echoes: int, assocs: int, runs: int = 3, warmup: int = 50, nodelay: bool = False,
                       timeout: float = 120.0) -> Result:
    return measure([PynetdicomPair(echoes, assocs, warmup, nodelay, timeout)], runs)[0][0]


def measure_dcmtk(echoes: int, assocs: int, runs: int = 3) -> Result:
    return measure([DcmtkPair(echoes, assocs)], runs)[0][0]


# ---- report -----------------------------------------------------------------

def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.0f}"


def _runs(values: list[float]) -> str:
    return "[" + ", ".join(_fmt(v) for v in values) + "]"


def _verdict(ratio: float, target: float) -> str:
    if math.isnan(ratio):
        return "n/a"
    return "met" if ratio >= target else "MISSED"


def report(results: list[Result], runs: int, elapsed: float, floor: list[float] | None = None) -> str:
    lines = [f"C-ECHO benchmark on {LOOPBACK}: median of {runs} interleaved run(s), each run's figure in brackets", ""]
    head = f"{'pair':<52} {'round trips/s, 1 association':<34} {'associations/s (open+echo+release)':<34}"
    lines += [head, "-" * len(head)]
    for r in results:
        echo = f"{_fmt(r.echo_median):>7} {_runs(r.echo)}  n={r.echo_count}"
        assoc = f"{_fmt(r.assoc_median):>7} {_runs(r.assoc)}  n={r.assoc_count}"
        lines.append(f"{r.label:<52} {echo:<34} {assoc:<34}")
    if floor:
        lines.append(f"{'reference, no DICOM: bare Python TCP ping-pong':<52} {_fmt(statistics.median(floor)):>7} {_runs(floor)}"
                     "  (80-byte request, 96-byte reply, 1 connection, bench/floor.py)")
    lines.append("")
    for r in results:
        lines.append(f"{r.label}:")
        lines += [f"  {note}" for note in r.notes]
        if r.failures:
            lines.append(f"  WARNING: {r.failures} echo(es)/association(s) failed during the timed loops")
        if r.repeated_runs:
            lines.append(f"  WARNING: {r.repeated_runs} run(s) lost their association midway and were repeated: "
                         f"{'; '.join(sorted(set(r.errors)))[:300]}")
    ours = next((r for r in results if r.label.startswith("ours")), None)
    if ours is not None:
        lines += ["", "ratios (ours / peer; median figures)"]
        for r in results:
            if r is ours:
                continue
            target = TARGET_DCMTK if r.label.startswith("DCMTK") else TARGET_PYNETDICOM
            echo_ratio = ours.echo_median / r.echo_median
            assoc_ratio = ours.assoc_median / r.assoc_median
            mark = "x" if target > 1 else ""
            lines.append(
                f"  ours / {r.label:<48} round trips {echo_ratio:6.2f}{mark or ' '} (target >= {target:g}{mark}: "
                f"{_verdict(echo_ratio, target)})   associations {assoc_ratio:6.2f}{mark or ' '} "
                f"(target >= {target:g}{mark}: {_verdict(assoc_ratio, target)})"
            )
    lines += ["", f"total benchmark time {elapsed:.1f} s"]
    return "\n".join(lines)


def environment() -> str:
    try:
        pyn = importlib.metadata.version("pynetdicom")  # metadata only: pynetdicom is not imported here
    except importlib.metadata.PackageNotFoundError:
        pyn = "not installed"
    dcmtk = "not installed"
    if shutil.which("echoscu"):
        out = subprocess.run(["echoscu", "--version"], check=False, capture_output=True, text=True, timeout=10).stdout
        dcmtk = next((line.strip("$ ").removeprefix("dcmtk: ") for line in out.splitlines() if "echoscu" in line),
                     out.strip()[:40])
    return (f"Python {platform.python_version()} | pynetdicom {pyn} | DCMTK {dcmtk} | "
            f"{os.cpu_count()} CPU(s) | {platform.platform()}")


# ---- profiling --------------------------------------------------------------

def profile_ours(echoes: int, assocs: int, top: int = 25) -> str:
    """cProfile of both sides of ours -> ours: our SCU loops here, our SCP (every thread) in its process."""
    out = [f"reference: bare Python TCP ping-pong {measure_floor(echoes):,.0f} round trips/s (bench/floor.py)",
           f"unprofiled ours -> ours: {_ours_unprofiled(echoes)}"]
    with Peers() as peers:
        port = free_port()
        prof_file = peers.workdir / "scp.prof"
        scp = peers.start("ours-echoscp-profiled", [sys.executable, "-m", PROFILED_SCP, str(prof_file), str(port)], port, cwd=ROOT)
        ae = _ours_ae()
        rounds = cProfile.Profile()
        rate, _ = _ours_echo_run(ae, port, echoes, 200, rounds)
        out.append(format_stats(pstats.Stats(rounds), f"SCU, round trips ({rate:,.0f}/s under cProfile, both sides profiled)", top))
        setups = cProfile.Profile()
        rate, _ = _ours_assoc_run(ae, port, assocs, setups)
        out.append(format_stats(pstats.Stats(setups), f"SCU, associations ({rate:,.0f}/s under cProfile, both sides profiled)", top))
        peers.stop(scp, grace=20.0)
        if prof_file.exists():
            out.append(format_stats(pstats.Stats(str(prof_file)), "SCP, all its association threads, round trips + associations", top))
        else:
            out.append(f"the profiled SCP left no profile:\n{peers.log_of(scp)}")
    return "\n".join(out)


def _ours_unprofiled(echoes: int) -> str:
    with Peers() as peers:
        port = _ours_scp(peers)
        rate, _ = _ours_echo_run(_ours_ae(), port, echoes, 200)
    return f"{rate:,.0f} round trips/s"


# ---- main -------------------------------------------------------------------

def run_all(echoes: int, assocs: int, pyn_echoes: int, pyn_assocs: int, dcmtk_assocs: int, runs: int,
            nodelay: bool = True) -> tuple[list[Result], list[float]]:
    pairs: list[Pair] = [OursPair(echoes, assocs), PynetdicomPair(pyn_echoes, pyn_assocs)]
    if nodelay:
        pairs.append(PynetdicomPair(pyn_echoes, pyn_assocs, nodelay=True))
    if shutil.which("echoscu") and shutil.which("storescp"):
        pairs.append(DcmtkPair(echoes, dcmtk_assocs))
    else:
        print("DCMTK (echoscu, storescp) not found: `make peers` installs it; skipping DCMTK", file=sys.stderr)
    return measure(pairs, runs, floor_count=echoes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.echo", description=__doc__.splitlines()[0])
    parser.add_argument("--echoes", type=int, default=5000, help="C-ECHOs per round-trip run (ours, DCMTK)")
    parser.add_argument("--assocs", type=int, default=300, help="associations per run (ours)")
    parser.add_argument("--pyn-echoes", type=int, default=1000, help="C-ECHOs per round-trip run (pynetdicom)")
    parser.add_argument("--pyn-assocs", type=int, default=150, help="associations per run (pynetdicom)")
    parser.add_argument("--dcmtk-assocs", type=int, default=300, help="echoscu processes per run (DCMTK)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is reported")
    parser.add_argument("--no-nodelay", action="store_true", help="skip pynetdicom with TCP_NODELAY forced on")
    parser.add_argument("--profile", action="store_true", help="only profile our SCU loops with cProfile")
    args = parser.parse_args(argv)

    if args.profile:
        print(profile_ours(args.echoes, args.assocs))
        return 0
    print(environment(), flush=True)
    started = time.perf_counter()
    load = os.getloadavg()[0]
    results, floor = run_all(args.echoes, args.assocs, args.pyn_echoes, args.pyn_assocs, args.dcmtk_assocs, args.runs,
                             nodelay=not args.no_nodelay)
    print(report(results, args.runs, time.perf_counter() - started, floor))
    print(f"load average (1 min) {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end: other work on this "
          "machine moves the figures (runs are interleaved so that it spreads over all pairs; compare ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
