"""Router benchmark: DCMTK storescu -> router -> DCMTK storescp, against the direct path (`python -m bench.router`).

Throughput, per set (bench/instances.py: 2,000 small ~10 KB and 500 typical ~0.5 MB
instances; `--quick`: 200 and 50, one run), for each route (bench/routed.py):
  * direct: `storescu` -> `storescp --fork +B` (DCMTK both sides, TCP_NODELAY=1);
  * routed: the same `storescu` -> `router run` -> the same `storescp`, with durability
    `fsync` and `none`, and 1 listener + 1 worker against 2 + 2 (each worker keeps up to 2
    associations to the destination, the config's default).
The set is sent by `SENDERS` storescu processes started together, each a share of the files
on one association (the listeners share the port: the kernel spreads the associations).
A run is timed from the senders' start to the last arrival at the destination: the newest
modification time among the files in storescp's output folder, once it holds them all
(storescp +B writes each file as the bytes come, so its last write is its arrival). Each
route has its own router (own spool and config) and its own storescp, started once per set;
runs are interleaved (run 1 of every route, then run 2, ...; the order rotated each run) and
the median is reported, with each run's figure and the spread between them: the noise of a
shared machine. Also shown: the CPU milliseconds per instance the router's listeners and its
workers used (user + system, from /proc). Target, printed, not asserted: routed with
durability `none` >= 0.7 x direct instances/s.

Then the idle latency of each routed configuration (bench/router_latency.py).

`--profile` runs the first set through a 1 + 1 router (durability none) whose listener and
worker run with every thread under cProfile (bench/profiled_scp.py's ThreadProfiles), and
prints the top functions of each.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import router_latency
from bench.echo import environment
from bench.instances import InstanceSet, instance_set
from bench.procs import Peers, free_port, timed_parallel
from bench.profiled_scp import ThreadProfiles, format_stats
from bench.routed import ROOT, STOP_GRACE, Route, RouterCpu, RouterUnderTest
from bench.store import DCMTK, DCMTK_ENV, run_timeout
from router.config import Durability
from tests.interop.store_data import SMALL, TYPICAL

FULL = {SMALL: 2000, TYPICAL: 500}
QUICK = {SMALL: 200, TYPICAL: 50}
RUNS, QUICK_RUNS = 3, 1
SENDERS = 4  # storescu processes (associations) sending a set together
PROCESS_COUNTS = (1, 2)  # listeners = workers
DURABILITIES = (Durability.FSYNC, Durability.NONE)
ROUTES = (Route(),) + tuple(Route(durability, count) for durability in DURABILITIES for count in PROCESS_COUNTS)
SETTLE = 0.05  # seconds after the last file appears, for its last write
THROUGHPUT_TARGET = 0.7  # routed (durability none) / direct
MS = 1000.0
MB = 1_000_000
PROFILE_TOP = 25
PROFILED_ROLES = {"listener": "router.listener", "worker": "workers.__main__"}


@dataclass(frozen=True)
class Run:
    seconds: float  # senders' start to the last arrival
    router_cpu: RouterCpu  # used over the run (nothing when direct)


@dataclass
class Cell:
    """One route on one set: its runs and failures."""

    route: Route
    instances: InstanceSet
    runs: list[Run] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def median(self, figure: Callable[[Run], float]) -> float:
        return statistics.median(figure(run) for run in self.runs) if self.runs else float("nan")

    @property
    def rate(self) -> float:
        return self.instances.count / self.median(lambda run: run.seconds)

    @property
    def spread(self) -> float:
        """(fastest - slowest) / median of the runs' rates: how noisy the cell was."""
        rates = [self.instances.count / run.seconds for run in self.runs]
        return (max(rates) - min(rates)) / statistics.median(rates) if len(rates) > 1 else float("nan")


# ---- throughput ----------------------------------------------------------------------------------
@dataclass
class Bench:
    """One set's cells, each with its storescp (and router), all started in `peers`."""

    peers: Peers
    instances: InstanceSet
    cells: list[Cell] = field(default_factory=list)
    outputs: dict[Route, Path] = field(default_factory=dict)
    ports: dict[Route, int] = field(default_factory=dict)
    routers: dict[Route, RouterUnderTest] = field(default_factory=dict)

    def set_up(self, routes: Sequence[Route], router_command: Callable[[Path], list[str]] | None = None) -> None:
        """A storescp per route, and a router per routed one (`router run`, or `router_command(config)`)."""
        for route in routes:
            folder = self.peers.workdir / f"{self.instances.kind}-{route.label.replace(' ', '-').replace('>', '')}"
            out = folder / "received"
            out.mkdir(parents=True)
            scp_port = free_port()
            self.peers.start(f"storescp-{scp_port}", DCMTK.scp(scp_port, out), scp_port, env=DCMTK_ENV, cwd=ROOT)
            self.outputs[route], self.ports[route] = out, scp_port
            if route.routed:
                router = RouterUnderTest(self.peers, folder / "router", route, scp_port)
                self.routers[route] = router.start(router_command(router.config) if router_command else None)
                self.ports[route] = router.port
            self.cells.append(Cell(route, self.instances))

    def run_all(self, runs: int) -> None:
        for run in range(runs):
            order = self.cells[run % len(self.cells):] + self.cells[: run % len(self.cells)]
            for cell in order:
                try:
                    cell.runs.append(self.run_once(cell.route))
                except (OSError, RuntimeError) as exc:
                    cell.failures.append(str(exc))

    def run_once(self, route: Route) -> Run:
        out, router = self.outputs[route], self.routers.get(route)
        for path in out.iterdir():
            path.unlink()
        cpu_before = router.cpu() if router else RouterCpu()
        argvs = [DCMTK.scu(self.ports[route], part) for part in self.instances.quarters(SENDERS)]
        started = time.time()
        timing = timed_parallel(argvs, self.peers.workdir, DCMTK.env, run_timeout(self.instances), cwd=ROOT)
        if any(timing.codes):
            raise RuntimeError(f"{route.label}: storescu exit codes {list(timing.codes)}")
        last = last_arrival(out, self.instances.count, started + run_timeout(self.instances))
        if router is None:
            return Run(last - started, RouterCpu())
        router.wait_idle()
        return Run(last - started, router.cpu() - cpu_before)

    def tear_down(self) -> None:
        for router in self.routers.values():
            router.stop()


def last_arrival(out: Path, count: int, deadline: float) -> float:
    """The UNIX time of the last write into `out` once it holds `count` files (RuntimeError after `deadline`)."""
    while (held := sum(1 for _ in os.scandir(out))) < count:
        if time.time() > deadline:
            raise RuntimeError(f"{held} of {count} instances arrived")
        time.sleep(0.005)
    time.sleep(SETTLE)
    return max(entry.stat().st_mtime for entry in os.scandir(out))


def _num(value: float, digits: int = 0, unit: str = "") -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}{unit}"


def throughput_report(cells: Sequence[Cell]) -> list[str]:
    instances = cells[0].instances
    each = instances.total_bytes / instances.count
    lines = [
        f"{instances.kind}: {instances.count:,} instances x {each / 1000:,.1f} KB, {SENDERS} storescu associations",
        f"{'route':<30}{'inst/s':>9}{'MB/s':>8}{'x direct':>10}{'CPU ms/inst: listeners':>24}{'workers':>9}{'spread':>8}"
        "   runs: inst/s",
    ]
    direct = next((cell for cell in cells if not cell.route.routed and cell.runs), None)
    for cell in cells:
        ratio = cell.rate / direct.rate if direct is not None else float("nan")
        per_instance = MS / instances.count if cell.route.routed else float("nan")
        listeners = cell.median(lambda run: run.router_cpu.listeners) * per_instance
        workers = cell.median(lambda run: run.router_cpu.workers) * per_instance
        rates = ", ".join(_num(instances.count / run.seconds) for run in cell.runs)
        lines.append(f"{cell.route.label:<30}{_num(cell.rate):>9}{_num(cell.rate * each / MB, 1):>8}{_num(ratio, 2):>10}"
                     f"{_num(listeners, 2):>24}{_num(workers, 2):>9}{_num(cell.spread * 100, unit='%'):>8}   [{rates}]")
        lines += [f"  FAILED: {failure}"[:1500] for failure in cell.failures]
    for cell in cells:
        if cell.route.durability is Durability.NONE and direct is not None:
            ratio = cell.rate / direct.rate
            verdict = "n/a" if math.isnan(ratio) else "met" if ratio >= THROUGHPUT_TARGET else "MISSED"
            lines.append(f"  target {cell.route.label} >= {THROUGHPUT_TARGET:g} x direct: {_num(ratio, 2)} {verdict}")
    return lines


# ---- profile ------------------------------------------------------------------------------------------
def profile_router(instances: InstanceSet) -> str:
    """The set through a 1 + 1 router (durability none) whose listener and worker run under cProfile, every thread."""
    route = Route(Durability.NONE, 1)
    with Peers() as peers:
        outputs = {role: peers.workdir / f"{role}.prof" for role in PROFILED_ROLES}
        bench = Bench(peers, instances)
        bench.set_up([route], lambda config: [
            sys.executable, "-m", "bench.router", "--profiled-router", str(config), *map(str, outputs.values()),
        ])
        run = bench.run_once(route)
        bench.tear_down()
        rate = f"{instances.count} {instances.kind} instances, {instances.count / run.seconds:,.0f} inst/s under cProfile"
        return "\n".join(
            format_stats(pstats.Stats(str(out)), f"{role} of a 1+1 router, durability none ({rate})", PROFILE_TOP)
            for role, out in outputs.items()
        )


def run_profiled(role: str, config: str, out: str) -> int:
    """One of the router's processes (index 0) with every thread under cProfile; the profile into `out`."""
    module = importlib.import_module(PROFILED_ROLES[role])
    with ThreadProfiles(caller=True) as profiles:
        code = module.main([config, "--index", "0"])
    profiles.dump(out)
    return code


def run_profiled_router(config: str, listener_out: str, worker_out: str) -> int:
    """A stand-in for `router run` of a 1 + 1 router: the listener profiled in a process of its own, the worker here."""
    listener = subprocess.Popen([sys.executable, "-m", "bench.router", "--profiled", "listener", config, listener_out])
    try:
        return run_profiled("worker", config, worker_out)
    finally:
        listener.terminate()  # the listener stops, then writes its profile
        listener.wait(STOP_GRACE)


# ---- main ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.router", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"smaller sets, one run: {QUICK}")
    parser.add_argument("--runs", type=int, default=None, help=f"runs per figure (default {RUNS}, {QUICK_RUNS} with --quick)")
    parser.add_argument("--kinds", default=",".join(FULL), help="sets to send, comma-separated")
    parser.add_argument("--profile", action="store_true", help="only profile a 1+1 router routing the first set")
    parser.add_argument("--profiled", nargs=3, metavar=("ROLE", "CONFIG", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--profiled-router", nargs=3, metavar=("CONFIG", "LISTENER_OUT", "WORKER_OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.profiled:
        return run_profiled(*args.profiled)
    if args.profiled_router:
        return run_profiled_router(*args.profiled_router)
    if not (shutil.which("storescu") and shutil.which("storescp")):
        print("DCMTK is not installed (make peers): the router benchmark needs storescu and storescp", file=sys.stderr)
        return 1
    counts = QUICK if args.quick else FULL
    runs = args.runs or (QUICK_RUNS if args.quick else RUNS)
    sets = [instance_set(kind, counts[kind]) for kind in args.kinds.split(",")]
    if args.profile:
        print(profile_router(sets[0]))
        return 0

    print(environment(), flush=True)
    print(f"router benchmark: median of {runs} interleaved run(s); storescu and storescp are DCMTK's", flush=True)
    load, started, failed = os.getloadavg(), time.perf_counter(), False
    with Peers() as peers:
        for instances in sets:
            bench = Bench(peers, instances)
            try:
                bench.set_up(ROUTES)
                bench.run_all(runs)
            finally:
                bench.tear_down()
            failed = failed or any(cell.failures for cell in bench.cells)
            print("\n".join(["", *throughput_report(bench.cells)]), flush=True)
        latency_set = instance_set(SMALL, router_latency.LATENCY_SENDS)
        measured = router_latency.measure([route for route in ROUTES if route.routed], peers, latency_set)
    failed = failed or any(isinstance(values, str) for values in measured.values())
    end = os.getloadavg()
    print("\n".join(["", *router_latency.latency_report(measured)]))
    print(f"total {time.perf_counter() - started:.0f} s; load average (1, 5 min) {load[0]:.2f}, {load[1]:.2f} at the start, "
          f"{end[0]:.2f}, {end[1]:.2f} at the end on {os.cpu_count()} CPU(s): other work on the machine moves the "
          "figures (see each cell's spread); compare the ratios")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
