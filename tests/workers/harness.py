"""Running a real worker process for the tests: its config, its spool, instances to announce, its peers.

`RouterSetup` writes a config file (a spool, DICOM and folder destinations,
rules, any other `router:` settings) in a test's directory. `WorkerProcess`
runs `python -m workers` on it and stops it by pid (SIGTERM, or SIGKILL to
play a crash); a `LimitedWorkerProcess` cannot write past a file size, which
the test changes while it runs (a disk that fills up and is freed). `Announcer` writes
Part 10 files into the spool's incoming/ the way a listener does and pushes
their InstanceAccepted messages on the bus. `start_storescp` runs DCMTK's
bit-preserving storescp on a given port (so a destination can come back on
the port it had), and `received` reads what a folder of stored files holds,
by SOP Instance UID.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import yaml
import zmq
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info

from router.bus import InstanceAccepted, encode, sender, worker_endpoints
from router.config import load_config
from router.spool import Spool
from tests.conftest import LOOPBACK, PEER_READY_TIMEOUT, REPO_ROOT, Peer, is_listening, peer_environment, wait_until
from tests.interop import store_data

WORKER_READY_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0  # SIGTERM to exit: the drain is 10 s at most
FAST_RETRY = {"attempts": 50, "backoff": "0.2s", "max_backoff": "1s"}
FAST_SCAN = ("--scan-interval", "1", "--scan-grace", "0.5")
STORESCP_TITLE = "STORESCP"


@dataclass
class RouterSetup:
    """A config file with its spool, written under `directory`."""

    directory: Path
    destinations: dict = field(default_factory=dict)
    rules: list = field(default_factory=list)
    router: dict = field(default_factory=dict)  # router: keys over the defaults below

    @property
    def path(self) -> Path:
        return self.directory / "router.yml"

    @property
    def spool(self) -> Spool:
        return Spool(self.directory / "spool")

    def dicom(self, name: str, port: int, ae_title: str = STORESCP_TITLE, associations: int = 1, retry=None) -> None:
        self.destinations[name] = {
            "address": f"{LOOPBACK}:{port}",
            "ae_title": ae_title,
            "max_associations": associations,
            "retry": retry or FAST_RETRY,
        }

    def folder(self, name: str) -> Path:
        self.destinations[name] = {"folder": f"./{name}", "retry": FAST_RETRY}
        return self.directory / name

    def forward_all(self, *destinations: str) -> None:
        self.rules = [{"name": "everything", "forward": list(destinations)}]

    def write(self) -> Path:
        document = {
            "router": {"ae_title": "ROUTER", "workers": 1, "listeners": 1, "spool": "./spool", **self.router},
            "destinations": self.destinations,
            "rules": self.rules,
        }
        self.path.write_text(yaml.safe_dump(document, sort_keys=False))
        load_config(self.path)  # a test config must be valid
        self.spool.create()
        return self.path


class WorkerProcess:
    """`python -m workers CONFIG --index N ...`; its stderr goes to a log file."""

    def __init__(self, setup: RouterSetup, *options: str, index: int = 0) -> None:
        self.setup = setup
        self.options = options
        self.index = index
        self.log_path = setup.directory / ("worker.log" if index == 0 else f"worker-{index}.log")
        self.process: subprocess.Popen | None = None

    def start(self) -> "WorkerProcess":
        """Launch the worker and wait until it has started."""
        self.launch()
        assert wait_until(lambda: "started" in self.output() or self.process.poll() is not None, WORKER_READY_TIMEOUT)
        assert self.process.poll() is None, f"the worker did not start:\n{self.output()}"
        return self

    def launch(self) -> "WorkerProcess":
        """Run the worker, without waiting for it."""
        with open(self.log_path, "ab") as log:
            self.process = self._popen(stdout=log)
        return self

    def _popen(self, **options) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "workers", str(self.setup.path), "--index", str(self.index), *self.options],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=peer_environment(),
            **options,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, number: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, number)

    def stop(self) -> int:
        """SIGTERM; the exit code (bounded)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
        return self.process.wait(STOP_TIMEOUT)

    def kill(self) -> None:
        """kill -9, as a crash."""
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT)


class LimitedWorkerProcess(WorkerProcess):
    """A worker that cannot write a file past `file_size` bytes, as on a full disk; `limit` changes that while it runs.

    The limit is the process's RLIMIT_FSIZE, with SIGXFSZ ignored: a write past
    it fails with EFBIG (SQLite: "disk I/O error"), and 0 lets no write through.
    It applies to regular files only, so the worker's output goes through a
    pipe, which a thread of the test copies to the log file. A folder
    destination hard-links the spool file: it writes no data, and works.
    """

    def __init__(self, setup: RouterSetup, *options: str, file_size: int = resource.RLIM_INFINITY) -> None:
        super().__init__(setup, *options)
        self.file_size = file_size

    def launch(self) -> "LimitedWorkerProcess":
        self.process = self._popen(stdout=subprocess.PIPE, preexec_fn=self._limit_self)
        threading.Thread(target=self._copy_output, args=(self.process.stdout,), daemon=True).start()
        return self

    def limit(self, file_size: int) -> None:
        """Let the running worker write files up to `file_size` bytes (resource.RLIM_INFINITY: any size)."""
        assert self.process is not None
        _limit_file_size(self.process.pid, file_size)

    def _limit_self(self) -> None:
        """In the child, before it runs the worker."""
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        _limit_file_size(0, self.file_size)  # 0: this process

    def _copy_output(self, output) -> None:
        with output, open(self.log_path, "ab") as log:
            for line in output:
                log.write(line)
                log.flush()


def _limit_file_size(pid: int, file_size: int) -> None:
    """Set the soft RLIMIT_FSIZE of process `pid` (the hard one stays)."""
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (file_size, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


class Announcer:
    """Plays the listener: spool files in incoming/, and their announcements on the bus."""

    def __init__(self, setup: RouterSetup, worker: int | None = None) -> None:
        """Announcing to every worker, as a listener does, or to `worker` alone."""
        config = load_config(setup.path)
        self.spool = setup.spool
        self.context = zmq.Context()
        endpoints = worker_endpoints(self.spool.bus, config.router.bus, config.router.workers)
        self.push = sender(self.context, endpoints if worker is None else [endpoints[worker]])
        self.sources: dict[str, Path] = {}  # SOP Instance UID -> the original file

    def put(self, instance: store_data.Instance, calling_ae: str = "MODALITY") -> InstanceAccepted:
        """Copy `instance` into incoming/ (as accepted) and return its announcement."""
        name = self.spool.new_name(instance.sop_instance_uid)
        path = self.spool.path_of(name)
        temporary = self.spool.tmp / name
        temporary.write_bytes(instance.path.read_bytes())
        temporary.rename(path)
        self.sources[instance.sop_instance_uid] = instance.path
        return InstanceAccepted(
            name, instance.sop_class_uid, instance.sop_instance_uid, instance.transfer_syntax,
            calling_ae, "ROUTER", LOOPBACK, path.stat().st_size, time.time(),
        )

    def announce(self, *messages: InstanceAccepted) -> None:
        for message in messages:
            self.push.send(encode(message))

    def close(self) -> None:
        self.push.close(2000)
        self.context.term()


def instances(directory: Path, count: int, syntax: str = "explicit", kind: str = store_data.SMALL) -> list[store_data.Instance]:
    """`count` fresh instances (new UIDs, distinct pixels) of one kind in one syntax."""
    directory.mkdir(parents=True, exist_ok=True)
    made = []
    for index in range(count):
        dataset = store_data.GENERATORS[kind](seed=index + 1)
        path = directory / f"{kind}-{syntax}-{index}.dcm"
        made.append(store_data.write_instance(dataset, store_data.SYNTAXES[syntax], path, kind))
    return made


def received(directory: Path) -> Counter:
    """How many files under `directory` hold each SOP Instance UID (a file still without its meta is not counted yet).

    DCMTK's storescp writes a file under its final name as the data arrives, and
    answers the C-STORE once it is complete: wait for the sender's outcome
    before reading a file's data set.
    """
    counts: Counter = Counter()
    if directory.exists():
        for path in directory.rglob("*.dcm"):
            try:
                uid = read_file_meta_info(path).get("MediaStorageSOPInstanceUID")
            except (InvalidDicomError, EOFError, OSError):
                continue  # being written
            if uid is not None:
                counts[str(uid)] += 1
    return counts


def stored_files(directory: Path) -> dict[str, Path]:
    """The stored file of each SOP Instance UID under `directory` (the last one seen)."""
    return {
        str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID): path
        for path in directory.rglob("*.dcm")
    }


def start_storescp(directory: Path, port: int, out: Path, peers: list[Peer], accepted: tuple[str, ...] = ("+xa",)) -> Peer:
    """DCMTK's storescp on `port`: bit-preserving, a unique file per C-STORE, a process per association.

    `accepted` says what it accepts: every syntax by default; ("-xf", FILE, PROFILE) for a profile's contexts only.
    """
    out.mkdir(parents=True, exist_ok=True)
    log_path = directory / f"storescp-{port}-{len(peers)}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["storescp", "-v", "--fork", "+B", *accepted, "+uf", "-fe", ".dcm", "-aet", STORESCP_TITLE, "-od", str(out), str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
            env=peer_environment(),
        )
    peer = Peer("storescp", port, process, log_path)
    peers.append(peer)
    assert wait_until(lambda: is_listening(port) or process.poll() is not None, PEER_READY_TIMEOUT), peer.output()
    assert process.poll() is None, f"storescp did not start on {port}:\n{peer.output()}"
    return peer
