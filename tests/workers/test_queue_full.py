"""A queue file that cannot be written (a full disk): the worker says so once, keeps running and loses nothing.

The process tests run the worker with a file size limit (`LimitedWorkerProcess`):
at 0 no write to queue.db or its WAL gets through, as on a full disk, and
SQLite reports a disk I/O error. Lifting the limit plays the operator freeing
space. The worker must not die, must log one line naming the queue file and the
reason (no traceback), must keep every spool file until its jobs are recorded
and settled, and must resume by itself.
"""

from __future__ import annotations

import logging
import resource
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from router.config import load_config
from router.net import AE, evt
from router.net.status import SUCCESS
from rules.decision import Decision, Forward
from tests.conftest import LOOPBACK, pick_free_port, wait_until
from tests.interop import store_data
from tests.workers.harness import (
    FAST_SCAN,
    LimitedWorkerProcess,
    RouterSetup,
    instances,
    received,
)
from tests.workers.test_queue import accepted
from workers import queue as queue_module
from workers.jobs import Lane
from workers.queue import JobState, Queue, QueueOutage, QueueUnwritable, Recording
from workers.runner import DestinationRunner, WorkerIdentity

pytestmark = pytest.mark.timeout(90)

UNWRITABLE = "cannot write the queue"
WRITABLE_AGAIN = "can be written again"
NO_SPACE = 0  # a file size limit that lets no write through
ANY_SIZE = resource.RLIM_INFINITY
OUTAGE = 4.0  # seconds the disk stays full: a few rounds of the back-off (1 s, 2 s, ...)
RECOVERY_TIMEOUT = 20.0  # the next try comes within the back-off of the last round, then the scan (1 s)
HOLD_TIMEOUT = 30.0  # the longest a held C-STORE waits for its release


def limited_worker(setup: RouterSetup, running, *options: str, file_size: int = ANY_SIZE) -> LimitedWorkerProcess:
    """A worker (not running yet) that `running` kills at teardown."""
    worker = LimitedWorkerProcess(setup, *options, file_size=file_size)
    running["workers"].append(worker)
    return worker


def survives(worker: LimitedWorkerProcess, seconds: float) -> bool:
    """True if the worker is still running `seconds` from now."""
    assert worker.process is not None
    return not wait_until(lambda: worker.process.poll() is not None, seconds)


def told_once(worker: LimitedWorkerProcess, queue_path: Path) -> bool:
    """One line says the queue cannot be written, naming the file and the reason; no traceback."""
    lines = [line for line in worker.output().splitlines() if UNWRITABLE in line]
    return (
        len(lines) == 1
        and f"{UNWRITABLE} {queue_path} (disk I/O error)" in lines[0]
        and " ERROR " in lines[0]
        and "Traceback" not in worker.output()
    )


def spool_names(setup: RouterSetup) -> set[str]:
    return set(setup.spool.accepted())


def test_a_worker_that_cannot_write_its_queue_at_start_waits_and_starts_once_it_can(
    setup, running, announcer_for, tmp_path
):
    archive = setup.folder("archive")
    setup.forward_all("archive")
    setup.write()
    worker = limited_worker(setup, running, *FAST_SCAN, file_size=NO_SPACE).launch()
    assert wait_until(lambda: UNWRITABLE in worker.output(), 20), worker.output()
    announcer = announcer_for(setup)
    sent = instances(tmp_path / "data", 3)
    announcer.announce(*(announcer.put(instance) for instance in sent))

    assert survives(worker, OUTAGE), worker.output()
    assert told_once(worker, setup.spool.queue_path), worker.output()
    assert "started" not in worker.output()
    assert len(spool_names(setup)) == len(sent)

    worker.limit(ANY_SIZE)
    uids = [instance.sop_instance_uid for instance in sent]
    assert wait_until(lambda: received(archive) == {uid: 1 for uid in uids}, RECOVERY_TIMEOUT), worker.output()
    assert wait_until(lambda: not spool_names(setup), 10), worker.output()
    assert "started" in worker.output() and WRITABLE_AGAIN in worker.output()
    assert worker.output().count("from=MODALITY") == len(sent)  # the waiting announcements were recorded, facts and all
    assert worker.stop() == 0


def test_a_worker_waiting_for_its_queue_stops_at_once(setup, running):
    setup.folder("archive")
    setup.forward_all("archive")
    setup.write()
    worker = limited_worker(setup, running, file_size=NO_SPACE).launch()
    assert wait_until(lambda: UNWRITABLE in worker.output(), 20), worker.output()

    started = time.monotonic()
    assert worker.stop() == 0
    assert time.monotonic() - started < 5
    assert "stopped" in worker.output()


def test_instances_that_arrive_while_the_queue_cannot_be_written_are_delivered_once_it_can(
    setup, running, announcer_for, tmp_path
):
    archive = setup.folder("archive")
    setup.forward_all("archive")
    setup.write()
    worker = limited_worker(setup, running, *FAST_SCAN).start()
    worker.limit(NO_SPACE)
    announcer = announcer_for(setup)
    sent = instances(tmp_path / "data", 5)
    announcer.announce(*(announcer.put(instance) for instance in sent))

    assert wait_until(lambda: UNWRITABLE in worker.output(), 10), worker.output()
    assert survives(worker, OUTAGE), worker.output()
    assert told_once(worker, setup.spool.queue_path), worker.output()
    assert len(spool_names(setup)) == len(sent)  # every accepted file kept
    assert Queue(setup.spool).list_jobs() == [] and received(archive) == Counter()

    worker.limit(ANY_SIZE)
    uids = [instance.sop_instance_uid for instance in sent]
    assert wait_until(lambda: received(archive) == {uid: 1 for uid in uids}, RECOVERY_TIMEOUT), worker.output()
    assert wait_until(lambda: not spool_names(setup), 10), worker.output()
    assert WRITABLE_AGAIN in worker.output()
    assert told_once(worker, setup.spool.queue_path), worker.output()
    assert worker.output().count("from=MODALITY") == len(sent)  # recorded with their announcements' facts
    assert worker.stop() == 0


class HeldStoreSCP:
    """Our engine's Storage SCP (CT only) that holds each C-STORE until the test releases it; counts what it stored."""

    def __init__(self, port: int) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.received: Counter = Counter()
        self.ae = AE("STORESCP")
        self.ae.add_supported_context(store_data.CT_IMAGE_STORAGE)
        self.ae.start_server((LOOPBACK, port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])

    def _store(self, event) -> int:
        self.arrived.set()
        self.release.wait(HOLD_TIMEOUT)
        self.received[str(event.request.affected_sop_instance_uid)] += 1
        return SUCCESS

    def shutdown(self) -> None:
        self.release.set()
        self.ae.shutdown()


def test_a_delivery_that_cannot_be_recorded_keeps_its_spool_file_until_it_is(setup, running, announcer_for, tmp_path):
    port = pick_free_port()
    scp = HeldStoreSCP(port)
    try:
        setup.dicom("pacs", port)
        setup.forward_all("pacs")
        setup.write()
        worker = limited_worker(setup, running).start()
        (instance,) = instances(tmp_path / "data", 1)
        announcer = announcer_for(setup)
        message = announcer.put(instance)
        announcer.announce(message)
        assert scp.arrived.wait(10), worker.output()

        worker.limit(NO_SPACE)  # the disk fills while the instance is sent
        scp.release.set()
        assert wait_until(lambda: UNWRITABLE in worker.output(), 10), worker.output()
        assert scp.received == {instance.sop_instance_uid: 1}
        assert survives(worker, OUTAGE), worker.output()
        assert told_once(worker, setup.spool.queue_path), worker.output()
        assert setup.spool.path_of(message.name).exists()  # delivered, but not recorded as such: kept
        assert [job.state for job in Queue(setup.spool).list_jobs()] == [JobState.IN_FLIGHT]

        worker.limit(ANY_SIZE)
        assert wait_until(lambda: not spool_names(setup), RECOVERY_TIMEOUT), worker.output()
        queue = Queue(setup.spool)
        assert queue.list_jobs() == []
        assert [(counts.destination, counts.delivered) for counts in queue.counts(time.time())] == [("pacs", 1)]
        assert scp.received == {instance.sop_instance_uid: 1}  # not sent again
        assert WRITABLE_AGAIN in worker.output()
        assert worker.stop() == 0
    finally:
        scp.shutdown()


def test_a_queue_that_cannot_be_opened_says_which_file_and_why(tmp_path):
    spool = RouterSetup(tmp_path).spool
    spool.create()
    spool.queue_path.mkdir()  # not a file SQLite can open
    with pytest.raises(QueueUnwritable) as raised:
        Queue(spool)
    assert raised.value.path == spool.queue_path
    assert str(raised.value) == f"{UNWRITABLE} {spool.queue_path} (unable to open database file)"


def test_an_outage_is_logged_once_each_way_and_sets_a_growing_wait(tmp_path, caplog):
    outage = QueueOutage()
    error = QueueUnwritable(tmp_path / "queue.db", "database or disk is full")
    assert not outage.waiting()
    with caplog.at_level(logging.INFO, logger="workers"):
        outage.failed(error)
        first = outage.pause()
        outage.failed(error)  # during the wait: the same round
        assert 0.7 < first <= 1.0 and outage.pause() <= first
        outage.wrote(error.path)
        outage.wrote(error.path)
    assert not outage.waiting()
    assert [(record.levelname, record.getMessage()) for record in caplog.records] == [
        ("ERROR", f"{error}: accepted instances wait in the spool; trying again with a back-off"),
        ("INFO", f"the queue {error.path} {WRITABLE_AGAIN}"),
    ]


@pytest.mark.parametrize(
    "message, code, unwritable",
    [
        ("database or disk is full", 13, True),  # SQLITE_FULL
        ("attempt to write a readonly database", 8, True),  # SQLITE_READONLY
        ("disk I/O error", 10 | 3 << 8, True),  # SQLITE_IOERR_WRITE: an extended code
        ("no such table: jobs", 1, False),  # SQLITE_ERROR: a bug, not the disk
    ],
)
def test_which_sqlite_errors_say_the_queue_cannot_be_written(message, code, unwritable):
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    assert queue_module._unwritable(error) is unwritable


def test_a_runner_stopped_while_the_queue_cannot_be_opened_puts_its_jobs_back_once_it_can(tmp_path):
    """A reload retires a runner during an outage: the jobs handed to it go back to the queue when it
    can be written again, not at the worker's next start."""
    setup = RouterSetup(tmp_path)
    setup.folder("archive")
    setup.forward_all("archive")
    config = load_config(setup.write())
    lane = Lane("archive")
    queue = Queue(setup.spool)
    messages = [accepted(setup.spool, f"1.2.3.{number}") for number in range(3)]
    queue.record([Recording(message, Decision((Forward("archive", rule="everything"),))) for message in messages], 0, time.time())
    claimed = queue.claim_many(0, lane, time.time(), 10)
    queue.close()
    saved = setup.spool.queue_path.with_name("saved.db")
    setup.spool.queue_path.rename(saved)
    setup.spool.queue_path.mkdir()  # no queue file SQLite can open
    runner = DestinationRunner(config.destinations["archive"], WorkerIdentity(setup.spool, 0, config.router))
    runner.offer(claimed)
    runner.start()
    runner.stop()
    time.sleep(0.5)
    assert runner.alive()  # still trying, with the jobs in hand
    setup.spool.queue_path.rmdir()
    saved.rename(setup.spool.queue_path)
    assert runner.join(time.monotonic() + 10)
    assert {job.state for job in Queue(setup.spool).list_jobs()} == {JobState.QUEUED}
