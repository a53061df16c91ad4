"""The worker process: take announced instances off the bus, record their jobs, run the deliveries.

`Worker(config_path, index).run()` is the whole life of `python -m workers
CONFIG --index N`. Its main thread binds the PULL endpoint of index N and
waits, in one zmq poll, for bus messages, for signals (through a wake-up
socket) and for its two timers:

- every `refresh_interval`, if another connection changed the queue (an
  operator's `router queue retry`, say), the delivery threads are woken;
- every `scan_interval` (and at start), the rows of finished instances are
  deleted and the spool's `incoming/` is scanned for files older than
  `scan_grace` that the queue does not know: their bus message was lost with
  a killed process. Each is recorded like a message,
  with the facts its file meta gives (calling AE from Source Application
  Entity Title, called AE = the router's title, peer address unknown).

Each announced instance is evaluated by the rules and recorded with its jobs
in one transaction (a batch of messages shares it); the destinations'
`DestinationRunner`s deliver. At start, the jobs a killed predecessor of the
same index left in flight are queued again. SIGHUP reloads the config (a
file with problems is logged and the old config kept); jobs already recorded
keep their decision. SIGTERM or SIGINT: stop taking messages, let deliveries
in flight finish for up to `drain_timeout`, leave the rest queued, return 0.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import zmq
from pydicom.filereader import read_file_meta_info

from router.bus import BusError, InstanceAccepted, decode, receiver, worker_endpoints
from router.config import Config, ConfigError, load_config
from router.logs import FIELDS
from router.spool import Spool
from rules.evaluate import Decision, InstanceFacts, evaluate
from workers.queue import Queue
from workers.runner import DestinationRunner, WorkerIdentity

LOGGER = logging.getLogger("workers")
BATCH = 256  # messages recorded in one transaction at most
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
WATCHED_SIGNALS = (*STOP_SIGNALS, signal.SIGHUP)


@dataclass(frozen=True)
class Timing:
    """The worker's timers, in seconds."""

    scan_interval: float = 30.0
    scan_grace: float = 10.0
    refresh_interval: float = 2.0
    drain_timeout: float = 10.0


class WorkerError(Exception):
    """A worker that cannot start (its index has no endpoint)."""


class Worker:
    """One worker process; see the module docstring."""

    def __init__(self, config_path: Path, index: int, timing: Timing = Timing()) -> None:
        self.config_path = config_path
        self.config: Config = load_config(config_path)
        self.index = index
        self.timing = timing
        settings = self.config.router
        if not 0 <= index < settings.workers:
            raise WorkerError(f"worker index {index} is outside 0..{settings.workers - 1} (router.workers)")
        self.spool = Spool(settings.spool)
        self.spool.create()
        self.identity = WorkerIdentity(self.spool, index, settings)
        self.endpoint = worker_endpoints(self.spool.bus, settings.bus, settings.workers)[index]
        self.runners: dict[str, DestinationRunner] = {}
        self.retired: list[DestinationRunner] = []  # replaced by a reload, finishing their last jobs

    # ---- the life of the process ---------------------------------------------------------------------
    def run(self) -> int:
        wake_read, wake_write = socket.socketpair()
        wake_write.setblocking(False)
        previous = {number: signal.signal(number, _ignore) for number in WATCHED_SIGNALS}
        old_wakeup = signal.set_wakeup_fd(wake_write.fileno())
        context = zmq.Context()
        pull = receiver(context, self.endpoint)
        queue = Queue(self.spool)
        try:
            self._start(queue)
            self._loop(queue, pull, wake_read)
            self._take_batch(queue, pull)  # what had already arrived when the stop came
        finally:
            pull.close(0)
            context.term()
            self._drain()
            queue.close()
            signal.set_wakeup_fd(old_wakeup)
            for number, handler in previous.items():
                signal.signal(number, handler)
            wake_read.close()
            wake_write.close()
        LOGGER.info("stopped")
        return 0

    def _start(self, queue: Queue) -> None:
        reclaimed = queue.reclaim(self.index)
        adopted = queue.adopt(self.index, self.config.router.workers) if self.index == 0 else 0
        LOGGER.info("started", extra={FIELDS: {"endpoint": self.endpoint, "reclaimed": reclaimed, "adopted": adopted}})
        self._apply_destinations(queue)
        self._scan(queue)

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
                _guarded(self._scan, queue)

    def _refresh(self, queue: Queue) -> None:
        """Wake the delivery threads when another connection changed the queue (a retry, say)."""
        if queue.data_changed():
            self._wake(queue.queued_destinations(self.index))

    def _handle_signals(self, wake: socket.socket, queue: Queue) -> bool:
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
                LOGGER.warning(f"deliveries to '{runner.destination.name}' did not finish in time; they stay queued")
                runner.abort()

    # ---- recording --------------------------------------------------------------------------------
    def _take_messages(self, queue: Queue, pull: zmq.Socket) -> None:
        """Record every message waiting on the socket, a batch per transaction."""
        while self._take_batch(queue, pull) == BATCH:
            pass

    def _take_batch(self, queue: Queue, pull: zmq.Socket) -> int:
        """Record up to BATCH waiting messages in one transaction; return how many were taken."""
        batch, taken = [], 0
        while taken < BATCH:
            try:
                data = pull.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            taken += 1
            message = self._readable(data)
            if message is not None:
                batch.append(message)
        if batch:
            self._record(queue, batch)
        return taken

    def _readable(self, data: bytes) -> InstanceAccepted | None:
        try:
            message = decode(data)
            self.spool.path_of(message.name)
        except (BusError, ValueError) as exc:
            LOGGER.error(f"ignoring a bus message: {exc}")
            return None
        return message

    def _record(self, queue: Queue, messages: list[InstanceAccepted]) -> None:
        rules = self.config.rules  # one config for the whole batch, even if a reload comes meanwhile
        decisions = {message.name: evaluate(rules, facts_of(message)) for message in messages}
        try:
            recorded = queue.record(((m, decisions[m.name]) for m in messages), self.index, time.time())
        except Exception:  # noqa: BLE001 - the files stay in the spool: the next scan records them
            LOGGER.exception(f"could not record {len(messages)} instance(s); the spool scan will")
            return
        for message in recorded:
            if not decisions[message.name].destinations:
                _log_dropped(message, decisions[message.name])
        self._wake({name for decision in decisions.values() for name in decision.destinations})

    def _wake(self, destinations: set[str]) -> None:
        for name in destinations:
            runner = self.runners.get(name)
            if runner is not None:
                runner.wake()

    def _scan(self, queue: Queue) -> None:
        """Forget finished instances; record the accepted files older than the grace period the queue does not know."""
        try:
            queue.finish_done()
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
        for start in range(0, len(found), BATCH):
            self._record(queue, found[start : start + BATCH])
        if found:
            LOGGER.warning("recorded unannounced spool files", extra={FIELDS: {"count": len(found)}})

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
    def _reload(self, queue: Queue) -> None:
        try:
            config = load_config(self.config_path)
        except ConfigError as error:
            for problem in error.problems:
                LOGGER.error(f"config not reloaded: {problem}")
            return
        if config.router != self.config.router:
            LOGGER.warning("the router: section changed; it takes effect when the worker restarts")
        self.config = config
        self._apply_destinations(queue)
        LOGGER.info("config reloaded", extra={FIELDS: {"rules": len(config.rules), "destinations": len(config.destinations)}})

    def _apply_destinations(self, queue: Queue) -> None:
        """Start, replace or stop runners so that there is one per configured destination."""
        wanted = self.config.destinations
        for name in list(self.runners):
            if wanted.get(name) != self.runners[name].destination:
                runner = self.runners.pop(name)
                runner.stop()
                self.retired.append(runner)
        for name, destination in wanted.items():
            if name not in self.runners:
                self.runners[name] = DestinationRunner(destination, self.identity)
                self.runners[name].start()
        self.retired = [runner for runner in self.retired if runner.alive()]
        for name in sorted(queue.queued_destinations(self.index) - set(wanted)):
            LOGGER.warning(f"jobs wait for destination '{name}', which the config no longer has")


def facts_of(message: InstanceAccepted) -> InstanceFacts:
    return InstanceFacts(
        message.sop_class_uid,
        message.sop_instance_uid,
        message.transfer_syntax,
        message.calling_ae,
        message.called_ae,
        message.peer_address,
    )


def _log_dropped(message: InstanceAccepted, decision: Decision) -> None:
    fields = {"sop_instance_uid": message.sop_instance_uid, "from": message.calling_ae, "rules": list(decision.matched)}
    LOGGER.info("dropped by the rules", extra={FIELDS: fields})


def _guarded(action: Callable[..., None], *arguments: object) -> None:
    """Run one of the main loop's actions; an error is logged and the worker goes on."""
    try:
        action(*arguments)
    except Exception:  # noqa: BLE001 - the worker outlives a failed action; the next timer tries again
        LOGGER.exception(f"{action.__name__.strip('_')} failed")


def _ignore(number: int, frame: object) -> None:
    """Signals are read from the wake-up socket by the main loop; the handler itself does nothing."""
