"""Fixtures shared by the test suites: free ports, peer processes, our own in-process server.

Interop tests run real peers (DCMTK, pynetdicom, our own apps) as separate
processes on 127.0.0.1. A `Peer` is started on a free port, waited for until
its port is listening (bounded), and ended by its pid at teardown, whatever
the test's outcome. Tests marked `dcmtk` (or `pynetdicom`, `orthanc`) skip
when the tool is missing on a developer's machine, but fail under CI
(CI=true), where a missing peer must never pass as a green run. Orthanc runs
as a Peer too, from a generated configuration (`orthanc` fixture,
tests/interop/orthanc.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pytest

from router.net import AE
from router.net.presentation import VERIFICATION_SOP_CLASS

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[1]
PEER_READY_TIMEOUT = 15.0  # a Python peer imports pydicom first: about a second here
PEER_STOP_TIMEOUT = 5.0
CLIENT_TIMEOUT = 30.0  # one short-lived client process (echoscu)
START_ATTEMPTS = 3  # a free port can be taken between our probe and the peer's bind
TCP_LISTEN = "0A"  # st column of /proc/net/tcp

#: The external tools each marker needs.
REQUIRED_TOOLS = {
    "dcmtk": ("echoscu", "storescp"),
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing_tool(tools: Sequence[str]) -> str | None:
    return next((tool for tool in tools if shutil.which(tool) is None), None)


def pynetdicom_missing() -> bool:
    try:
        import pynetdicom  # noqa: F401  (a dev extra: the interop peer only)
    except ImportError:
        return True
    return False


def orthanc_missing() -> bool:
    from tests.interop.orthanc import orthanc_binary  # imported late: that module imports this one

    return orthanc_binary() is None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dcmtk: needs DCMTK's command-line tools (skip locally, fail under CI)")
    config.addinivalue_line("markers", "pynetdicom: needs pynetdicom as a peer process (skip locally, fail under CI)")
    config.addinivalue_line("markers", "orthanc: needs Orthanc as a peer process (skip locally, fail under CI)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip (locally) or fail (under CI) a test whose peer is not installed."""
    problems = []
    for marker, tools in REQUIRED_TOOLS.items():
        if item.get_closest_marker(marker) is not None:
            tool = missing_tool(tools)
            if tool is not None:
                problems.append(f"'{tool}' is not installed (marker '{marker}')")
    if item.get_closest_marker("pynetdicom") is not None and pynetdicom_missing():
        problems.append("pynetdicom is not installed (marker 'pynetdicom'; pip install -e '.[dev]')")
    if item.get_closest_marker("orthanc") is not None and orthanc_missing():
        problems.append("Orthanc is not installed (marker 'orthanc'; make peers)")
    if problems:
        message = "; ".join(problems)
        if in_ci():
            pytest.fail(f"CI=true and a required peer is missing: {message}", pytrace=False)
        pytest.skip(message)


# ---- ports ---------------------------------------------------------------
def pick_free_port() -> int:
    """A loopback port nothing listens on right now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    return pick_free_port()


def is_listening(port: int) -> bool:
    """True if a socket listens on `port`; reads /proc (no connection the peer would log)."""
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return True
        except OSError:
            return False
    suffix = f":{port:04X}"
    for table in tables:
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[1].endswith(suffix) and fields[3] == TCP_LISTEN:
                return True
    return False


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return predicate()
        time.sleep(interval)
    return True


# ---- peer processes --------------------------------------------------------
def peer_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # our logs reach the file as they happen
    env["TCP_NODELAY"] = "1"  # DCMTK sets TCP_NODELAY only when asked (see peers.md)
    return env


@dataclass
class Peer:
    """A peer server process on `port`; its stdout and stderr go to `log_path`."""

    name: str
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 5.0) -> bool:
        """True once `text` appears in the peer's log (bounded)."""
        return wait_until(lambda: text in self.output(), timeout)

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """End the process by its pid: SIGTERM, then SIGKILL if it lingers."""
        if self.process.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(PEER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(PEER_STOP_TIMEOUT)


class PeerStarter:
    """Starts peer processes for one test and stops every one of them at teardown."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.peers: list[Peer] = []

    def start(self, name: str, command: Callable[[int], list[str]], timeout: float = PEER_READY_TIMEOUT) -> Peer:
        """Run `command(port)` on a free port and wait until that port listens."""
        failures = []
        for attempt in range(START_ATTEMPTS):
            port = pick_free_port()
            log_path = self.directory / f"{name}-{len(self.peers)}-{attempt}.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    command(port),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.directory,
                    env=peer_environment(),
                )
            peer = Peer(name, port, process, log_path)
            self.peers.append(peer)
            if wait_until(lambda: is_listening(port) or not peer.is_running(), timeout) and peer.is_running():
                return peer
            peer.stop()
            failures.append(f"attempt {attempt + 1} on port {port}: exit code {process.returncode}, output:\n{peer.output()}")
        pytest.fail(f"peer '{name}' did not start listening within {timeout} s\n" + "\n".join(failures))

    def stop_all(self) -> None:
        for peer in self.peers:
            peer.stop()


@pytest.fixture
def peers(tmp_path: Path):
    """`peers.start(name, lambda port: [...])` -> a listening `Peer`; all stopped at teardown."""
    starter = PeerStarter(tmp_path)
    try:
        yield starter
    finally:
        starter.stop_all()


@pytest.fixture
def orthanc(peers, tmp_path: Path):
    """`orthanc.start(modalities=[Modality(...)], **settings)` -> a running `Orthanc`; stopped at teardown."""
    from tests.interop.orthanc import OrthancStarter  # imported late: that module imports this one

    return OrthancStarter(peers, tmp_path)


@dataclass
class Finished:
    """A client process that ran to its end."""

    returncode: int
    output: str  # stdout and stderr, interleaved
    elapsed: float


def run_client(command: Sequence[str], timeout: float = CLIENT_TIMEOUT, cwd: Path | None = None) -> Finished:
    """Run a client to completion (bounded); its output is stdout and stderr together."""
    start = time.monotonic()
    try:
        completed = subprocess.run(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            cwd=cwd or REPO_ROOT,
            env=peer_environment(),
        )
    except subprocess.TimeoutExpired as exc:
        output = (exc.output or b"").decode(errors="replace")
        pytest.fail(f"{command[0]} did not finish within {timeout} s: {' '.join(command)}\n{output}")
    return Finished(completed.returncode, completed.stdout.decode(errors="replace"), time.monotonic() - start)


@pytest.fixture
def client():
    """`client([...])` runs a client process to its end within a timeout; returns `Finished`."""
    return run_client


# ---- command lines ---------------------------------------------------------
def our_app(app: str, *args: str) -> list[str]:
    """Our command-line app, run by this interpreter: `python -m router.net APP ...`."""
    return [sys.executable, "-m", "router.net", app, *args]


def pynetdicom_app(app: str, *args: str) -> list[str]:
    """pynetdicom's app as a separate process (it is a test peer, never imported by the engine)."""
    return [sys.executable, "-m", "pynetdicom", app, *args]


# ---- our in-process server ---------------------------------------------------
def verification_ae(title: str = "OURSCP") -> AE:
    """An AE that supports (and requests) Verification, with short test timeouts."""
    ae = AE(title)
    ae.add_supported_context(VERIFICATION_SOP_CLASS)
    ae.add_requested_context(VERIFICATION_SOP_CLASS)
    ae.acse_timeout = 10
    ae.dimse_timeout = 10
    ae.network_timeout = 30
    ae.connection_timeout = 5
    return ae


class ServerStarter:
    """Starts our non-blocking servers on free loopback ports; shuts them all down at teardown."""

    def __init__(self) -> None:
        self.aes: list[AE] = []

    def start(self, ae: AE | None = None, **kwargs):
        ae = ae or verification_ae()
        server = ae.start_server((LOOPBACK, 0), block=False, **kwargs)
        self.aes.append(ae)
        return server

    def stop_all(self) -> None:
        for ae in self.aes:
            ae.shutdown()


@pytest.fixture
def our_server():
    """`our_server.start(ae=None, **start_server_kwargs)` -> a running server on 127.0.0.1."""
    starter = ServerStarter()
    try:
        yield starter
    finally:
        starter.stop_all()
