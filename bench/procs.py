"""Process plumbing for the benchmarks: free ports, peers started and always ended by pid,
client processes timed, and a server's CPU time and peak memory read from the kernel.

Peers listen on a free loopback port; readiness is read from /proc/net/tcp
(LISTEN state) instead of probing with connections, because pynetdicom's
echoscp counts short idle probe connections against its association limit.

A server's resource use over a transfer (`ResourceWatch`): CPU seconds from /proc/PID/stat
(every thread, plus the children it has reaped, as a forking DCMTK storescp does), read
before and after; peak resident set from VmHWM in /proc/PID/status of the process and of
its children, sampled while it runs and once at the end. (wait4's ru_maxrss would not do:
a child's counts the memory of the Python process that forked it before its exec.)
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.launcher import READY

LOOPBACK = "127.0.0.1"
TCP_LISTEN = "0A"
STAT_FIRST_AFTER_NAME = 3  # /proc/PID/stat: field 3 (state) is the first after "(name)"
STAT_CPU_FIELDS = slice(14 - STAT_FIRST_AFTER_NAME, 18 - STAT_FIRST_AFTER_NAME)  # utime, stime, cutime, cstime
KIB = 1024
VM_HWM = "VmHWM:"


@dataclass(frozen=True)
class Usage:
    """What a process used over an interval: CPU seconds (user + system) and peak resident set in bytes."""

    cpu_seconds: float
    peak_rss: int


def cpu_seconds(pid: int) -> float:
    """CPU seconds `pid` has used so far: every thread, plus its reaped children."""
    ticks = sum(int(value) for value in _stat_fields(pid)[STAT_CPU_FIELDS])
    return ticks / os.sysconf("SC_CLK_TCK")


def process_state(pid: int) -> str:
    """The state letter /proc gives `pid` (T: stopped), or "" once it is gone."""
    try:
        return _stat_fields(pid)[0]
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the process name, the state first."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()  # the name may hold spaces and parentheses


def children(pid: int) -> list[int]:
    """The live (or not yet reaped) children of `pid`, every thread's."""
    found: list[int] = []
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            found += [int(child) for child in Path(task.path, "children").read_text().split()]
    except OSError:  # it or a thread ended meanwhile
        pass
    return found


def peak_rss(pid: int) -> int:
    """The largest VmHWM (peak resident set, bytes) of `pid` and its children; 0 if they are gone."""
    peak = 0
    for process in (pid, *children(pid)):
        try:
            status = Path(f"/proc/{process}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith(VM_HWM):
                peak = max(peak, int(line.split()[1]) * KIB)
    return peak


class ResourceWatch:
    """The CPU time and peak memory of a running server from `start` to `stop`, children included."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self._peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, name=f"watch-{pid}", daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(self.interval):
            self._peak = max(self._peak, peak_rss(self.pid))

    def start(self) -> ResourceWatch:
        self._before = cpu_seconds(self.pid)
        self._thread.start()
        return self

    def stop(self, reap_timeout: float = 2.0) -> Usage:
        """Wait (bounded) until the server has reaped its children, then read the figures."""
        deadline = time.monotonic() + reap_timeout
        while children(self.pid) and time.monotonic() < deadline:
            self._peak = max(self._peak, peak_rss(self.pid))
            time.sleep(0.01)
        self._done.set()
        self._thread.join()
        peak = max(self._peak, peak_rss(self.pid))
        return Usage(cpu_seconds(self.pid) - self._before, peak)


def free_port() -> int:
    """A port nobody listens on right now (bind port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


class ClosedPort:
    """A loopback port held bound but not listening: connecting to it is refused at once."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((LOOPBACK, 0))
        self.port = self._sock.getsockname()[1]

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> ClosedPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _listening_ports() -> set[int] | None:
    ports: set[int] = set()
    found = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        found = True
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == TCP_LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports if found else None


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


class Peers:
    """Every process started here is ended (terminate, then kill) by its pid on exit, even on error."""

    def __init__(self) -> None:
        self._procs: list[tuple[subprocess.Popen, Path]] = []
        self._deferred: list = []
        self._dir = tempfile.TemporaryDirectory(prefix="bench-")
        self.workdir = Path(self._dir.name)

    def start(self, name: str, argv: Sequence[str], port: int, env: Mapping[str, str] | None = None,
              timeout: float = 20.0, cwd: str | Path | None = None) -> subprocess.Popen:
        """Start a server process and wait (at most `timeout` s) until it listens on `port`."""
        log = self.workdir / f"{name}-{port}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=None if env is None else {**os.environ, **env}, cwd=cwd,
                                    start_new_session=True)
        self._procs.append((proc, log))
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} before listening:\n{self.log_of(proc)}")
            ports = _listening_ports()
            if (port in ports) if ports is not None else _accepts(port):
                return proc
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not listen on port {port} within {timeout} s:\n{self.log_of(proc)}")
            time.sleep(0.02)

    def log_of(self, proc: subprocess.Popen) -> str:
        for known, log in self._procs:
            if known is proc:
                try:
                    return log.read_text(errors="replace")[-4000:]
                except OSError:
                    return ""
        return ""

    def stop(self, proc: subprocess.Popen, grace: float = 3.0) -> None:
        """End `proc` (and only it, by pid): SIGTERM, then SIGKILL after `grace` seconds."""
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(grace)
            except ProcessLookupError:
                pass

    def defer(self, cleanup) -> None:
        """Call `cleanup()` on close, after the processes have ended."""
        self._deferred.append(cleanup)

    def close(self) -> None:
        for proc, _ in self._procs:
            try:
                self.stop(proc)
            except (OSError, subprocess.SubprocessError) as exc:  # keep ending the others
                print(f"could not end pid {proc.pid}: {exc}", file=sys.stderr)
        self._procs.clear()
        for cleanup in self._deferred:
            try:
                cleanup()
            except OSError as exc:
                print(f"cleanup failed: {exc}", file=sys.stderr)
        self._deferred.clear()
        self._dir.cleanup()

    def __enter__(self) -> Peers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def timed_run(argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 10.0,
              check: bool = True) -> float:
    """Wall time of one short process, from spawn to reaped (killed if it overruns `timeout`)."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=errors, stdin=subprocess.DEVNULL,
                                env=None if env is None else {**os.environ, **env})
        try:
            (code,) = wait_exits([proc], start + timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        elapsed = time.perf_counter() - start
        if check and code != 0:
            errors.seek(0)
            raise RuntimeError(f"{argv[0]} failed ({code}): {errors.read().decode(errors='replace')[-2000:]}")
    return elapsed


def wait_exits(procs: Sequence[subprocess.Popen], deadline: float) -> tuple[int, ...]:
    """Wait for every process to exit and return their exit codes; subprocess.TimeoutExpired if
    one is still running at `deadline` (time.perf_counter).

    Each exit is seen when it happens (a pidfd per process, waited on with select): Popen.wait
    with a timeout polls instead, sleeping up to 50 ms between looks, so the end of a transfer
    of a few tenths of a second was seen up to 50 ms late, by an amount that varied per run."""
    codes, waiting_since = [], time.perf_counter()
    for proc in procs:
        if proc.returncode is None:
            descriptor = os.pidfd_open(proc.pid)
            try:
                exit_watch = select.poll()  # not select.select: a descriptor may be numbered past 1023
                exit_watch.register(descriptor, select.POLLIN)
                exited = exit_watch.poll(max(deadline - time.perf_counter(), 0.0) * 1000)
            finally:
                os.close(descriptor)
            if not exited:
                raise subprocess.TimeoutExpired(proc.args, max(deadline - waiting_since, 0.0))
        codes.append(proc.wait())
    return tuple(codes)


@dataclass(frozen=True)
class Timing:
    """Client processes run together: seconds to start (held ones: first spawn to last READY;
    others: 0, their start is part of `run`), seconds to run (to the last exit), exit codes."""

    start: float
    run: float
    codes: tuple[int, ...]


def _await_ready(proc: subprocess.Popen, deadline: float) -> None:
    """Wait (until `deadline`) for the READY line of a client held by bench/launcher.py."""
    ready, _, _ = select.select([proc.stdout], [], [], max(deadline - time.perf_counter(), 0.0))
    line = proc.stdout.readline() if ready else b""
    if line.strip() != READY.encode():
        raise RuntimeError(f"pid {proc.pid} did not get ready (exit {proc.poll()}, said {line[:200]!r})")


def timed_parallel(argvs: Sequence[Sequence[str]], logdir: Path, env: Mapping[str, str] | None = None,
                   timeout: float = 60.0, held: bool = False, cwd: str | Path | None = None) -> Timing:
    """Run client processes together and time them; their output goes to `logdir`/client-N.log.

    `held`: each is started under bench/launcher.py, which says READY once its imports are
    done and waits; every one is then released at once and `run` counts from there. Any
    still running `timeout` seconds after the first spawn is killed (by pid) and the run fails."""
    procs: list[subprocess.Popen] = []
    environment = None if env is None else {**os.environ, **env}
    pipe = subprocess.PIPE if held else subprocess.DEVNULL
    spawned = time.perf_counter()
    deadline = spawned + timeout
    try:
        for index, argv in enumerate(argvs):
            with open(logdir / f"client-{index}.log", "wb") as log:
                procs.append(subprocess.Popen(list(argv), stdout=subprocess.PIPE if held else log, stderr=log,
                                              stdin=pipe, env=environment, cwd=cwd))
        released = spawned
        if held:
            for proc in procs:
                _await_ready(proc, deadline)
            released = time.perf_counter()
            for proc in procs:
                proc.stdin.write(b"go\n")
                proc.stdin.close()
        codes = wait_exits(procs, deadline)
        ended = time.perf_counter()
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{argvs[0][0]} did not finish within {timeout:.0f} s") from exc
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None and not stream.closed:
                    stream.close()
    return Timing(released - spawned, ended - released, codes)
