"""Process plumbing for the benchmarks: free ports, peers started and always ended by pid.

Peers listen on a free loopback port; readiness is read from /proc/net/tcp
(LISTEN state) instead of probing with connections, because pynetdicom's
echoscp counts short idle probe connections against its association limit.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"
TCP_LISTEN = "0A"


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
    start = time.perf_counter()
    result = subprocess.run(list(argv), check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=None if env is None else {**os.environ, **env}, timeout=timeout)
    elapsed = time.perf_counter() - start
    if check and result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stderr.decode(errors='replace')[-2000:]}")
    return elapsed
