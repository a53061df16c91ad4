"""C-STORE benchmark: ours vs DCMTK vs pynetdicom, same run, loopback (`python -m bench.store`).

Sets (bench/instances.py, cached): 2,000 small (~10 KB), 500 typical (~0.5 MB) and 20 large
(~55 MB multi-frame) instances; `--quick`: 200, 50, 4. Each set is sent over 1 association
and over 4 (4 sender processes released together, each sending a quarter over its own).

Pairs, sender -> receiver, every one a separate process, default max PDU (16 KB) everywhere:
  * ours: `python -m router.net storescu --async-ops 16` -> `python -m router.net storescp --fork -od DIR`
    (a process per association, as DCMTK's storescp below; our storescu proposes an asynchronous
    operations window, PS3.7 D.3.3.3: our storescp grants it, so ours -> ours pipelines its
    C-STOREs; DCMTK's storescp negotiates none, so ours -> DCMTK waits for each response as
    DCMTK's storescu does);
  * DCMTK: `storescu` -> `storescp --fork +B -pm +xa` (bit-preserving: writes the bytes as
    received; one forked child per association, so 4 associations are served at once),
    `TCP_NODELAY=1` in their environment;
  * pynetdicom: its storescu and storescp apps, TCP_NODELAY forced on (bench/pynetdicom_peer.py:
    as shipped, small instances are ~5x slower);
  ours -> ours, DCMTK -> ours, ours -> DCMTK, DCMTK -> DCMTK (the reference), pynetdicom -> pynetdicom.

Per run, a fresh receiver writes into a fresh empty folder (every receiver under the same
root, so the same file system), and:
  * time: until the last sender exits (every instance acknowledged), the receiver already
    listening; instances/s and MB/s (10^6 bytes of files sent per second) are shown net of
    the senders' start cost (the transfer) and raw (start included);
  * start cost: a Python sender spends ~0.4 s starting its interpreter and importing, more
    when four start at once on two cores, and their starts overlap their transfers, so
    subtracting a start cost measured apart would be wrong. Python senders run under
    bench/launcher.py instead: they start, import, say they are ready and wait; all are
    released at once, and the transfer is timed from the release (their start cost: first
    spawn to last ready). A DCMTK sender starts in ~0.03 s: it is timed from its spawn, and
    its start cost, measured just before each run (the same senders started together, each
    given one file and a loopback port held closed, so refused at once; median of 3), is
    subtracted;
  * receiver CPU seconds (user + system, every thread and reaped child) from the senders'
    start to their exit, and its peak RSS (the largest VmHWM of the process and its children,
    sampled; a Python receiver's includes its interpreter and imports): bench.procs.ResourceWatch;
  * the files received are counted: a run that lost any, or whose sender failed, is reported
    as FAILED with the senders' first complaints; the exit status is 1 if a pair with ours in
    it failed (a failure between two peers is theirs to fix: reported, not fatal).
Runs are interleaved (run 1 of every pair, then run 2, ...; the order rotated each run);
medians are reported. Before each run the file system is synced (`os.sync`), so the write-back of
the last run's files and of their removal is not billed to the next pair. pynetdicom -> pynetdicom runs once (its runs are 5-10x longer, steadier), again
in a later round if that run failed (its storescp sometimes leaves one of four associations without
a response for 30 s; the failure is reported all the same). Targets, printed, not asserted: ours -> ours >= DCMTK -> DCMTK and
DCMTK -> ours >= 0.9 x DCMTK -> DCMTK, on the net figures.

`--floor` adds DCMTK's storescu -> bench/floor_scp.py (our storescp whose data phase is one plain
loop, no layers): how fast a Python receiver doing the same work can be, on the same machine and
run; with `--out-root /dev/shm/...` the file system is out of the picture too.

`python -m bench.store --profile [--quick] [--kinds ...]` profiles our storescp instead (cProfile,
every association thread) receiving each set from DCMTK's storescu.
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.echo import DCMTK_ENV, PEER_SCRIPT, environment
from bench.instances import CACHE, InstanceSet, instance_set
from bench.procs import LOOPBACK, ClosedPort, Peers, ResourceWatch, Usage, free_port, timed_parallel
from bench.profiled_scp import format_stats
from bench.store_report import group_report, preamble, summary
from router.net.received import PART_SUFFIX  # our receiver's file while a data set arrives or is saved
from tests.interop.store_data import LARGE, SMALL, TYPICAL

ROOT = Path(__file__).resolve().parents[1]
PROFILED_SCP = "bench.profiled_scp"  # run with -m: as a script, bench/router.py would shadow the router package
RECEIVED = CACHE / "received"
SCP_TITLE = "STORESCP"
SCU_TITLE = "BENCHSCU"
COMPLAINTS = ("W:", "E:", "F:")  # how our apps, DCMTK's and pynetdicom's start a warning, error or fatal line

FULL = {SMALL: 2000, TYPICAL: 500, LARGE: 20}
QUICK = {SMALL: 200, TYPICAL: 50, LARGE: 4}  # at least one instance per parallel sender
ASSOCIATIONS = (1, 4)
OUR_WINDOW = 16  # our storescu proposes an asynchronous operations window; only our storescp grants one
START_COST_REPEATS = 3
SLOWEST_RATE = 5_000_000  # bytes/s: a run slower than this (plus a minute) is stopped as hung


@dataclass(frozen=True)
class Peer:
    """One implementation's sender and receiver command lines."""

    name: str
    scu: Callable[[int, Sequence[Path]], list[str]] | None  # None: a receiver only
    scp: Callable[[int, Path], list[str]]
    env: Mapping[str, str] | None = None
    held: bool = False  # its sender runs under bench/launcher.py: started, then released


def _ours_scu(port: int, files: Sequence[Path]) -> list[str]:
    return [sys.executable, "-m", "bench.launcher", "router.net.apps.storescu", LOOPBACK, str(port), *map(str, files),
            "-aet", SCU_TITLE, "-aec", SCP_TITLE, "--async-ops", str(OUR_WINDOW)]


def _ours_scp_options(out: Path) -> list[str]:
    return ["-q", "-ba", LOOPBACK, "-aet", SCP_TITLE, "-od", str(out)]


def _ours_scp(port: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "router.net", "storescp", str(port), "--fork", *_ours_scp_options(out)]


def _floor_scp(port: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "bench.floor_scp", str(port), *_ours_scp_options(out)]


def _dcmtk_scu(port: int, files: Sequence[Path]) -> list[str]:
    return ["storescu", "-aet", SCU_TITLE, "-aec", SCP_TITLE, LOOPBACK, str(port), *map(str, files)]


def _dcmtk_scp(port: int, out: Path) -> list[str]:
    return ["storescp", "--fork", "+B", "-pm", "+xa", "-aet", SCP_TITLE, "-od", str(out), str(port)]


def _pynetdicom_scu(port: int, files: Sequence[Path]) -> list[str]:
    return [sys.executable, "-m", "bench.launcher", "--nodelay", "pynetdicom.apps.storescu.storescu", LOOPBACK,
            str(port), *map(str, files), "-aet", SCU_TITLE, "-aec", SCP_TITLE]


def _pynetdicom_scp(port: int, out: Path) -> list[str]:
    return [sys.executable, str(PEER_SCRIPT), "app", "storescp", "--nodelay", str(port), "-q", "-ba", LOOPBACK,
            "-aet", SCP_TITLE, "-od", str(out)]


OURS = Peer("ours", _ours_scu, _ours_scp, held=True)
DCMTK = Peer("DCMTK", _dcmtk_scu, _dcmtk_scp, DCMTK_ENV)
PYNETDICOM = Peer("pynetdicom", _pynetdicom_scu, _pynetdicom_scp, held=True)
FLOOR = Peer("Python floor", None, _floor_scp)  # bench/floor_scp.py: our storescp without its layers


@dataclass(frozen=True)
class Pair:
    sender: Peer
    receiver: Peer
    max_runs: int | None = None  # fewer runs than asked for a slow reference pair

    @property
    def label(self) -> str:
        return f"{self.sender.name} -> {self.receiver.name}"

    @property
    def involves_ours(self) -> bool:
        return OURS in (self.sender, self.receiver)


PAIRS = (Pair(OURS, OURS), Pair(DCMTK, OURS), Pair(OURS, DCMTK), Pair(DCMTK, DCMTK),
         Pair(PYNETDICOM, PYNETDICOM, max_runs=1))  # 5-10x slower: one run is long enough, and half the time
FLOOR_PAIR = Pair(DCMTK, FLOOR)  # with --floor


@dataclass(frozen=True)
class Run:
    """One transfer: its time with the senders' start (`wall`) and that start, and what the receiver used."""

    wall: float
    start_cost: float
    receiver: Usage

    @property
    def net(self) -> float:
        return self.wall - self.start_cost


@dataclass
class Cell:
    """One pair sending one set over `associations` associations: its runs and failures."""

    pair: Pair
    instances: InstanceSet
    associations: int
    runs: list[Run] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def median(self, figure: Callable[[Run], float]) -> float:
        return statistics.median(figure(run) for run in self.runs) if self.runs else float("nan")

    @property
    def wall(self) -> float:
        return self.median(lambda run: run.wall)

    @property
    def net(self) -> float:
        net = self.median(lambda run: run.net)
        return net if net > 0 else float("nan")

    def rates(self, seconds: float) -> tuple[float, float]:
        """(instances/s, bytes/s) of the whole set sent in `seconds`."""
        return self.instances.count / seconds, self.instances.total_bytes / seconds


def count_received(folder: Path) -> int:
    """Complete files in `folder` (a spool file still being written is not one)."""
    return sum(1 for entry in os.scandir(folder) if entry.is_file() and not entry.name.endswith(PART_SUFFIX))


def first_complaints(log: str, count: int = 3) -> str:
    """The first warning and error lines of an app's output ("W:", "E:", "F:" in all three), else its tail."""
    lines = [line for line in log.splitlines() if line[:2] in COMPLAINTS]
    return " / ".join(lines[:count]) if lines else log[-200:].strip()


def run_timeout(instances: InstanceSet) -> float:
    return 60.0 + instances.total_bytes / SLOWEST_RATE


def start_cost(cell: Cell, closed_port: int, logdir: Path, repeats: int) -> float:
    """Seconds the cell's (not held) senders, started together, take to start and give up on a
    closed port (median of `repeats`)."""
    sender = cell.pair.sender
    argvs = [sender.scu(closed_port, part[:1]) for part in cell.instances.quarters(cell.associations)]
    return statistics.median(timed_parallel(argvs, logdir, sender.env, cwd=ROOT).run for _ in range(repeats))


def run_once(cell: Cell, peers: Peers, closed_port: int, out_root: Path, start_repeats: int) -> None:
    """One transfer of the cell's set into a fresh folder; appends a Run or a failure to `cell`."""
    os.sync()  # the last run's files and their removal are written back now, not during this run
    out = Path(tempfile.mkdtemp(prefix="received-", dir=out_root))
    try:
        cost = None if cell.pair.sender.held else start_cost(cell, closed_port, peers.workdir, start_repeats)
        cell.runs.append(_transfer(cell, peers, out, peers.workdir, cost))
    except (OSError, RuntimeError) as exc:
        cell.failures.append(str(exc))
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _transfer(cell: Cell, peers: Peers, out: Path, logdir: Path, cost: float | None) -> Run:
    """Start a receiver writing into `out`, time the senders, count what arrived, end the receiver.
    `cost`: the senders' start cost measured apart (None: they are held, and it is measured here)."""
    receiver, sender, instances = cell.pair.receiver, cell.pair.sender, cell.instances
    port = free_port()
    scp = peers.start(f"{receiver.name}-storescp", receiver.scp(port, out), port, env=receiver.env, cwd=ROOT)
    watch = ResourceWatch(scp.pid).start()
    try:
        argvs = [sender.scu(port, part) for part in instances.quarters(cell.associations)]
        timing = timed_parallel(argvs, logdir, sender.env, run_timeout(instances), sender.held, ROOT)
        received = count_received(out)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}; receiver log: {peers.log_of(scp)[-500:]}") from exc
    finally:
        usage = watch.stop()
        peers.stop(scp)
    if received != instances.count or any(timing.codes):
        complaints = [first_complaints((logdir / f"client-{index}.log").read_text(errors="replace"))
                      for index in range(len(argvs))]
        raise RuntimeError(f"received {received} of {instances.count} files; sender exit codes {list(timing.codes)}; "
                           f"senders said: {' | '.join(filter(None, complaints))}; "
                           f"receiver said: {first_complaints(peers.log_of(scp))}")
    if cost is None:
        return Run(timing.start + timing.run, timing.start, usage)
    return Run(timing.run, cost, usage)


def measure(pairs: Sequence[Pair], sets: Sequence[InstanceSet], associations: Sequence[int], runs: int,
            out_root: Path = RECEIVED, start_repeats: int = START_COST_REPEATS,
            on_group: Callable[[list[Cell]], None] | None = None) -> list[Cell]:
    """Every pair on every set and association count, `runs` times, interleaved; `on_group` is
    called with the cells of each set and association count as soon as they are measured."""
    too_small = [(s.kind, s.count) for s in sets if s.count < max(associations)]
    if too_small:
        raise ValueError(f"sets {too_small} have fewer instances than senders ({max(associations)})")
    out_root.mkdir(parents=True, exist_ok=True)
    cells = []
    with Peers() as peers, ClosedPort() as closed:
        for instances in sets:
            for count in associations:
                row = [Cell(pair, instances, count) for pair in pairs]
                for run in range(runs):
                    for cell in row[run % len(row):] + row[: run % len(row)]:
                        if _wants_another_run(cell):
                            run_once(cell, peers, closed.port, out_root, start_repeats)
                cells += row
                if on_group is not None:
                    on_group(row)
    return cells


def _wants_another_run(cell: Cell) -> bool:
    """A pair is run in every round; a pair measured fewer times (`max_runs`: pynetdicom, whose runs
    are long and steady) until it has that many runs, so that one failed run of it (reported all the
    same) is tried again in a later round instead of leaving its cell empty, as often as it was to run."""
    if cell.pair.max_runs is None:
        return True
    return len(cell.runs) < cell.pair.max_runs and len(cell.failures) <= cell.pair.max_runs  # not forever


def available_pairs(floor: bool = False) -> list[Pair]:
    """The pairs whose peers are installed (and the floor pair if asked); the others are named on stderr."""
    missing = set()
    if not (shutil.which("storescu") and shutil.which("storescp")):
        missing.add(DCMTK.name)
    try:
        import pynetdicom  # noqa: F401  (a dev extra: only checked for here, run in its own processes)
    except ImportError:
        missing.add(PYNETDICOM.name)
    if missing:
        print(f"not installed, skipped: {', '.join(sorted(missing))} (`make peers`, pip install -e '.[dev]')", file=sys.stderr)
    pairs = [*PAIRS, FLOOR_PAIR] if floor else PAIRS
    return [pair for pair in pairs if not {pair.sender.name, pair.receiver.name} & missing]


def file_creation_rate(folder: Path, count: int = 500, size: int = 10_000) -> float:
    """Files/s of writing `count` files of `size` bytes into a fresh folder under `folder`: what a
    receiver pays per instance on this file system before any DICOM."""
    target = Path(tempfile.mkdtemp(prefix="files-", dir=folder))
    data = os.urandom(size)
    try:
        start = time.perf_counter()
        for index in range(count):
            with open(target / f"{index}.dcm", "wb") as file:
                file.write(data)
        return count / (time.perf_counter() - start)
    finally:
        shutil.rmtree(target, ignore_errors=True)


def file_system(path: Path) -> str:
    """The file system `path` lives on, as /proc/mounts names it (type and device)."""
    resolved, best = str(path.resolve()), ("?", "?", "")
    for line in Path("/proc/mounts").read_text().splitlines():
        device, mount, kind = line.split()[:3]
        if (resolved == mount or resolved.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best[2]):
            best = (kind, device, mount)
    return f"{best[0]} on {best[1]}"


# ---- profiling ------------------------------------------------------------------------------
def profile_ours(sets: Sequence[InstanceSet], top: int = 30) -> str:
    """cProfile of our storescp (every association thread) receiving each set from DCMTK's storescu
    (a C sender: the profile is the receiver's)."""
    sender = DCMTK if shutil.which("storescu") else OURS
    out = []
    with Peers() as peers:  # its work folder (removed on exit, whatever happens) takes the files and profiles
        for instances in sets:
            port, prof = free_port(), peers.workdir / f"{instances.kind}.prof"
            folder = peers.workdir / f"received-{instances.kind}"
            folder.mkdir()
            argv = [sys.executable, "-m", PROFILED_SCP, str(prof), str(port), "storescp", *_ours_scp_options(folder)]
            scp = peers.start(f"profiled-storescp-{instances.kind}", argv, port, cwd=ROOT)
            timing = timed_parallel([sender.scu(port, instances.files)], peers.workdir, sender.env,
                                    run_timeout(instances) * 10, sender.held, ROOT)
            received = count_received(folder)
            peers.stop(scp, grace=30.0)
            title = (f"our storescp receiving {instances.count} {instances.kind} from {sender.name} "
                     f"({instances.count / timing.run:,.0f} instances/s under cProfile, {received} received, "
                     f"exit {list(timing.codes)})")
            out.append(format_stats(pstats.Stats(str(prof)), title, top) if prof.exists()
                       else f"the profiled storescp left no profile:\n{peers.log_of(scp)}")
    return "\n".join(out)


# ---- main -----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"smaller sets for development: {QUICK}")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is reported")
    parser.add_argument("--kinds", default=",".join(FULL), help="sets to send, comma-separated")
    parser.add_argument("--associations", default=",".join(map(str, ASSOCIATIONS)), help="association counts")
    parser.add_argument("--out-root", type=Path, default=RECEIVED, help="where receivers write (one fresh folder per run)")
    parser.add_argument("--profile", action="store_true", help="only profile our storescp receiving each set")
    parser.add_argument("--floor", action="store_true",
                        help="also DCMTK's storescu -> bench/floor_scp.py, our storescp without its layers "
                             "(it keeps each data set in memory: compare on small and typical sets)")
    args = parser.parse_args(argv)

    counts = QUICK if args.quick else FULL
    kinds = args.kinds.split(",")
    sets = [instance_set(kind, counts[kind]) for kind in kinds]
    if args.profile:
        print(profile_ours(sets))
        return 0
    print(environment(), flush=True)
    args.out_root.mkdir(parents=True, exist_ok=True)
    where = (f"receivers write under {args.out_root} ({file_system(args.out_root)}); writing 10 KB files there "
             f"directly: {file_creation_rate(args.out_root):,.0f} files/s")
    print(where, flush=True)
    load, started = os.getloadavg()[0], time.perf_counter()
    print(preamble(args.runs), flush=True)
    cells = measure(available_pairs(args.floor), sets, [int(n) for n in args.associations.split(",")], args.runs, args.out_root,
                    on_group=lambda row: print("\n".join(["", *group_report(row)]), flush=True))
    print("\n".join(["", *summary(cells)]))
    print(f"total {time.perf_counter() - started:.0f} s; load average (1 min) {load:.2f} at the start, "
          f"{os.getloadavg()[0]:.2f} at the end (other work on this machine moves the figures; compare ratios)")
    return 1 if any(cell.failures for cell in cells if cell.pair.involves_ours) else 0


if __name__ == "__main__":
    sys.exit(main())
