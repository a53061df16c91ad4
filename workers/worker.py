"""The worker process: take announced instances off the bus, record their jobs, run the deliveries.

`Worker(config_path, index).run()` is the whole life of `python -m workers
CONFIG --index N`. Its main thread binds the PULL endpoint of index N and
waits, in one zmq poll, for bus messages, for signals (through a wake-up
socket) and for its two timers:

- every `refresh_interval`, if another connection changed the queue (an
  operator's `router queue retry`, say), the delivery threads are woken;
- every `scan_interval` (and at start), the rows of finished instances are
  deleted and, once the messages waiting on the bus are recorded, the
  spool's `incoming/` is scanned for files older than `scan_grace` that the
  queue does not know: their bus message was lost with a killed process.
  Each is recorded like a message, with the facts its file meta gives
  (calling AE from Source Application Entity Title, called AE = the router's
  title, peer address unknown). Recording is idempotent by spool name, so a
  scan that comes before a slow announcement only costs the instance those
  facts.

A listener may send several messages as one multipart message; the worker
takes every waiting frame, up to a `BATCH` at a time. Each announced instance
is evaluated by the rule set, compiled once per config (re)load, and recorded
with its jobs in one transaction (a batch of messages shares it); the new
jobs of each lane, as many as its runner has room for, are recorded claimed
and handed to the runner in memory (`DestinationRunner.offer`), the others
wait in the queue, where the runner claims them. The process's connections
to the queue take turns through one lock (`WorkerIdentity.write_lock`). The
spool file's header (never its pixel data) is read only when a rule looks at
data set elements, or when a prefetch needs the instance's study. One
`DestinationRunner` per lane delivers: the copies of each destination, and
the prefetches of each DICOM destination. At start, the jobs a killed
predecessor of the same index left in flight are queued again. SIGHUP reloads the config (a file with problems is logged and the old
config kept) and swaps the rule set; jobs already recorded keep their
decision (their morphs and prefetch orders are in their rows). SIGTERM or
SIGINT: stop taking messages, let deliveries in flight finish for up to
`drain_timeout`, leave the rest queued, return 0.

A queue that cannot be written (a full disk) stops nothing: the worker's
`QueueOutage` logs it once and sets the wait before the next try. At start,
the queue is opened (and the predecessor's jobs reclaimed) again after each
wait, until it works or a stop signal comes. Running, the messages that
arrive during a wait are kept in memory (up to `KEPT_LIMIT`; their files stay
in the spool) and the scan waits too: the first recording after the wait
takes the kept messages first, so they keep their facts (the peer's address,
the called AE title); one kept past the limit is found by a scan, with the
facts its file holds.
"""

from __future__ import annotations

import logging
import select
import signal
import socket
import time
from collections import deque
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import zmq
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info

from router.bus import BusError, InstanceAccepted, JobsWaiting, decode, encode, receiver, sender, worker_endpoints
from router.config import Config, ConfigError, DicomDestination, FolderDestination, load_config
from router.logs import FIELDS
from router.spool import Spool
from rules.decision import Decision
from rules.evaluate import InstanceFacts, RuleSet, read_header
from workers.jobs import JobKind, Lane
from workers.queue import Job, Queue, QueueUnwritable, Recording
from workers.runner import DestinationRunner, WorkerIdentity
from workers.shares import delivering_worker

LOGGER = logging.getLogger("workers")
BATCH = 256  # messages recorded in one transaction at most
KEPT_LIMIT = 100_000  # announcements kept while the queue cannot be written (the oldest go first)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
WATCHED_SIGNALS = (*STOP_SIGNALS, signal.SIGHUP)


@dataclass(frozen=True)
class Timing:
    """The worker's timers, in seconds."""

    scan_interval: float = 5.0
    scan_grace: float = 5.0
    refresh_interval: float = 2.0
    drain_timeout: float = 10.0


class WorkerError(Exception):
    """A worker that cannot start (its index has no endpoint)."""


class Worker:
    """One worker process; see the module docstring."""

    def __init__(self, config_path: Path, index: int, timing: Timing = Timing()) -> None:
        self.config_path = config_path
        self.config: Config = load_config(config_path)
        self.ruleset = RuleSet.compile(self.config.rules)
        self.index = index
        self.timing = timing
        settings = self.config.router
        if not 0 <= index < settings.workers:
            raise WorkerError(f"worker index {index} is outside 0..{settings.workers - 1} (router.workers)")
        self.spool = Spool(settings.spool)
        self.spool.create()
        self.identity = WorkerIdentity(self.spool, index, settings)
        self.endpoint = worker_endpoints(self.spool.bus, settings.bus, settings.workers)[index]
        self.runners: dict[Lane, DestinationRunner] = {}
        self.retired: list[DestinationRunner] = []  # replaced by a reload, finishing their last jobs
        self.kept: deque[InstanceAccepted] = deque(maxlen=KEPT_LIMIT)  # not recorded yet: the queue could not be written
        self.delivered_by: dict[Lane, int] = {}  # lanes another worker delivers for this one (workers.shares)
        self.bus: zmq.Context | None = None
        self.peers: dict[int, zmq.Socket] = {}  # the other workers this one told of jobs waiting

    # ---- the life of the process ---------------------------------------------------------------------
    def run(self) -> int:
        wake_read, wake_write = socket.socketpair()
        wake_write.setblocking(False)
        previous = {number: signal.signal(number, _ignore) for number in WATCHED_SIGNALS}
        old_wakeup = signal.set_wakeup_fd(wake_write.fileno())
        context = self.bus = zmq.Context()
        pull = receiver(context, self.endpoint)
        queue = None
        try:
            queue = self._open(wake_read)
            if queue is not None:
                self._start(queue, pull)
                self._loop(queue, pull, wake_read)
                _guarded(self._take_batch, queue, pull)  # what had already arrived when the stop came
        finally:
            pull.close(0)
            for peer in self.peers.values():
                peer.close(0)
            context.term()
            self._drain()
            if queue is not None:
                queue.close()
            signal.set_wakeup_fd(old_wakeup)
            for number, handler in previous.items():
                signal.signal(number, handler)
            wake_read.close()
            wake_write.close()
        LOGGER.info("stopped")
        return 0

    def _open(self, wake: socket.socket) -> Queue | None:
        """The queue with this worker's jobs reclaimed, tried after each wait the outage sets; None on a stop signal."""
        while True:
            try:
                return self._reclaimed(self.identity.queue())
            except QueueUnwritable:
                pass  # the outage logged it
            readable, _, _ = select.select([wake], [], [], self.identity.outage.pause())
            if readable and self._handle_signals(wake, None):
                return None

    def _reclaimed(self, queue: Queue) -> Queue:
        """`queue`, once the jobs a killed predecessor left in flight are queued again (closed if that fails)."""
        try:
            reclaimed = queue.reclaim(self.index)
            adopted = queue.adopt(self.index, self.config.router.workers) if self.index == 0 else 0
        except BaseException:
            queue.close()
            raise
        LOGGER.info("started", extra={FIELDS: {"endpoint": self.endpoint, "reclaimed": reclaimed, "adopted": adopted}})
        return queue

    def _start(self, queue: Queue, pull: zmq.Socket) -> None:
        self._apply_destinations(queue)
        _guarded(self._take_messages, queue, pull)  # what was announced is recorded with its own facts
        _guarded(self._scan, queue)

    def _loop(self, queue: Queue, pull: zmq.Socket, wake: socket.socket) -> None:
        poller = zmq.Poller()
        poller.register(pull, zmq.POLLIN)
        poller.register(wake.fileno(), zmq.POLLIN)
        now = time.monotonic()
        next_scan, next_refresh = now + self.timing.scan_interval, now + self.timing.refresh_interval
        while True:
            wait = max(0.0, min(next_scan, next_refresh) - time.monotonic())
            ready = dict(poller.poll(wait * 1000))
            if wake.fileno() in ready and self._handle_signals(wake, queue):
                return
            if pull in ready:
                _guarded(self._take_messages, queue, pull)
            now = time.monotonic()
            if now >= next_refresh:
                next_refresh = now + self.timing.refresh_interval
                _guarded(self._refresh, queue)
            if now >= next_scan:
                next_scan = now + self.timing.scan_interval
                _guarded(self._take_messages, queue, pull)  # what was announced is recorded with its own facts
                _guarded(self._scan, queue)

    def _refresh(self, queue: Queue) -> None:
        """Wake the delivery threads when another connection changed the queue (a retry, say)."""
        if queue.data_changed():
            self._wake(queue.queued_lanes(self.index))

    def _handle_signals(self, wake: socket.socket, queue: Queue | None) -> bool:
        """Act on the signals that arrived; True when one of them asks to stop."""
        numbers = set(wake.recv(64))
        stop = next((number for number in STOP_SIGNALS if number in numbers), None)
        if stop is not None:
            LOGGER.info("stopping", extra={FIELDS: {"signal": stop.name}})
            return True
        if signal.SIGHUP in numbers:
            _guarded(self._reload, queue)
        return False

    def _drain(self) -> None:
        """Let the deliveries in flight finish within the drain timeout, then break them off."""
        runners = [*self.runners.values(), *self.retired]
        for runner in runners:
            runner.stop()
        deadline = time.monotonic() + self.timing.drain_timeout
        for runner in runners:
            if not runner.join(deadline):
                LOGGER.warning(f"jobs of '{runner.lane.label}' did not finish in time; they stay queued")
                runner.abort()

    # ---- recording --------------------------------------------------------------------------------
    def _take_messages(self, queue: Queue, pull: zmq.Socket) -> None:
        """Record every message waiting on the socket, a batch per transaction."""
        while self._take_batch(queue, pull) >= BATCH:
            pass

    def _take_batch(self, queue: Queue, pull: zmq.Socket) -> int:
        """Record the waiting messages, BATCH frames or a few more, in one transaction; return how many frames were taken."""
        frames: list[bytes] = []
        while len(frames) < BATCH:
            try:
                frames += pull.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
        batch = [message for message in map(self._readable, frames) if message is not None]
        if batch:
            self._record(queue, batch)
        return len(frames)

    def _readable(self, data: bytes) -> InstanceAccepted | None:
        """The announcement in `data`; None for anything else (another worker's JobsWaiting wakes its lane)."""
        try:
            message = decode(data)
            if isinstance(message, JobsWaiting):
                self._wake({Lane(message.destination, JobKind(message.kind))})
                return None
            self.spool.path_of(message.name)
        except (BusError, ValueError) as exc:
            LOGGER.error(f"ignoring a bus message: {exc}")
            return None
        return message

    def _tell(self, lanes: set[Lane]) -> None:
        """Tell the workers that deliver some of `lanes` for this one that jobs wait for them."""
        for lane in lanes:
            worker = self.delivered_by.get(lane)
            if worker is not None and self.bus is not None:
                with suppress(zmq.Again):  # its queue is full: it finds the jobs at its next look at the queue
                    self._peer(worker).send(encode(JobsWaiting(lane.destination, lane.kind.value)), zmq.NOBLOCK)

    def _peer(self, worker: int) -> zmq.Socket:
        """A PUSH socket to worker `worker`'s endpoint (made at first use)."""
        if worker not in self.peers:
            assert self.bus is not None
            settings = self.identity.router  # as the worker started: a change of router: needs a restart
            endpoints = worker_endpoints(self.spool.bus, settings.bus, settings.workers)
            self.peers[worker] = sender(self.bus, [endpoints[worker]])
        return self.peers[worker]

    def _hand_over(self, queue: Queue) -> None:
        """Give the workers that deliver lanes for this one the jobs of those lanes it still holds queued
        (recorded before a reload changed the shares, or let go by a runner that was retired)."""
        for lane, worker in self.delivered_by.items():
            if queue.hand_over(lane, self.index, worker):
                self._tell({lane})

    def _record(self, queue: Queue, messages: list[InstanceAccepted]) -> int:
        """Record the kept messages, then `messages`, with their jobs, a BATCH per transaction; return how many were new.

        While the queue's outage waits, or if the queue cannot be written, they are kept for the next time.
        """
        if self.identity.outage.waiting():
            self._keep(messages)
            return 0
        pending = [*self.kept, *messages]
        self.kept.clear()
        return sum(self._record_batch(queue, pending[start : start + BATCH]) for start in range(0, len(pending), BATCH))

    def _keep(self, messages: list[InstanceAccepted]) -> None:
        """Keep announcements the queue could not take; past KEPT_LIMIT the oldest go (said once), to a later scan."""
        if len(self.kept) + len(messages) > KEPT_LIMIT and len(self.kept) < KEPT_LIMIT:
            LOGGER.warning(f"over {KEPT_LIMIT} announcements wait for the queue: the oldest are left to a spool scan")
        self.kept.extend(messages)

    def _record_batch(self, queue: Queue, messages: list[InstanceAccepted]) -> int:
        if self.identity.outage.waiting():
            self._keep(messages)
            return 0
        ruleset = self.ruleset  # one rule set for the whole batch, even if a reload comes meanwhile
        recordings = [self._decide(ruleset, message) for message in messages]
        room = {lane: runner.room() for lane, runner in self.runners.items()}
        try:
            recorded, claimed = queue.record_claiming(recordings, self.index, time.time(), room, self.delivered_by)
        except QueueUnwritable:
            self._keep(messages)  # logged by the outage; the files stay in the spool
            return 0
        except Exception:  # noqa: BLE001 - the files stay in the spool: the next scan records them
            LOGGER.exception(f"could not record {len(messages)} instance(s); the spool scan will")
            return 0
        new = set(recorded)
        for recording in recordings:
            if recording.message in new and not recording.decision.forwards:
                _log_not_forwarded(recording.message, recording.decision)
        handed: dict[Lane, list[Job]] = {}
        for job in claimed:
            handed.setdefault(job.lane, []).append(job)
        for lane, jobs in handed.items():
            self.runners[lane].offer(jobs)
        lanes = {lane for recording in recordings for lane in _lanes(recording.decision)}
        self._wake({lane for lane in lanes if len(handed.get(lane, ())) >= room.get(lane, 0)})  # some wait in the queue
        if recorded:
            self._tell(lanes)
        return len(recorded)

    def _decide(self, ruleset: RuleSet, message: InstanceAccepted) -> Recording:
        """What the rules decide for an announced instance, with its study when a prefetch needs it."""
        header = self._header(message) if ruleset.needs_header else None
        decision = ruleset.evaluate(facts_of(message, header))
        if not decision.prefetches:
            return Recording(message, decision)
        if header is None:
            header = self._header(message)
        study = "" if header is None else str(header.get("StudyInstanceUID", "")).strip()
        return Recording(message, self._queryable(decision), study)

    def _header(self, message: InstanceAccepted) -> Dataset | None:
        """The spool file's header without its pixel data; None (logged) if it cannot be read."""
        try:
            return read_header(self.spool.path_of(message.name))
        except FileNotFoundError:
            return None  # finished meanwhile: recording skips it
        except Exception as exc:  # noqa: BLE001 - pydicom reports a bad file with many exception types
            LOGGER.error(f"cannot read the header of {message.name}: {exc}; the rules see no data set elements")
            return None

    def _queryable(self, decision: Decision) -> Decision:
        """The decision without the prefetches whose source is not a DICOM destination (each logged)."""
        kept = []
        for prefetch in decision.prefetches:
            if isinstance(self.config.destinations.get(prefetch.source), DicomDestination):
                kept.append(prefetch)
            else:
                LOGGER.error(f"rule '{prefetch.rule}' prefetches from '{prefetch.source}', which is not a DICOM destination")
        return replace(decision, prefetches=tuple(kept))

    def _wake(self, lanes: set[Lane]) -> None:
        for lane in lanes:
            runner = self.runners.get(lane)
            if runner is not None:
                runner.wake()

    def _scan(self, queue: Queue) -> None:
        """Forget finished instances; record the accepted files older than the grace period the queue does not know.

        Not while the queue's outage waits.
        """
        if self.identity.outage.waiting():
            return
        if self.kept:
            self._record(queue, [])  # kept announcements first, with their own facts
            if self.kept:
                return  # the queue failed again
        try:
            queue.finish_done()
            self._hand_over(queue)
            known = queue.known_names()
            cutoff = time.time() - self.timing.scan_grace
            found = [
                message
                for name in self.spool.accepted()
                if name not in known and (message := self._message_from_file(name, cutoff)) is not None
            ]
        except OSError as exc:
            LOGGER.error(f"cannot scan the spool: {exc.strerror or exc}")
            return
        recorded = sum(self._record(queue, found[start : start + BATCH]) for start in range(0, len(found), BATCH))
        if recorded:
            LOGGER.warning("recorded unannounced spool files", extra={FIELDS: {"count": recorded}})

    def _message_from_file(self, name: str, cutoff: float) -> InstanceAccepted | None:
        """The announcement a file older than `cutoff` would have had; None for a younger or vanished one."""
        path = self.spool.path_of(name)
        try:
            status = path.stat()
        except FileNotFoundError:
            return None
        if status.st_mtime > cutoff:
            return None
        try:
            meta = read_file_meta_info(path)
        except Exception as exc:  # noqa: BLE001 - a file pydicom cannot read still gets its jobs: they fail with the reason
            LOGGER.error(f"unreadable spool file {name}: {exc}")
            meta = {}
        return InstanceAccepted(
            name=name,
            sop_class_uid=str(meta.get("MediaStorageSOPClassUID", "")),
            sop_instance_uid=str(meta.get("MediaStorageSOPInstanceUID", "")),
            transfer_syntax=str(meta.get("TransferSyntaxUID", "")),
            calling_ae=str(meta.get("SourceApplicationEntityTitle", "")).strip(),
            called_ae=self.config.router.ae_title,
            peer_address="",
            size=status.st_size,
            accepted_at=status.st_mtime,
        )

    # ---- config --------------------------------------------------------------------------------------
    def _reload(self, queue: Queue | None) -> None:
        """Load the config again (kept if it has problems); None: the runners have not started yet."""
        try:
            config = load_config(self.config_path)
        except ConfigError as error:
            for problem in error.problems:
                LOGGER.error(f"config not reloaded: {problem}")
            return
        if config.router != self.config.router:
            LOGGER.warning("the router: section changed; it takes effect when the worker restarts")
        ruleset = RuleSet.compile(config.rules)
        self.config, self.ruleset = config, ruleset
        if queue is not None:
            self._apply_destinations(queue)
        LOGGER.info("config reloaded", extra={FIELDS: {"rules": len(config.rules), "destinations": len(config.destinations)}})

    def _apply_destinations(self, queue: Queue) -> None:
        """Start, replace or stop runners so that there is one per lane of the configured destinations."""
        wanted = _lanes_of(self.config)
        self.delivered_by = {
            lane: worker for lane, destination in wanted.items() if (worker := self._deliverer(lane, destination)) != self.index
        }
        wanted = {lane: destination for lane, destination in wanted.items() if lane not in self.delivered_by}
        for lane in list(self.runners):
            if wanted.get(lane) != self.runners[lane].destination:
                runner = self.runners.pop(lane)
                runner.stop()
                self.retired.append(runner)
        for lane, destination in wanted.items():
            if lane not in self.runners:
                self.runners[lane] = DestinationRunner(destination, self.identity, lane.kind)
                self.runners[lane].start()
        self.retired = [runner for runner in self.retired if runner.alive()]
        _guarded(self._hand_over, queue)
        for lane in sorted(queue.queued_lanes(self.index) - set(wanted) - set(self.delivered_by)):
            LOGGER.warning(f"jobs wait for '{lane.label}', which the config no longer has")

    def _deliverer(self, lane: Lane, destination: DicomDestination | FolderDestination) -> int:
        """The worker that delivers this worker's jobs of `lane`: itself, unless it has no share of a
        DICOM destination's associations."""
        if lane.kind is not JobKind.STORE or not isinstance(destination, DicomDestination):
            return self.index
        return delivering_worker(destination.max_associations, self.identity.router.workers, self.index)


def _lanes_of(config: Config) -> dict[Lane, DicomDestination | FolderDestination]:
    """Every lane of the config: each destination's copies, and each DICOM destination's prefetches."""
    lanes: dict[Lane, DicomDestination | FolderDestination] = {}
    for name, destination in config.destinations.items():
        lanes[Lane(name)] = destination
        if isinstance(destination, DicomDestination):
            lanes[Lane(name, JobKind.PREFETCH)] = destination
    return lanes


def _lanes(decision: Decision) -> set[Lane]:
    """The lanes the jobs of `decision` go to."""
    copies = {Lane(forward.destination) for forward in decision.forwards}
    return copies | {Lane(prefetch.source, JobKind.PREFETCH) for prefetch in decision.prefetches}


def facts_of(message: InstanceAccepted, header: Dataset | None = None) -> InstanceFacts:
    return InstanceFacts(
        message.sop_class_uid,
        message.sop_instance_uid,
        message.transfer_syntax,
        message.calling_ae,
        message.called_ae,
        message.peer_address,
        header,
    )


def _log_not_forwarded(message: InstanceAccepted, decision: Decision) -> None:
    fields = {"sop_instance_uid": message.sop_instance_uid, "from": message.calling_ae, "rules": list(decision.matched)}
    LOGGER.info("dropped by the rules" if decision.dropped else "forwarded nowhere", extra={FIELDS: fields})


def _guarded(action: Callable[..., None], *arguments: object) -> None:
    """Run one of the main loop's actions; an error is logged and the worker goes on."""
    try:
        action(*arguments)
    except QueueUnwritable:
        pass  # logged by the queue's outage; the next timer tries again after its wait
    except Exception:  # noqa: BLE001 - the worker outlives a failed action; the next timer tries again
        LOGGER.exception(f"{action.__name__.strip('_')} failed")


def _ignore(number: int, frame: object) -> None:
    """Signals are read from the wake-up socket by the main loop; the handler itself does nothing."""
