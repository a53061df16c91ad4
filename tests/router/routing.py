"""A whole router for the tests: `router run` as a process, DCMTK storescu as the modality, what arrived where.

`RouterRun` runs `python -m router run CONFIG` (the supervisor and the
listeners and workers it starts) in a process group of its own, waits until
every child has said it is up, kills one child by its pid or the whole group
(kill -9), and stops it with SIGTERM. Its config is a `RouterSetup`
(tests/workers/harness.py) with a `router:` section.

`Stream` plays the modality: DCMTK `storescu` runs, one after the other in a
thread, each sending the next batch of instances on an association of its
own, and reads from storescu's verbose output which SOP Instance UIDs were
answered Success (acknowledged) and which were refused, with the status.
A batch whose association dies (a listener killed) ends early; the next batch
goes on, so a stream outlives the kills it is meant to witness.

`arrivals` waits until a DCMTK storescp folder holds a set of SOP Instance
UIDs and returns how many times it holds each, counting only the files that
hold a sent data set bit for bit (`Originals`): a file cut short by a crash
is no arrival.
"""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from router.spool import Spool
from router.supervisor import read_status
from tests.conftest import LOOPBACK, REPO_ROOT, is_listening, peer_environment, run_client, wait_until
from tests.interop.store_data import Instance, data_digest
from tests.interop.test_store_dcmtk import exact_contexts_config
from tests.workers.harness import RouterSetup

ROUTER_TITLE = "ROUTER"
MODALITY_TITLE = "MODALITY"
READY_TIMEOUT = 40.0  # four Python processes importing at once on two busy cores
RESTART_TIMEOUT = 30.0  # a killed child: the supervisor's first back-off (0.5 s), then its start
STOP_TIMEOUT = 60.0  # SIGTERM: listeners drain open associations (up to 30 s), then workers theirs
GONE_TIMEOUT = 10.0
BATCH = 25  # instances per storescu association
BATCH_TIMEOUT = 60.0
START_LINES = {"listener": "listening on", "worker": "started"}  # what each child logs once it is up
SENDING = re.compile(r"Sending file: (.+)$")
RESPONSE = re.compile(r"Received Store Response \((.+)\)")
SUCCESS_TEXT = "Success"


# ---- the router ---------------------------------------------------------------------------------
def process_states(pid: int) -> str:
    """`pid` and its descendants, one line each: state (R, S, D = waiting on the disk, ...), what the
    kernel has it wait in, its command line; to tell a hang from a stalled disk when a test times out."""
    lines, pending = [], [pid]
    while pending:
        current = pending.pop()
        proc = Path(f"/proc/{current}")
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            wchan = (proc / "wchan").read_text() or "-"
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            children = (proc / "task" / str(current) / "children").read_text().split()
        except OSError:
            continue  # gone meanwhile
        lines.append(f"  pid {current} state {state} waiting in {wchan}: {command}")
        pending.extend(int(child) for child in children)
    return "\n".join(lines) or f"  pid {pid} is gone"


class RouterRun:
    """`router run` on `setup`'s config, in a process group of its own; its output in `log_path`."""

    def __init__(self, setup: RouterSetup, log_path: Path) -> None:
        self.setup = setup
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def spool(self) -> Spool:
        return self.setup.spool

    @property
    def port(self) -> int:
        return int(self.setup.router["listen"].rsplit(":", 1)[1])

    def start(self) -> RouterRun:
        """Start the supervisor and wait until every listener listens and every worker has started."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "router", "run", str(self.setup.path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=peer_environment(),
                start_new_session=True,  # its own process group: kill -9 of the whole router is one killpg
            )
        self.wait_ready()
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def processes(self) -> dict[str, dict]:
        """The supervisor's view of its children (status.json), by name."""
        status = read_status(self.spool) or {}
        return {entry["name"]: entry for entry in status.get("processes", [])}

    def starts(self, name: str) -> int:
        """How many times the child `name` has logged that it is up."""
        role = name.rsplit("-", 1)[0]
        return self.output().count(f" {name}: {START_LINES[role]}")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Every child alive and up (once more than it was restarted); the port listening."""

        def ready() -> bool:
            children = self.processes()
            expected = self.setup.router["listeners"] + self.setup.router["workers"]
            return (
                len(children) == expected
                and all(c["alive"] and self.starts(name) >= c["restarts"] + 1 for name, c in children.items())
                and is_listening(self.port)
            )

        assert self.process is not None
        if not wait_until(lambda: ready() or self.process.poll() is not None, timeout, 0.1) or not ready():
            raise AssertionError(
                f"the router did not come up in {timeout:g} s; its processes now:\n"
                f"{process_states(self.process.pid)}\n{self.output()}"
            )

    def pid_of(self, name: str) -> int:
        return self.processes()[name]["pid"]

    def kill_child(self, name: str) -> int:
        """kill -9 of one child; its pid, for `wait_restarted`."""
        pid = self.pid_of(name)
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_restarted(self, name: str, old_pid: int, timeout: float = RESTART_TIMEOUT) -> None:
        """Wait until the supervisor has replaced `old_pid` and the new `name` is up."""
        replaced = lambda: self.processes()[name]["pid"] != old_pid  # noqa: E731
        if not wait_until(replaced, timeout, 0.05):
            assert self.process is not None
            raise AssertionError(
                f"{name} was not restarted in {timeout:g} s; its processes now:\n"
                f"{process_states(self.process.pid)}\n{self.output()}"
            )
        self.wait_ready(timeout)

    def kill_all(self) -> list[int]:
        """kill -9 of the supervisor and every child (its process group); returns once all are gone."""
        assert self.process is not None
        children = [entry["pid"] for entry in self.processes().values()]
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(GONE_TIMEOUT)
        assert wait_until(lambda: not any(map(is_alive, children)), GONE_TIMEOUT), "children outlived the kill"
        return children

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM to the supervisor; its exit code (bounded)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def close(self) -> None:
        """At teardown: stop what still runs, by pid (SIGTERM, then kill -9 of the group)."""
        if self.process is None:
            return
        children = [entry["pid"] for entry in self.processes().values()]
        if self.process.poll() is None:
            try:
                self.terminate()
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(GONE_TIMEOUT)
        for pid in children:
            if is_alive(pid):
                os.kill(pid, signal.SIGKILL)


def is_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


class Routers:
    """Routers a test starts (`start(setup)`), each with its own log; all stopped at teardown."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[RouterRun] = []

    def start(self, setup: RouterSetup) -> RouterRun:
        router = RouterRun(setup, self.directory / f"router-{len(self.started)}.log")
        self.started.append(router)
        return router.start()

    def close(self) -> None:
        for router in self.started:
            router.close()


@pytest.fixture
def routers(tmp_path):
    """`routers.start(setup)` -> a running `RouterRun`; every one stopped (by pid) at teardown."""
    made = Routers(tmp_path)
    yield made
    made.close()


def router_setup(directory: Path, port: int, **router) -> RouterSetup:
    """A RouterSetup for a router listening on `port`, 2 listeners and 2 workers unless `router` says otherwise."""
    settings = {"ae_title": ROUTER_TITLE, "listen": f"{LOOPBACK}:{port}", "listeners": 2, "workers": 2, **router}
    return RouterSetup(directory, router=settings)


def router_cli(*arguments: str, timeout: float = 30.0):
    """`router ARGUMENTS...` as a process, run to its end (conftest's `Finished`)."""
    return run_client([sys.executable, "-m", "router", *arguments], timeout=timeout)


# ---- the modality ---------------------------------------------------------------------------------
@dataclass
class Responses:
    """What storescu was answered, by SOP Instance UID."""

    acknowledged: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # UID -> storescu's status text


class StorescuReader:
    """Reads `storescu -v` output line by line: each response answers the last 'Sending file'."""

    def __init__(self, uids_by_path: dict[str, str], responses: Responses) -> None:
        self.uids_by_path = uids_by_path
        self.responses = responses
        self._current: str | None = None

    def feed(self, line: str) -> None:
        if sending := SENDING.search(line):
            self._current = self.uids_by_path[sending.group(1).strip()]
        elif (response := RESPONSE.search(line)) and self._current is not None:
            if response.group(1) == SUCCESS_TEXT:
                self.responses.acknowledged.append(self._current)
            else:
                self.responses.refused[self._current] = response.group(1)
            self._current = None


class Stream:
    """DCMTK storescu sending `instances` to the router in batches, one association each, in a thread."""

    def __init__(
        self, port: int, instances: list[Instance], directory: Path, batch: int = BATCH, hold_after: int | None = None
    ) -> None:
        self.port = port
        self.instances = instances
        self.batch = batch
        self.hold_after = hold_after  # batches sent before it waits for `release()` (None: never waits)
        self._released = threading.Event()
        self.uids_by_path = {str(instance.path): instance.sop_instance_uid for instance in instances}
        directory.mkdir(parents=True, exist_ok=True)
        self.config = exact_contexts_config(directory / f"storescu-{id(self)}.cfg", instances)
        self.responses = Responses()
        self.outputs: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="storescu-stream", daemon=True)

    def command(self, files: list[Instance]) -> list[str]:
        config, profile = self.config
        return [
            "storescu", "-v", "-nh", "-aet", MODALITY_TITLE, "-aec", ROUTER_TITLE, "-xf", config, profile,
            LOOPBACK, str(self.port), *(str(instance.path) for instance in files),
        ]

    def start(self) -> Stream:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for index, first in enumerate(range(0, len(self.instances), self.batch)):
                if index == self.hold_after:
                    self._released.wait(BATCH_TIMEOUT)
                if self._stop.is_set():
                    return
                self._send(self.instances[first : first + self.batch])
        except BaseException as exc:  # noqa: BLE001 - given to the test by `join`
            self._error = exc

    def _send(self, files: list[Instance]) -> None:
        """One storescu run, its responses counted as they come (killed if it outlasts BATCH_TIMEOUT)."""
        process = subprocess.Popen(
            self.command(files), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=REPO_ROOT, env=peer_environment(), text=True, errors="replace",
        )
        watchdog = threading.Timer(BATCH_TIMEOUT, process.kill)
        watchdog.start()
        reader, lines = StorescuReader(self.uids_by_path, self.responses), []
        try:
            for line in process.stdout:
                lines.append(line)
                with self._lock:
                    reader.feed(line)
            process.wait()
        finally:
            watchdog.cancel()
            process.stdout.close()
        self.outputs.append("".join(lines))

    def acknowledged_count(self) -> int:
        with self._lock:
            return len(self.responses.acknowledged)

    def is_running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """No batch after the current one."""
        self._stop.set()

    def release(self) -> None:
        """Go on after `hold_after` batches."""
        self._released.set()

    def join(self, timeout: float) -> Responses:
        """Wait for the last batch (bounded); what was answered."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"storescu still sending after {timeout:g} s"
        if self._error is not None:
            raise self._error
        return self.responses


def send(port: int, instances: list[Instance], directory: Path, timeout: float = BATCH_TIMEOUT) -> Responses:
    """One storescu run sending every instance on one association; what it was answered."""
    stream = Stream(port, instances, directory, batch=len(instances))
    return stream.start().join(timeout)


# ---- what arrived ----------------------------------------------------------------------------------
def count_files(directory: Path) -> int:
    return sum(1 for _ in directory.glob("*.dcm")) if directory.exists() else 0


class Originals:
    """The sent instances by the digest of their data sets: a destination's file counts only if it holds one bit for bit."""

    def __init__(self, instances: list[Instance]) -> None:
        self._uids = {data_digest(instance.path): instance.sop_instance_uid for instance in instances}

    def held(self, directory: Path) -> Counter:
        """How many files in `directory` hold each sent data set bit for bit (a file cut short holds none)."""
        counts: Counter = Counter()
        for path in directory.glob("*.dcm") if directory.exists() else ():
            try:
                digest = data_digest(path)
            except (OSError, ValueError, struct.error):  # cut short inside its file meta
                continue
            if digest in self._uids:
                counts[self._uids[digest]] += 1
        return counts


def arrivals(directory: Path, originals: Originals, uids, timeout: float) -> Counter:
    """Wait (bounded) until storescp's `directory` holds every UID in `uids` bit for bit; how often it holds each."""
    wanted = set(uids)
    found: Counter = Counter()

    def complete() -> bool:
        nonlocal found
        if count_files(directory) < len(wanted):
            return False
        found = originals.held(directory)
        return wanted <= set(found)

    wait_until(complete, timeout, 0.2)
    missing = wanted - set(found)
    assert not missing, f"{len(missing)} of {len(wanted)} never arrived in {directory}, e.g. {sorted(missing)[:3]}"
    return found
