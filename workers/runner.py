"""The threads of one lane (a destination's copies, or its prefetches) in one worker: claim, run, record.

A `DestinationRunner` of copies starts one thread per association the
destination allows (`max_associations`; a folder gets `FOLDER_THREADS`); one
of prefetches (a Q/R destination's) starts `PREFETCH_THREADS`. Each thread has
its own queue connection and sender (`DicomSender`, `FolderSender`,
`Prefetcher`), claims the worker's next due job of the lane, runs it and
records what happened: done, retried after the destination's back-off (a
prefetch keeps its progress), or dead. With nothing due it waits on the
runner's Condition until the worker wakes it (new jobs, a changed queue), the
earliest retry is due, or its idle association is to be released: there is no
polling.

When the destination itself is down (no connection, association refused or
lost), the failed job is retried later like any other and the runner holds
back the destination's other jobs for a back-off that grows with the failures
in a row, so a dead destination costs one probe per back-off instead of an
attempt of every job, and never blocks another destination's runner.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from router.config import DicomDestination, FolderDestination, RouterSettings
from router.logs import FIELDS
from router.net import AE
from router.spool import Spool
from workers.attempt import Outcome, OutcomeKind, Parcel, transient
from workers.delivery import ACSE_TIMEOUT, CONNECT_TIMEOUT, DIMSE_TIMEOUT, NETWORK_TIMEOUT
from workers.delivery import DicomSender, RecentNeeds
from workers.folder import FolderSender
from workers.jobs import JobKind, Lane
from workers.prefetch import Prefetcher
from workers.queue import Job, Queue
from workers.retry import backoff, next_retry

LOGGER = logging.getLogger("workers")
FOLDER_THREADS = 2
PREFETCH_THREADS = 1
ERROR_PAUSE = 1.0  # seconds a thread waits after an unexpected error before it goes on


class Sender(Protocol):
    def send(self, task: Parcel | Job) -> Outcome: ...  # a copy's parcel, or a prefetch job
    def idle_deadline(self) -> float | None: ...
    def release_if_idle(self, now: float) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class WorkerIdentity:
    """What a runner needs to know of its worker: the spool, its index, the router settings."""

    spool: Spool
    index: int
    router: RouterSettings


class DestinationRunner:
    """The threads of one lane; see the module docstring."""

    def __init__(
        self, destination: DicomDestination | FolderDestination, worker: WorkerIdentity, kind: JobKind = JobKind.STORE
    ) -> None:
        if kind is JobKind.PREFETCH and not isinstance(destination, DicomDestination):
            raise ValueError(f"'{destination.name}' is a folder: it cannot be queried")
        self.destination = destination
        self.worker = worker
        self.lane = Lane(destination.name, kind)
        self._condition = threading.Condition()
        self._version = 0  # bumped by every wake(): a thread that saw an older one does not wait
        self._stopping = False
        self._aborted = False  # broken off: outcomes are no longer recorded, the jobs stay in flight
        self._blocked_until = 0.0  # UNIX time before which no job is claimed (the destination is down)
        self._failures_in_row = 0
        self._ae = self._outbound_ae() if isinstance(destination, DicomDestination) else None
        self._recent = RecentNeeds()
        self._threads = [
            threading.Thread(target=self._run, name=f"{self.lane.label}-{number}", daemon=True)
            for number in range(self._thread_count())
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def wake(self) -> None:
        """Tell the threads to look at the queue again (new or changed jobs)."""
        with self._condition:
            self._version += 1
            self._condition.notify_all()

    def stop(self) -> None:
        """Let each thread finish the job it holds, release its association and end."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()

    def join(self, deadline: float) -> bool:
        """Wait until the threads ended or the monotonic `deadline`; True if they all ended."""
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not self.alive()

    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def abort(self) -> None:
        """Break off the deliveries still running (their jobs stay in flight until the next start)."""
        self._aborted = True
        if self._ae is not None:
            self._ae.shutdown()

    # ---- a delivery thread ------------------------------------------------------------------------
    def _thread_count(self) -> int:
        if self.lane.kind is JobKind.PREFETCH:
            return PREFETCH_THREADS
        return self.destination.max_associations if isinstance(self.destination, DicomDestination) else FOLDER_THREADS

    def _outbound_ae(self) -> AE:
        ae = AE(self.worker.router.ae_title)
        ae.acse_timeout = ACSE_TIMEOUT
        ae.dimse_timeout = DIMSE_TIMEOUT
        ae.network_timeout = NETWORK_TIMEOUT
        ae.connection_timeout = CONNECT_TIMEOUT
        return ae

    def _sender(self) -> Sender:
        if not isinstance(self.destination, DicomDestination):
            return FolderSender(self.destination)
        assert self._ae is not None
        if self.lane.kind is JobKind.PREFETCH:
            return Prefetcher(self.destination, self._ae, self.worker.router.max_pdu)
        return DicomSender(self.destination, self._ae, self._recent, self.worker.router.max_pdu)

    def _run(self) -> None:
        queue = Queue(self.worker.spool)
        sender = self._sender()
        try:
            while self._step(queue, sender):
                pass
        finally:
            sender.close()
            queue.close()

    def _step(self, queue: Queue, sender: Sender) -> bool:
        """Deliver one due job, or wait for one; False once the runner stops."""
        with self._condition:
            if self._stopping:
                return False
            seen = self._version
        job = None
        try:
            now = time.time()
            job = queue.claim(self.worker.index, self.lane, now) if now >= self._blocked_until else None
            if job is not None:
                self._deliver(queue, sender, job)
                return True
            timeout = self._wait_time(queue, sender, now)
        except Exception as exc:  # noqa: BLE001 - a delivery thread logs what went wrong and goes on
            LOGGER.exception(f"a job of '{self.lane.label}' failed unexpectedly")
            if job is not None:
                _put_back(queue, job, f"unexpected error: {exc!r}")
            timeout = ERROR_PAUSE
        with self._condition:
            if self._version == seen and not self._stopping:
                self._condition.wait(timeout)
        sender.release_if_idle(time.monotonic())
        return True

    def _wait_time(self, queue: Queue, sender: Sender, now: float) -> float | None:
        """Seconds until something is due: a job, the end of a hold-back, an idle release (None: nothing)."""
        moments = []
        due = queue.next_due(self.worker.index, self.lane)
        if due is not None:
            moments.append(max(due, self._blocked_until) - now)
        idle = sender.idle_deadline()
        if idle is not None:
            moments.append(idle - time.monotonic())
        return max(0.0, min(moments)) if moments else None

    def _deliver(self, queue: Queue, sender: Sender, job: Job) -> None:
        try:
            outcome = sender.send(job if job.kind is JobKind.PREFETCH else self._parcel(job))
        except Exception as exc:  # noqa: BLE001 - a failure we did not foresee is retried, never fatal
            LOGGER.exception(f"job {job.id} ({job.instance}) of '{self.lane.label}' raised")
            outcome = transient(f"unexpected error: {exc!r}")
        if self._aborted:
            return
        now = time.time()
        attempts = job.attempts + 1
        if outcome.kind is OutcomeKind.DELIVERED:
            queue.delivered(job)
            self._failures_in_row = 0
            _log_end(job, "delivered", attempts, now, outcome)
            return
        policy = self.destination.retry
        delay = None if outcome.kind is OutcomeKind.PERMANENT else next_retry(policy, attempts, random.random())
        exhausted = delay is None and outcome.kind is OutcomeKind.TRANSIENT
        reason = f"{outcome.reason} (gave up after {attempts} attempts)" if exhausted else outcome.reason
        queue.failed(job, reason, None if delay is None else now + delay, outcome.progress)
        if outcome.destination_down:
            self._hold_back(now)
        status = "dead" if delay is None else "retry scheduled"
        _log_end(job, status, attempts, now, outcome, reason, delay)

    def _parcel(self, job: Job) -> Parcel:
        path = self.worker.spool.path_of(job.instance)
        return Parcel(path, job.sop_class_uid, job.sop_instance_uid, job.transfer_syntax, job.morphs)

    def _hold_back(self, now: float) -> None:
        with self._condition:
            self._failures_in_row += 1
            hold = backoff(self.destination.retry, self._failures_in_row, random.random())
            self._blocked_until = max(self._blocked_until, now + hold)


def _put_back(queue: Queue, job: Job, reason: str) -> None:
    """Queue again a job whose outcome could not be recorded (it may be sent twice: at least once)."""
    try:
        queue.failed(job, reason, time.time() + ERROR_PAUSE)
    except Exception:  # noqa: BLE001 - the queue itself fails: the job waits in flight for the next start
        LOGGER.exception(f"job {job.id} stays in flight until the worker restarts")


def _log_end(
    job: Job, status: str, attempts: int, now: float, outcome: Outcome, reason: str = "", delay: float | None = None
) -> None:
    """The one line per job that says how an attempt ended: a copy's, or a prefetch's."""
    fields: dict[str, object] = {"sop_instance_uid": job.sop_instance_uid}
    if job.order is None:
        fields.update({"from": job.calling_ae, "to": job.destination})
    else:
        progress = outcome.progress or job.progress
        prefetch = job.order.prefetch
        fields.update({"rule": prefetch.rule, "source": prefetch.source, "to": prefetch.move_destination,
                       "found": progress.found, "chosen": len(progress.chosen or ()), "moved": len(progress.moved)})
    fields.update({"status": status, "attempts": attempts, "latency": round(now - job.accepted_at, 3)})
    if delay is not None:
        fields["retry_in"] = round(delay, 3)
    if reason:
        fields["reason"] = reason
    level = logging.WARNING if status != "delivered" else logging.INFO
    LOGGER.log(level, "prefetch" if job.order is not None else status, extra={FIELDS: fields})
