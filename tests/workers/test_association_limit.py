"""`max_associations` is the router's limit towards a destination, however many workers it runs.

Two real worker processes share one spool and deliver to our engine's Storage
SCP, which counts the associations open at once. The announcements are spread
over both workers (the listener's PUSH socket does the same), so each records
jobs of the destination; with a limit of 1 the worker without a share hands
its jobs to the one with it and tells it on the bus: the jobs go at once, not
at that worker's next look at the queue (set here far beyond the test's time).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter

import pytest

from router.net import AE, evt
from router.net.status import SUCCESS
from rules.decision import Decision, Forward
from tests.conftest import LOOPBACK, pick_free_port, wait_until
from tests.interop import store_data
from tests.workers.harness import Announcer, WorkerProcess, instances
from workers.jobs import Lane
from workers.queue import Queue, Recording
from workers.worker import Worker

pytestmark = pytest.mark.timeout(90)

SLOW_LOOKS = ("--refresh-interval", "600", "--scan-interval", "600")  # only the bus can bring a job in time
STORE_TIME = 0.02  # seconds each C-STORE takes at the destination: deliveries overlap if they can
DELIVERY_TIMEOUT = 30.0
COUNT = 24


class CountingSCP:
    """A Storage SCP (CT) that counts its open associations, the most at once, and what it stored."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.lock = threading.Lock()
        self.open = 0
        self.most = 0
        self.stored: Counter = Counter()
        self.ae = AE("STORESCP")
        self.ae.add_supported_context(store_data.CT_IMAGE_STORAGE)
        handlers = [
            (evt.EVT_ESTABLISHED, self._opened),
            (evt.EVT_RELEASED, self._closed),
            (evt.EVT_ABORTED, self._closed),
            (evt.EVT_C_STORE, self._store),
        ]
        self.ae.start_server((LOOPBACK, port), block=False, evt_handlers=handlers)

    def _opened(self, event) -> None:
        with self.lock:
            self.open += 1
            self.most = max(self.most, self.open)

    def _closed(self, event) -> None:
        with self.lock:
            self.open -= 1

    def _store(self, event) -> int:
        time.sleep(STORE_TIME)
        with self.lock:
            self.stored[str(event.request.affected_sop_instance_uid)] += 1
        return SUCCESS


@pytest.fixture
def destination():
    scp = CountingSCP(pick_free_port())
    yield scp
    scp.ae.shutdown()


def start_workers(setup, running, count: int) -> list[WorkerProcess]:
    workers = [WorkerProcess(setup, *SLOW_LOOKS, index=index) for index in range(count)]
    running["workers"].extend(workers)
    return [worker.start() for worker in workers]


def delivered_by(worker: WorkerProcess) -> int:
    return len(re.findall(r"\bdelivered\b.*sop_instance_uid", worker.output()))


@pytest.mark.parametrize("allowed", [1, 2])
def test_two_workers_open_no_more_associations_than_the_destination_allows(
    setup, running, announcer_for, destination, tmp_path, allowed
):
    setup.router["workers"] = 2
    setup.dicom("pacs", destination.port, associations=allowed)
    setup.forward_all("pacs")
    setup.write()
    workers = start_workers(setup, running, 2)
    announcer = announcer_for(setup)
    sent = instances(tmp_path / "data", COUNT)
    announcer.announce(*(announcer.put(instance) for instance in sent))

    expected = {instance.sop_instance_uid: 1 for instance in sent}
    assert wait_until(lambda: destination.stored == expected, DELIVERY_TIMEOUT), [w.output() for w in workers]
    assert destination.most == allowed
    assert wait_until(lambda: not list(setup.spool.accepted()), 10)
    deliveries = [delivered_by(worker) for worker in workers]
    assert sum(deliveries) == COUNT
    if allowed == 1:
        assert deliveries[1] == 0  # worker 1 has no share: it recorded its half for worker 0
    else:
        assert all(deliveries)  # a share each
    for worker in workers:
        assert worker.stop() == 0


def test_jobs_recorded_by_a_worker_without_a_share_go_at_once(setup, running, announcer_for, destination, tmp_path):
    """Every announcement reaches worker 1, which has no share of the one association: worker 0 delivers
    them, told on the bus (its own looks at the queue come every 600 s here)."""
    setup.router["workers"] = 2
    setup.dicom("pacs", destination.port, associations=1)
    setup.forward_all("pacs")
    setup.write()
    workers = start_workers(setup, running, 2)
    announcer = announcer_for(setup, 1)
    sent = instances(tmp_path / "data", 3)
    for instance in sent:  # one at a time: each its own batch, its own word to worker 0
        announcer.announce(announcer.put(instance))
        uid = instance.sop_instance_uid
        assert wait_until(lambda: destination.stored[uid] == 1, DELIVERY_TIMEOUT), [w.output() for w in workers]
    assert [delivered_by(worker) for worker in workers] == [len(sent), 0]
    assert destination.most == 1


def test_a_worker_without_a_share_hands_over_the_jobs_it_holds_queued(setup, destination, tmp_path):
    """Jobs a worker recorded for itself (before a reload gave its share away) go to the worker
    that now delivers the destination, when the worker applies its destinations."""
    setup.router["workers"] = 2
    setup.dicom("pacs", destination.port, associations=1)
    setup.forward_all("pacs")
    worker = Worker(setup.write(), 1)
    queue = Queue(setup.spool)
    try:
        announcer = Announcer(setup)
        messages = [announcer.put(instance) for instance in instances(tmp_path / "data", 3)]
        announcer.close()
        queue.record([Recording(message, Decision((Forward("pacs", rule="everything"),))) for message in messages], 1, time.time())
        worker._apply_destinations(queue)
        assert worker.delivered_by == {Lane("pacs"): 0}
        assert queue.claim_many(1, Lane("pacs"), time.time(), 10) == []
        assert len(queue.claim_many(0, Lane("pacs"), time.time(), 10)) == 3
    finally:
        worker._drain()
        queue.close()
