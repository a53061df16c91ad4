"""C-ECHO benchmark: ours vs pynetdicom vs DCMTK, same run, loopback (`python -m bench.echo`).

Two figures per pair, each the median of R runs:
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

`python -m bench.echo --profile` profiles our SCU loops with cProfile instead.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.metadata
import json
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

from bench.procs import LOOPBACK, ClosedPort, Peers, free_port, timed_run

ROOT = Path(__file__).resolve().parents[1]
PEER_SCRIPT = Path(__file__).resolve().with_name("pynetdicom_peer.py")
VERIFICATION = "1.2.840.10008.1.1"
DCMTK_ENV = {"TCP_NODELAY": "1"}
ECHOSCU_TIMEOUTS = ["-to", "5", "-ta", "5", "-td", "5"]

ECHO_TARGET_PYNETDICOM = 5.0
ASSOC_TARGET_PYNETDICOM = 5.0
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


def measure_ours(echoes: int, assocs: int, runs: int = 3, warmup: int = 200) -> Result:
    """ours -> ours: our echoscp in its own process, our SCU timed in this one."""
    result = Result("ours -> ours", echo_count=echoes, assoc_count=assocs)
    with Peers() as peers:
        port = _ours_scp(peers)
        ae = _ours_ae()
        for _ in range(runs):
            rate, failed = _ours_echo_run(ae, port, echoes, warmup)
            result.echo.append(rate)
            result.failures += failed
        _ours_assoc_run(ae, port, min(10, assocs))  # warm-up
        for _ in range(runs):
            rate, failed = _ours_assoc_run(ae, port, assocs)
            result.assoc.append(rate)
            result.failures += failed
    result.notes.append("SCU timed in-process (time.perf_counter around the loop); SCP `python -m router.net echoscp`")
    return result


# ---- pynetdicom -------------------------------------------------------------

def measure_pynetdicom(echoes: int, assocs: int, runs: int = 3, warmup: int = 50, nodelay: bool = False,
                       timeout: float = 120.0) -> Result:
    """pynetdicom -> pynetdicom: its echoscp app, its AE as SCU timed inside a separate process."""
    label = "pynetdicom -> pynetdicom" + (" (TCP_NODELAY forced on)" if nodelay else " (as shipped)")
    result = Result(label, echo_count=echoes, assoc_count=assocs)
    with Peers() as peers:
        port = free_port()
        if nodelay:
            scp = [sys.executable, str(PEER_SCRIPT), "scp", "--nodelay", str(port), "-q"]
        else:
            scp = [sys.executable, "-m", "pynetdicom", "echoscp", str(port), "-q"]
        peers.start("pynetdicom-echoscp", scp, port)
        scu = [sys.executable, str(PEER_SCRIPT), "scu", LOOPBACK, str(port), "--echoes", str(echoes),
               "--assocs", str(assocs), "--runs", str(runs), "--warmup", str(warmup)] + (["--nodelay"] if nodelay else [])
        done = subprocess.run(scu, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"pynetdicom SCU failed ({done.returncode}): {done.stderr[-3000:]}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
    result.echo, result.assoc = figures["echo"], figures["assoc"]
    result.failures = figures["echo_failures"] + figures["assoc_failures"]
    how = "TCP_NODELAY patched into its SCU socket and every socket its SCP accepts" if nodelay else "no TCP_NODELAY (as shipped)"
    result.notes.append(f"SCU timed inside its own Python process (bench/pynetdicom_peer.py); {how}")
    return result


# ---- DCMTK ------------------------------------------------------------------

def _echoscu(port: int, *options: str) -> list[str]:
    return ["echoscu", *ECHOSCU_TIMEOUTS, *options, LOOPBACK, str(port)]


def measure_dcmtk(echoes: int, assocs: int, runs: int = 3) -> Result:
    """DCMTK echoscu -> storescp with TCP_NODELAY=1; start costs removed as the module docstring says."""
    result = Result("DCMTK echoscu -> storescp (TCP_NODELAY=1)", echo_count=echoes, assoc_count=assocs)
    raw: list[float] = []
    net_version: list[float] = []
    with Peers() as peers, ClosedPort() as closed:
        port = free_port()
        outdir = peers.workdir / "storescp"
        outdir.mkdir()
        peers.start("storescp", ["storescp", "-od", str(outdir), str(port)], port, env=DCMTK_ENV)
        timed_run(_echoscu(port), env=DCMTK_ENV)  # warm-up (page cache, dictionary)

        for _ in range(runs):
            singles = [timed_run(_echoscu(port), env=DCMTK_ENV) for _ in range(3)]
            many = timed_run(_echoscu(port, "--repeat", str(echoes)), env=DCMTK_ENV, timeout=120.0)
            singles += [timed_run(_echoscu(port), env=DCMTK_ENV) for _ in range(2)]
            one = statistics.median(singles)
            result.echo.append((echoes - 1) / (many - one) if many > one else float("nan"))

        for _ in range(runs):
            full = refused = version = 0.0
            for _ in range(assocs):
                full += timed_run(_echoscu(port), env=DCMTK_ENV)
                refused += timed_run(_echoscu(closed.port, "-q"), env=DCMTK_ENV, check=False)
                version += timed_run(["echoscu", "--version"], env=DCMTK_ENV)
            raw.append(assocs / full)
            result.assoc.append(assocs / (full - refused) if full > refused else float("nan"))
            net_version.append(assocs / (full - version) if full > version else float("nan"))
    result.extra = {"raw processes/s": raw, "net of --version": net_version}
    result.notes += [
        f"round trips/s = (N-1) / (t(echoscu --repeat N) - t(echoscu, 1 echo)), N={echoes}; "
        "t(1) = median of 5 processes; --repeat uses one association",
        f"associations/s = M / (sum t(echoscu) - sum t(echoscu to a closed port)), M={assocs} processes each, "
        "interleaved: removes process + dictionary + network start",
        f"  for reference: raw echoscu processes/s {statistics.median(raw):,.0f}; "
        f"net of `echoscu --version` start only {statistics.median(net_version):,.0f}/s",
    ]
    return result


# ---- report -----------------------------------------------------------------

def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value == value else "n/a"


def _runs(values: list[float]) -> str:
    return "[" + ", ".join(_fmt(v) for v in values) + "]"


def _verdict(ratio: float, target: float) -> str:
    if ratio != ratio:
        return "n/a"
    return "met" if ratio >= target else "MISSED"


def report(results: list[Result], runs: int, elapsed: float) -> str:
    lines = [f"C-ECHO benchmark on {LOOPBACK}: median of {runs} run(s), each run's figure in brackets", ""]
    head = f"{'pair':<52} {'round trips/s, 1 association':<34} {'associations/s (open+echo+release)':<34}"
    lines += [head, "-" * len(head)]
    for r in results:
        echo = f"{_fmt(r.echo_median):>7} {_runs(r.echo)}  n={r.echo_count}"
        assoc = f"{_fmt(r.assoc_median):>7} {_runs(r.assoc)}  n={r.assoc_count}"
        lines.append(f"{r.label:<52} {echo:<34} {assoc:<34}")
    lines.append("")
    for r in results:
        lines.append(f"{r.label}:")
        lines += [f"  {note}" for note in r.notes]
        if r.failures:
            lines.append(f"  WARNING: {r.failures} echo(es)/association(s) failed during the timed loops")
    ours = next((r for r in results if r.label.startswith("ours")), None)
    if ours is not None:
        lines += ["", "ratios (ours / peer; median figures)"]
        for r in results:
            if r is ours:
                continue
            target = TARGET_DCMTK if r.label.startswith("DCMTK") else ECHO_TARGET_PYNETDICOM
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
        out = subprocess.run(["echoscu", "--version"], capture_output=True, text=True, timeout=10).stdout
        dcmtk = next((line.strip("$ ") for line in out.splitlines() if "echoscu" in line), out.strip()[:40])
    return (f"Python {platform.python_version()} | pynetdicom {pyn} | DCMTK {dcmtk} | "
            f"{os.cpu_count()} CPU(s) | {platform.platform()}")


# ---- profiling --------------------------------------------------------------

def profile_ours(echoes: int, assocs: int, top: int = 25) -> str:
    """cProfile of our SCU loops (round trips over one association, then associations)."""
    out = []
    with Peers() as peers:
        port = _ours_scp(peers)
        ae = _ours_ae()
        for name, run in (("round trips", lambda p: _ours_echo_run(ae, port, echoes, 200, p)),
                          ("associations", lambda p: _ours_assoc_run(ae, port, assocs, p))):
            profiler = cProfile.Profile()
            rate, _ = run(profiler)
            stats = pstats.Stats(profiler)
            import io

            buffer = io.StringIO()
            stats.stream = buffer
            stats.sort_stats("tottime").print_stats(top)
            out.append(f"==== ours {name}: {rate:,.0f}/s under cProfile, top {top} by own time ====\n{buffer.getvalue()}")
            buffer = io.StringIO()
            stats.stream = buffer
            stats.sort_stats("cumulative").print_stats(top)
            out.append(f"==== ours {name}: top {top} by cumulative time ====\n{buffer.getvalue()}")
    return "\n".join(out)


# ---- main -------------------------------------------------------------------

def run_all(echoes: int, assocs: int, pyn_echoes: int, pyn_assocs: int, dcmtk_assocs: int, runs: int,
            nodelay: bool = True) -> list[Result]:
    results = [measure_ours(echoes, assocs, runs)]
    results.append(measure_pynetdicom(pyn_echoes, pyn_assocs, runs))
    if nodelay:
        results.append(measure_pynetdicom(pyn_echoes, pyn_assocs, runs, nodelay=True))
    if shutil.which("echoscu") and shutil.which("storescp"):
        results.append(measure_dcmtk(echoes, dcmtk_assocs, runs))
    else:
        print("DCMTK (echoscu, storescp) not found: `make peers` installs it; skipping DCMTK", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.echo", description=__doc__.splitlines()[0])
    parser.add_argument("--echoes", type=int, default=5000, help="C-ECHOs per round-trip run (ours, DCMTK)")
    parser.add_argument("--assocs", type=int, default=300, help="associations per run (ours)")
    parser.add_argument("--pyn-echoes", type=int, default=1000, help="C-ECHOs per round-trip run (pynetdicom)")
    parser.add_argument("--pyn-assocs", type=int, default=150, help="associations per run (pynetdicom)")
    parser.add_argument("--dcmtk-assocs", type=int, default=200, help="echoscu processes per run (DCMTK)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is reported")
    parser.add_argument("--no-nodelay", action="store_true", help="skip pynetdicom with TCP_NODELAY forced on")
    parser.add_argument("--profile", action="store_true", help="only profile our SCU loops with cProfile")
    args = parser.parse_args(argv)

    if args.profile:
        print(profile_ours(args.echoes, args.assocs))
        return 0
    print(environment(), flush=True)
    started = time.perf_counter()
    results = run_all(args.echoes, args.assocs, args.pyn_echoes, args.pyn_assocs, args.dcmtk_assocs, args.runs,
                      nodelay=not args.no_nodelay)
    print(report(results, args.runs, time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
