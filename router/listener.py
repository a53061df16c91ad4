"""The listener process: a Verification and Storage SCP that puts every received instance in the spool.

`python -m router.listener CONFIG --index N [--log-json]` is started by the
supervisor, several times, all on one port (SO_REUSEPORT: the kernel spreads
the connections). It accepts every storage SOP class in every transfer syntax
and, for each C-STORE:
1. saves the data set bit for bit as `incoming/<name>` (a rename of the
   engine's file in `tmp/listener-N/` when the data set was large),
2. makes it durable as `durability` says,
3. announces it on the bus (`InstanceAccepted`) and answers Success.
The announcement never waits: it is queued in the process and sent, with the
others that queued meanwhile, by one publishing thread (`Announcer`); if it is
lost (the bus cannot take it, the process is killed), the file is still in
`incoming/`, where a worker's spool scan finds it within a few seconds. A
spool that is over `spool_limit` or cannot be written gets 0xA700 (Out of
Resources) with the reason as its Error Comment, and nothing of the instance
stays behind. A sender that proposes an asynchronous operations window may keep
up to `MAXIMUM_OUTSTANDING` C-STOREs outstanding: each is still answered only
once it is spooled, in order.

Signals are blocked in every thread and taken by the main thread with
`sigwait`. SIGTERM or SIGINT stop accepting, let open associations finish
(at most `DRAIN_TIMEOUT`), flush the bus and exit 0. SIGHUP re-reads the
config: `allowed_calling_ae`, `durability`, `spool_limit` and `max_pdu` apply
from then on; a file with problems is refused (logged) and the old one stays.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import queue
import signal
import sys
import threading
import time
from enum import IntEnum
from pathlib import Path

import zmq
from pydicom.dataset import Dataset

from router.bus import InstanceAccepted, encode, sender, worker_endpoints
from router.config import Config, ConfigError, RouterSettings, load_config
from router.logs import FIELDS, setup_logging
from router.net import evt
from router.net.acceptor import allow_outstanding
from router.net.ae import AE
from router.net.codes import reject_reason_text
from router.net.contexts import accept_all_storage
from router.net.presentation import VERIFICATION_SOP_CLASS
from router.net.server import AssociationServer
from router.net.status import OUT_OF_RESOURCES, SUCCESS
from router.spool import Spool, make_durable

LOGGER = logging.getLogger("router.listener")
DRAIN_TIMEOUT = 30.0  # seconds open associations get to finish after SIGTERM
BUS_LINGER_MS = 2000  # how long unsent announcements may hold up the exit
USAGE_REFRESH_INTERVAL = 1.0  # seconds between re-reads of incoming/'s size
MAXIMUM_ASSOCIATIONS = 32  # per listener process
MAXIMUM_OUTSTANDING = 16  # C-STOREs a sender may send ahead of the responses, if it proposes a window
LIVE_KEYS = ("allowed_calling_ae", "durability", "spool_limit", "max_pdu")  # a SIGHUP applies these
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
ANNOUNCE_BATCH = 256  # announcements sent as one multipart message at most
PUBLISHER_JOIN_TIMEOUT = 5.0  # seconds; the publishing thread never waits on the bus, so it ends at once


class ExitCode(IntEnum):
    OK = 0
    BAD_CONFIG = 1
    CANNOT_START = 2


class SpoolFull(Exception):
    """Taking an instance would put more than `limit` bytes in incoming/."""

    def __init__(self, held: int, limit: int) -> None:
        super().__init__(f"spool full ({held} bytes of {limit})")


class SpoolUsage:
    """The bytes in incoming/: a running total, re-read from the directory at most every `interval` s.

    Workers remove delivered files and sibling listeners add theirs, so the
    total is re-read now and then; in between, this listener's own additions
    keep it current without a directory scan per instance.
    """

    def __init__(self, directory: Path, interval: float = USAGE_REFRESH_INTERVAL) -> None:
        self.directory = directory
        self.interval = interval
        self._lock = threading.Lock()
        self._total = 0
        self._read_at: float | None = None

    def claim(self, size: int, limit: int | None) -> None:
        """Count `size` more bytes; SpoolFull (nothing counted) if that would pass `limit`."""
        with self._lock:
            if limit is not None:
                self._refresh()
                if self._total + size > limit:
                    raise SpoolFull(self._total, limit)
            self._total += size

    def release(self, size: int) -> None:
        """Take back a claim whose file was not kept."""
        with self._lock:
            self._total -= size

    def _refresh(self) -> None:
        now = time.monotonic()
        if self._read_at is None or now - self._read_at >= self.interval:
            self._total = bytes_in(self.directory)
            self._read_at = now


def bytes_in(directory: Path) -> int:
    """The size of the files in `directory` (a file removed meanwhile counts for nothing)."""
    total = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                total += entry.stat().st_size
    return total


class Announcer:
    """The PUSH socket to every worker, fed by the association threads through an in-process queue.

    An association thread only queues its message (no lock held across a
    system call, no socket of its own); one publishing thread takes what has
    queued up meanwhile and sends it as one multipart message, a batch, so a
    busy listener makes one ZeroMQ hop for many instances. A send never waits:
    a batch the bus cannot take now is logged, and its files are found in
    incoming/ by a worker's spool scan.
    """

    def __init__(self, endpoints: list[str]) -> None:
        self._context = zmq.Context()
        self._socket = sender(self._context, endpoints)
        self._pending: queue.SimpleQueue[InstanceAccepted | None] = queue.SimpleQueue()  # None: close
        self._thread = threading.Thread(target=self._publish, name="announcer", daemon=True)
        self._thread.start()

    def announce(self, message: InstanceAccepted) -> None:
        """Queue `message` for a worker."""
        self._pending.put(message)

    def close(self, linger_ms: int) -> None:
        """Send what is queued, give it up to `linger_ms` to leave, then close."""
        self._pending.put(None)
        self._thread.join(PUBLISHER_JOIN_TIMEOUT)
        if self._thread.is_alive():
            LOGGER.warning("the bus did not take the last announcements in time: workers find the files in incoming/")
            return
        self._socket.close(linger=linger_ms)
        self._context.term()

    def _publish(self) -> None:
        while True:
            batch = [self._pending.get()]
            while len(batch) < ANNOUNCE_BATCH:
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            messages = [message for message in batch if message is not None]
            if messages:
                self._send(messages)
            if len(messages) < len(batch):
                return

    def _send(self, messages: list[InstanceAccepted]) -> None:
        try:
            self._socket.send_multipart([encode(message) for message in messages], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            LOGGER.warning(
                "bus announcement failed: a worker finds the files in incoming/ with its spool scan",
                extra={FIELDS: {"files": len(messages), "first": messages[0].name, "error": str(exc)}},
            )


class Listener:
    """One listener process's SCP, spool and bus socket."""

    def __init__(self, config: Config, index: int) -> None:
        self.config_path = config.path
        self.index = index
        self.settings = config.router
        self.spool = Spool(self.settings.spool)
        self.usage = SpoolUsage(self.spool.incoming)
        self.ae = AE(self.settings.ae_title)
        self.announcer: Announcer | None = None
        self.server: AssociationServer | None = None

    @property
    def name(self) -> str:
        return f"listener-{self.index}"

    def start(self) -> None:
        """Prepare the spool, connect the bus and serve; OSError or ZMQError if one cannot be had."""
        self.spool.create()
        self.ae.spool_directory = str(self.spool.fresh_tmp(self.name))
        self.ae.maximum_associations = MAXIMUM_ASSOCIATIONS
        self.ae.add_supported_context(VERIFICATION_SOP_CLASS)
        accept_all_storage(self.ae, unlisted=True)  # a private or newer class is routed too, never refused
        settings = self.settings
        self._apply(settings)
        self.announcer = Announcer(worker_endpoints(self.spool.bus, settings.bus, settings.workers))
        handlers = [
            (evt.EVT_C_STORE, self.store),
            (evt.EVT_ASYNC_OPS, allow_outstanding(MAXIMUM_OUTSTANDING)),
            (evt.EVT_REJECTED, log_rejected),
            (evt.EVT_ABORTED, log_aborted),
        ]
        address = (settings.listen.host, settings.listen.port)
        try:
            self.server = self.ae.start_server(address, block=False, evt_handlers=handlers, reuse_port=True)
        except OSError:
            self.announcer.close(linger_ms=0)
            raise
        LOGGER.info(f"listening on {settings.listen} as {settings.ae_title}", extra={FIELDS: {"pid": os.getpid()}})

    def _apply(self, settings: RouterSettings) -> None:
        self.settings = settings
        self.ae.require_calling_aet = list(settings.allowed_calling_ae)
        self.ae.maximum_pdu_size = settings.max_pdu

    def reload(self) -> None:
        """Re-read the config file; keep the old config if the new one has problems."""
        try:
            config = load_config(self.config_path)
        except ConfigError as error:
            problems = "; ".join(str(problem) for problem in error.problems)
            LOGGER.error(f"config reload refused, the old config stays: {problems}")
            return
        new = config.router
        kept = [field.name for field in dataclasses.fields(new)
                if field.name not in LIVE_KEYS and getattr(new, field.name) != getattr(self.settings, field.name)]
        self._apply(dataclasses.replace(self.settings, **{key: getattr(new, key) for key in LIVE_KEYS}))
        if kept:
            LOGGER.warning(f"config reloaded; {', '.join(kept)} change(s) only with a restart")
        else:
            LOGGER.info("config reloaded")

    def store(self, event: evt.Event) -> int | Dataset:
        """EVT_C_STORE: spool, make durable, announce; Success, or 0xA700 with the reason."""
        started = time.perf_counter()
        settings, request, received = self.settings, event.request, event.received
        size = len(received.file_header) + received.length
        try:
            self.usage.claim(size, settings.spool_limit)
        except SpoolFull as full:
            return refuse(event, str(full))
        name = self.spool.new_name(request.affected_sop_instance_uid)
        path = self.spool.path_of(name)
        try:
            event.save_as(path)
            make_durable(path, settings.durability)
        except OSError as exc:
            self.usage.release(size)
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            return refuse(event, f"cannot write the spool: {exc.strerror or exc}")
        transfer_syntax = event.context.transfer_syntax[0]
        self.announcer.announce(InstanceAccepted(
            name=name,
            sop_class_uid=request.affected_sop_class_uid,
            sop_instance_uid=request.affected_sop_instance_uid,
            transfer_syntax=transfer_syntax,
            calling_ae=event.assoc.requestor.ae_title,
            called_ae=event.assoc.called_ae_title,
            peer_address=event.assoc.requestor.address,
            size=size,
            accepted_at=time.time(),
        ))
        LOGGER.info("received", extra={FIELDS: {
            "sop_instance_uid": request.affected_sop_instance_uid,
            "from": peer_of(event),
            "size": size,
            "transfer_syntax": transfer_syntax,
            "ms": round((time.perf_counter() - started) * 1000, 2),
            "file": name,
        }})
        return SUCCESS

    def stop(self) -> None:
        """Stop accepting, let open associations finish (bounded), flush the bus."""
        LOGGER.info(f"stopping: no new associations, open ones get up to {DRAIN_TIMEOUT:g} s")
        if self.server is not None and not self.server.drain(DRAIN_TIMEOUT):
            LOGGER.warning(f"aborted the associations still open after {DRAIN_TIMEOUT:g} s")
        if self.announcer is not None:
            self.announcer.close(BUS_LINGER_MS)
        LOGGER.info("stopped")


def peer_of(event: evt.Event) -> str:
    """'CALLING_AE@address' of the association's requestor."""
    return f"{event.assoc.requestor.ae_title}@{event.assoc.requestor.address}"


def refuse(event: evt.Event, reason: str) -> Dataset:
    """The 0xA700 answer to a C-STORE that cannot be kept, with `reason` as its Error Comment."""
    LOGGER.error("refused: out of resources", extra={FIELDS: {
        "sop_instance_uid": event.request.affected_sop_instance_uid, "from": peer_of(event), "reason": reason,
    }})
    answer = Dataset()
    answer.Status = OUT_OF_RESOURCES
    answer.ErrorComment = reason
    return answer


def log_rejected(event: evt.Event) -> None:
    reply = event.assoc.reject_reason
    reason = reject_reason_text(reply.source, reply.reason)
    LOGGER.warning("association rejected", extra={FIELDS: {"from": peer_of(event), "reason": reason}})


def log_aborted(event: evt.Event) -> None:
    LOGGER.warning("association aborted", extra={FIELDS: {"from": peer_of(event)}})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m router.listener", description="The router's DICOM listener")
    parser.add_argument("config", help="the router's config file")
    parser.add_argument("--index", type=int, default=0, help="this listener's number (names its tmp directory)")
    parser.add_argument("--log-json", action="store_true", help="log JSON lines instead of plain text")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    # Blocked in every thread (the engine's and ZeroMQ's inherit the mask), taken by sigwait below.
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    args = parse_args(argv)
    setup_logging(args.log_json, f"listener-{args.index}")
    try:
        config = load_config(args.config)
    except ConfigError as error:
        LOGGER.error(f"cannot start, the config has problems: {'; '.join(str(p) for p in error.problems)}")
        return ExitCode.BAD_CONFIG
    listener = Listener(config, args.index)
    try:
        listener.start()
    except (OSError, zmq.ZMQError) as exc:
        LOGGER.error(f"cannot start on {config.router.listen} with the spool {config.router.spool}: {exc}")
        return ExitCode.CANNOT_START
    while signal.sigwait(SIGNALS) == signal.SIGHUP:
        listener.reload()
    listener.stop()
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
