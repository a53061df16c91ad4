"""Idle latency through the router: Success at the sender to arrival at the destination, one instance at a time.

Our engine sends from this process, over one association, to a router whose
destination is our own Storage SCP in this same process (`ArrivalClock`), so
both moments are read from one clock (time.perf_counter): the latency is the
destination's EVT_C_STORE minus the moment the sender got Success, the median
of `LATENCY_SENDS` sends `LATENCY_GAP` apart (the router idle when each comes).
The listener announces an instance on the bus before it answers Success, so a
worker may deliver it before the answer reaches the sender: such a latency is
negative. Target, printed: median < 20 ms.
"""

from __future__ import annotations

import statistics
import threading
import time

from pydicom.filereader import read_file_meta_info

from bench.instances import InstanceSet
from bench.procs import LOOPBACK, Peers
from bench.routed import ROUTER_TITLE, Route, RouterUnderTest
from bench.store import SCP_TITLE
from router.net import AE, evt
from router.net.contexts import accept_all_storage
from router.net.status import SUCCESS

LATENCY_SENDS = 30
LATENCY_GAP = 0.1  # seconds between two sends
LATENCY_TIMEOUT = 10.0
LATENCY_TARGET = 0.020
MS = 1000.0


class ArrivalClock:
    """Our Storage SCP in this process: when each instance arrived (time.perf_counter)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self._condition = threading.Condition()
        self.ae = AE(SCP_TITLE)
        accept_all_storage(self.ae)
        server = self.ae.start_server((LOOPBACK, 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.port = server.server_address[1]

    def _store(self, event: evt.Event) -> int:
        now = time.perf_counter()
        with self._condition:
            self.arrived[str(event.request.affected_sop_instance_uid)] = now
            self._condition.notify_all()
        return SUCCESS

    def wait(self, uid: str, timeout: float) -> float:
        with self._condition:
            if not self._condition.wait_for(lambda: uid in self.arrived, timeout):
                raise RuntimeError(f"{uid} did not arrive within {timeout:g} s")
            return self.arrived[uid]

    def close(self) -> None:
        self.ae.shutdown()


def latencies(route: Route, peers: Peers, instances: InstanceSet) -> list[float]:
    """Seconds from Success at the sender to arrival at the destination, one instance at a time."""
    clock = ArrivalClock()
    router = RouterUnderTest(peers, peers.workdir / f"latency-{route.durability.value}-{route.processes}", route, clock.port)
    sender = AE("BENCHSCU")
    meta = read_file_meta_info(instances.files[0])
    sender.add_requested_context(str(meta.MediaStorageSOPClassUID), [str(meta.TransferSyntaxUID)])
    try:
        router.start()
        assoc = sender.associate(LOOPBACK, router.port, ae_title=ROUTER_TITLE)
        if not assoc.is_established:
            raise RuntimeError(f"{route.label}: no association for the latency sends")
        measured = []
        for path in instances.files[:LATENCY_SENDS]:
            status = assoc.send_c_store(path)
            answered = time.perf_counter()
            if status.Status != SUCCESS:
                raise RuntimeError(f"{route.label}: C-STORE answered 0x{status.Status:04X}")
            uid = str(read_file_meta_info(path).MediaStorageSOPInstanceUID)
            measured.append(clock.wait(uid, LATENCY_TIMEOUT) - answered)
            time.sleep(LATENCY_GAP)
        assoc.release()
        return measured
    finally:
        router.stop()
        clock.close()


def measure(routes: list[Route], peers: Peers, instances: InstanceSet) -> dict[Route, list[float] | str]:
    """Each route's latencies, or why they could not be measured."""
    measured: dict[Route, list[float] | str] = {}
    for route in routes:
        try:
            measured[route] = latencies(route, peers, instances)
        except (OSError, RuntimeError) as exc:
            measured[route] = str(exc)
    return measured


def latency_report(measured: dict[Route, list[float] | str]) -> list[str]:
    lines = [f"idle latency, Success at the sender to arrival at the destination, {LATENCY_SENDS} sends each (ms):",
             f"{'route':<30}{'median':>8}{'p90':>8}{'min':>8}{'max':>8}   target median < {LATENCY_TARGET * MS:g} ms"]
    for route, values in measured.items():
        if isinstance(values, str):
            lines.append(f"{route.label:<30}  FAILED: {values}"[:1500])
            continue
        ordered = sorted(values)
        median = statistics.median(ordered)
        p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        verdict = "met" if median < LATENCY_TARGET else "MISSED"
        lines.append(f"{route.label:<30}{median * MS:>8.1f}{p90 * MS:>8.1f}{ordered[0] * MS:>8.1f}{ordered[-1] * MS:>8.1f}   {verdict}")
    return lines
