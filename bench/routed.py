"""A router under test for the benchmarks: `router run` on a config of its own, watched and stopped by pid.

A `Route` is how instances go from DCMTK's storescu to the destination: direct
(no router), or through a router with a durability setting and a number of
listeners and workers. `RouterUnderTest` writes that router's config (its own
spool, everything forwarded to one DICOM destination), starts `router run` as a
`bench.procs.Peers` process, waits until every listener listens and every
worker has started, reads the CPU time its listeners and workers used (from
/proc, by the roles the supervisor writes in status.json), waits until its
spool is empty, and stops it (SIGTERM, then kill by pid).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.procs import LOOPBACK, Peers, cpu_seconds, free_port
from bench.store import DCMTK_ENV, SCP_TITLE
from router.config import Durability
from router.spool import Spool
from router.supervisor import read_status

ROOT = Path(__file__).resolve().parents[1]
ROUTER_TITLE = "ROUTER"
ASSOCIATIONS_PER_WORKER = 2  # max_associations is the router's: 2 per worker, as the benchmark always ran
READY_TIMEOUT = 60.0
STOP_GRACE = 45.0  # the supervisor stops listeners (they drain), then workers
IDLE_TIMEOUT = 60.0  # for the spool to empty


@dataclass(frozen=True)
class Route:
    """Direct (no router), or through a router with this durability and this many listeners and workers."""

    durability: Durability | None = None
    processes: int = 0

    @property
    def routed(self) -> bool:
        return self.durability is not None

    @property
    def label(self) -> str:
        if not self.routed:
            return "direct storescu -> storescp"
        return f"routed {self.durability.value:<5} {self.processes}L+{self.processes}W"


@dataclass(frozen=True)
class RouterCpu:
    """CPU seconds (user + system) of a router's listeners and of its workers."""

    listeners: float = 0.0
    workers: float = 0.0

    def __sub__(self, other: RouterCpu) -> RouterCpu:
        return RouterCpu(self.listeners - other.listeners, self.workers - other.workers)


class RouterUnderTest:
    """`router run` with its own spool and config under `folder`, forwarding everything to one DICOM destination."""

    def __init__(self, peers: Peers, folder: Path, route: Route, destination_port: int) -> None:
        self.peers, self.route = peers, route
        folder.mkdir(parents=True)
        self.port = free_port()
        self.spool = Spool(folder / "spool")
        self.config = folder / "router.yml"
        self.config.write_text(yaml.safe_dump({
            "router": {
                "ae_title": ROUTER_TITLE, "listen": f"{LOOPBACK}:{self.port}", "listeners": route.processes,
                "workers": route.processes, "spool": "./spool", "durability": route.durability.value,
            },
            "destinations": {"destination": {
                "address": f"{LOOPBACK}:{destination_port}", "ae_title": SCP_TITLE,
                "max_associations": ASSOCIATIONS_PER_WORKER * route.processes,
            }},
            "rules": [{"name": "everything", "forward": ["destination"]}],
        }))
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "router", "run", str(self.config)]

    def start(self, command: list[str] | None = None) -> RouterUnderTest:
        """Start the router (or `command`, a stand-in) and wait until every listener and worker is up."""
        self.process = self.peers.start(f"router-{self.port}", command or self.command(), self.port, env=DCMTK_ENV,
                                        timeout=READY_TIMEOUT, cwd=ROOT)
        count = self.route.processes
        up = lambda log: log.count("listening on") >= count and log.count(": started endpoint") >= count  # noqa: E731
        deadline = time.monotonic() + READY_TIMEOUT
        while not up(self.peers.log_of(self.process)):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"{self.route.label} did not come up:\n{self.peers.log_of(self.process)}")
            time.sleep(0.05)
        return self

    def cpu(self) -> RouterCpu:
        """CPU seconds the listeners and the workers have used so far (by their roles in status.json)."""
        used = {"listener": 0.0, "worker": 0.0}
        for entry in (read_status(self.spool) or {}).get("processes", []):
            with contextlib.suppress(OSError):  # a child that ended meanwhile
                used[entry["role"]] += cpu_seconds(entry["pid"])
        return RouterCpu(used["listener"], used["worker"])

    def wait_idle(self) -> None:
        """Until every accepted instance is delivered (the spool's incoming/ is empty)."""
        deadline = time.monotonic() + IDLE_TIMEOUT
        while any(True for _ in self.spool.accepted()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.route.label}: the spool did not empty in {IDLE_TIMEOUT:g} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.peers.stop(self.process, grace=STOP_GRACE)
