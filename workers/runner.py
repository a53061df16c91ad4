"""The threads of one lane (a destination's copies, or its prefetches) in one worker: claim, run, record.

A `DestinationRunner` of copies starts one thread per association of the
destination's `max_associations` that is this worker's share
(`workers.shares`; a folder gets `FOLDER_THREADS`); one
of prefetches (a Q/R destination's) starts `PREFETCH_THREADS`. Each thread has
its own queue connection and sender (`DicomSender`, `FolderSender`,
`Prefetcher`). The threads share the runner's hand: jobs claimed (in flight in
the queue) and not started yet. Jobs come into the hand two ways: the worker
hands over the jobs it has just recorded claimed (`offer`, up to `room()`), so
a new instance reaches a delivery thread without a trip through the database;
and a thread whose hand is empty claims up to `CLAIM_BATCH` due jobs from the
queue when some may be there (at start, after `wake`, when a retry falls
due). A thread takes the next job in hand, runs it and keeps how it ended;
the endings (done, retried after the destination's back-off, a prefetch
keeping its progress, or dead) are recorded in one transaction per
`SETTLE_BATCH` of them, and as soon as the hand is empty. With nothing in
hand and nothing due a thread waits on the runner's Condition until the worker
wakes it (new jobs, a changed queue), the earliest retry is due, or its idle
association is to be released: there is no polling.

When the destination itself is down (no connection, association refused or
lost), the failed job is retried later like any other, the jobs in hand go
back to the queue, and the runner holds back the destination's other jobs for
a back-off that grows with the failures in a row, so a dead destination costs
one probe per back-off instead of an attempt of every job, and never blocks
another destination's runner. A stopping runner lets each thread finish the
job it runs, records the endings, and puts the jobs in hand back in the queue.

When the queue cannot be written (a full disk: `QueueUnwritable`), a thread
keeps its endings (their spool files stay) and the jobs it claimed, and tries
again when the worker's `QueueOutage` says (logged there, once): opening its
connection, recording the endings, claiming. Jobs already in hand are still
run meanwhile, up to a batch of endings. A runner stopped (retired by a reload)
before its threads could connect goes on trying until it can put the jobs in
its hand back in the queue, or until it is broken off.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
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
from workers.queue import Ending, Job, Queue, QueueOutage, QueueUnwritable
from workers.retry import backoff, next_retry
from workers.shares import association_share

LOGGER = logging.getLogger("workers")
FOLDER_THREADS = 2
PREFETCH_THREADS = 1
ERROR_PAUSE = 1.0  # seconds a thread waits after an unexpected error before it goes on
HAND_LIMIT = 512  # claimed jobs a runner holds, not started yet, at most
CLAIM_BATCH = 64  # due jobs claimed from the queue at once
SETTLE_BATCH = 64  # endings recorded in one transaction at most


class Sender(Protocol):
    def send(self, task: Parcel | Job) -> Outcome: ...  # a copy's parcel, or a prefetch job
    def idle_deadline(self) -> float | None: ...
    def release_if_idle(self, now: float) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class WorkerIdentity:
    """What a runner needs to know of its worker: the spool, its index, the router settings, its queue writers' lock
    and the outage its queue connections share."""

    spool: Spool
    index: int
    router: RouterSettings
    write_lock: threading.Lock = field(default_factory=threading.Lock, compare=False)
    outage: QueueOutage = field(default_factory=QueueOutage, compare=False)

    def queue(self) -> Queue:
        """A new connection to the queue that takes turns with the worker's other ones (QueueUnwritable if it cannot)."""
        return Queue(self.spool, write_lock=self.write_lock, outage=self.outage)


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
        self._version = 0  # bumped by every wake() and offer(): a thread that saw an older one does not wait
        self._stopping = False
        self._aborted = False  # broken off: outcomes are no longer recorded, the jobs stay in flight
        self._blocked_until = 0.0  # UNIX time before which no job is claimed (the destination is down)
        self._failures_in_row = 0
        self._hand: deque[Job] = deque()  # claimed, not started
        self._may_claim = True  # the queue may hold due jobs of the lane that are not in hand
        self._endings: list[Ending] = []  # not recorded yet
        self._released: list[Job] = []  # claimed, never started, to be queued again
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
            self._may_claim = True
            self._version += 1
            self._condition.notify_all()

    def room(self) -> int:
        """How many new jobs `offer` may hand over now: none while the destination is held back."""
        with self._condition:
            if self._stopping or time.time() < self._blocked_until:
                return 0
            return max(0, HAND_LIMIT - len(self._hand))

    def offer(self, jobs: list[Job]) -> None:
        """Take over jobs of this lane that the worker recorded claimed (at most `room()` of them)."""
        with self._condition:
            self._hand.extend(jobs)
            self._version += 1
            self._condition.notify(len(jobs))

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
        with self._condition:
            self._aborted = True
            self._condition.notify_all()  # a thread still trying to connect gives up
        if self._ae is not None:
            self._ae.shutdown()

    # ---- a delivery thread ------------------------------------------------------------------------
    def _thread_count(self) -> int:
        if self.lane.kind is JobKind.PREFETCH:
            return PREFETCH_THREADS
        if not isinstance(self.destination, DicomDestination):
            return FOLDER_THREADS
        return association_share(self.destination.max_associations, self.worker.router.workers, self.worker.index)

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
        queue = self._connect()
        if queue is None:
            return  # stopped first: the jobs offered meanwhile stay in flight until the next start
        sender = self._sender()
        try:
            while (job := self._next(queue, sender)) is not None:
                self._attempt(sender, job)
        finally:
            self._let_go(queue)
            sender.close()
            queue.close()

    def _connect(self) -> Queue | None:
        """This thread's queue connection, tried again after each wait the outage sets; None once the
        runner stops with no job in hand (one stopping with jobs in hand goes on trying, to put them
        back in the queue, until it is broken off)."""
        while True:
            try:
                return self.worker.queue()
            except QueueUnwritable:
                pass  # the outage logged it
            with self._condition:
                if self._condition.wait_for(self._may_end_unconnected, self.worker.outage.pause()):
                    return None

    def _may_end_unconnected(self) -> bool:
        return self._aborted or (self._stopping and not self._hand)

    def _next(self, queue: Queue, sender: Sender) -> Job | None:
        """The next job in hand, claimed from the queue if need be, or waited for; None once the runner stops.

        A full batch of endings is recorded first, and so is every ending before a thread waits.
        """
        while True:
            with self._condition:
                if self._stopping:
                    return None
                now = time.time()
                if now < self._blocked_until:  # held back: the jobs in hand wait in the queue
                    self._released.extend(self._hand)
                    self._hand.clear()
                if self._hand and len(self._endings) < SETTLE_BATCH:
                    return self._hand.popleft()
                busy, seen = bool(self._hand), self._version
                claim = not busy and self._may_claim and now >= self._blocked_until
                self._may_claim = self._may_claim and not claim
            try:
                self._settle(queue)
                if busy or (claim and self._claim(queue, now)):
                    continue
                timeout = self._wait_time(queue, sender, now)
            except Exception as exc:  # noqa: BLE001 - a delivery thread logs what went wrong and goes on
                timeout = self._pause_after(exc)
                with self._condition:
                    self._may_claim = self._may_claim or claim
            with self._condition:
                if self._version == seen and not self._stopping and not self._condition.wait(timeout):
                    self._may_claim = True  # a retry or the end of a hold-back is due
            sender.release_if_idle(time.monotonic())

    def _pause_after(self, error: Exception) -> float:
        """Seconds to wait after the queue failed: the outage's wait if it cannot be written, else ERROR_PAUSE (logged)."""
        if isinstance(error, QueueUnwritable):
            return self.worker.outage.pause()  # the outage logged it
        LOGGER.error(f"the queue of '{self.lane.label}' failed unexpectedly", exc_info=error)
        return ERROR_PAUSE

    def _claim(self, queue: Queue, now: float) -> bool:
        """Claim due jobs into the hand; True if there were any."""
        jobs = queue.claim_many(self.worker.index, self.lane, now, CLAIM_BATCH)
        with self._condition:
            self._hand.extend(jobs)
            self._may_claim = self._may_claim or len(jobs) == CLAIM_BATCH  # more may be due
        return bool(jobs)

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

    def _attempt(self, sender: Sender, job: Job) -> None:
        """Run one job and keep how it ended (recorded with the next batch)."""
        try:
            outcome = sender.send(job if job.kind is JobKind.PREFETCH else self._parcel(job))
        except Exception as exc:  # noqa: BLE001 - a failure we did not foresee is retried, never fatal
            LOGGER.exception(f"job {job.id} ({job.instance}) of '{self.lane.label}' raised")
            outcome = transient(f"unexpected error: {exc!r}")
        if self._aborted:
            return
        ending = self._ending(job, outcome, time.time())
        with self._condition:
            self._endings.append(ending)

    def _ending(self, job: Job, outcome: Outcome, now: float) -> Ending:
        """What `outcome` makes of `job` (logged); a destination found down holds the lane back."""
        attempts = job.attempts + 1
        if outcome.kind is OutcomeKind.DELIVERED:
            with self._condition:
                self._failures_in_row = 0
            _log_end(job, "delivered", attempts, now, outcome)
            return Ending(job)
        policy = self.destination.retry
        delay = None if outcome.kind is OutcomeKind.PERMANENT else next_retry(policy, attempts, random.random())
        exhausted = delay is None and outcome.kind is OutcomeKind.TRANSIENT
        reason = f"{outcome.reason} (gave up after {attempts} attempts)" if exhausted else outcome.reason
        if outcome.destination_down:
            self._hold_back(now)
        status = "dead" if delay is None else "retry scheduled"
        _log_end(job, status, attempts, now, outcome, reason, delay)
        return Ending(job, False, reason, None if delay is None else now + delay, outcome.progress)

    def _settle(self, queue: Queue) -> None:
        """Record the endings kept so far and queue again the jobs let go, in one transaction (kept for later if it fails)."""
        with self._condition:
            endings, self._endings = self._endings, []
            released, self._released = self._released, []
        if not endings and not released:
            return
        try:
            queue.settle(endings, released)
        except BaseException:
            with self._condition:
                self._endings[:0], self._released[:0] = endings, released
            raise

    def _let_go(self, queue: Queue) -> None:
        """At the end of a thread: record the endings and queue again the jobs in hand (not once broken off)."""
        if self._aborted:
            return
        with self._condition:
            self._released.extend(self._hand)
            self._hand.clear()
        try:
            self._settle(queue)
        except Exception as exc:  # noqa: BLE001 - the jobs stay in flight: the next start of the worker queues them again
            LOGGER.error(
                f"the last endings of '{self.lane.label}' could not be recorded ({exc}); they are redone at the next start",
                exc_info=not isinstance(exc, QueueUnwritable),  # a full disk is no bug
            )

    def _parcel(self, job: Job) -> Parcel:
        path = self.worker.spool.path_of(job.instance)
        return Parcel(path, job.sop_class_uid, job.sop_instance_uid, job.transfer_syntax, job.morphs)

    def _hold_back(self, now: float) -> None:
        """Run nothing for a back-off (the jobs in hand go back to the queue): the destination is down."""
        with self._condition:
            self._failures_in_row += 1
            hold = backoff(self.destination.retry, self._failures_in_row, random.random())
            self._blocked_until = max(self._blocked_until, now + hold)


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
