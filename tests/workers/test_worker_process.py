"""The worker as a process: announced instances reach a DCMTK storescp and a folder, through failures.

Each test writes a config, starts `python -m workers CONFIG --index 0`, puts
Part 10 files in the spool's incoming/ and announces them on the bus the way
a listener does, then counts what the destinations hold, by SOP Instance UID.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from router.net import AE, evt
from router.net.status import SUCCESS
from tests.conftest import LOOPBACK, pick_free_port, wait_until
from tests.interop import store_data
from tests.workers.harness import FAST_SCAN, RouterSetup, WorkerProcess, instances, received
from tests.workers.harness import start_storescp, stored_files
from workers.queue import JobState, Queue

pytestmark = pytest.mark.timeout(120)

ARRIVAL_TIMEOUT = 60.0


def start_worker(setup: RouterSetup, running, *options: str) -> WorkerProcess:
    worker = WorkerProcess(setup, *options).start()
    running["workers"].append(worker)
    return worker


def all_arrived(directory, uids, exactly_once: bool = True) -> bool:
    counts = received(directory)
    return all(counts[uid] == 1 if exactly_once else counts[uid] >= 1 for uid in uids)


def spool_empty(setup: RouterSetup) -> bool:
    return not list(setup.spool.accepted())


@pytest.mark.dcmtk
def test_every_instance_arrives_once_bit_for_bit(setup, running, announcer_for, tmp_path):
    port = pick_free_port()
    setup.dicom("pacs", port, associations=2)
    archive = setup.folder("archive")
    setup.forward_all("pacs", "archive")
    setup.write()
    pacs_out = tmp_path / "pacs-out"
    start_storescp(tmp_path, port, pacs_out, running["peers"])
    worker = start_worker(setup, running)
    sent = [
        *instances(tmp_path / "data", 20, "explicit"),
        *instances(tmp_path / "data-implicit", 5, "implicit"),
        *instances(tmp_path / "data-deflated", 3, "deflated"),
        *instances(tmp_path / "data-mr", 2, "explicit", store_data.TYPICAL),
        store_data.jpeg_instance(tmp_path),
    ]
    announcer = announcer_for(setup)
    announcer.announce(*(announcer.put(instance) for instance in sent))
    uids = [instance.sop_instance_uid for instance in sent]

    assert wait_until(lambda: all_arrived(archive, uids) and all_arrived(pacs_out, uids), ARRIVAL_TIMEOUT), worker.output()
    assert wait_until(lambda: spool_empty(setup), 10), "the spool keeps delivered files"
    assert received(pacs_out) == received(archive) == {uid: 1 for uid in uids}
    for directory in (pacs_out, archive):
        stored = stored_files(directory)
        for instance in sent:
            assert store_data.data_digest(stored[instance.sop_instance_uid]) == store_data.data_digest(instance.path)
    counts = {c.destination: c for c in Queue(setup.spool).counts(time.time())}
    assert counts["pacs"].delivered == counts["archive"].delivered == len(sent)
    assert counts["pacs"].queued == counts["pacs"].dead == 0
    delivered_lines = [line for line in worker.output().splitlines() if " delivered " in line]
    assert len(delivered_lines) == 2 * len(sent)
    assert all("from=MODALITY" in line and "attempts=1" in line and "latency=" in line for line in delivered_lines)
    assert worker.stop() == 0


@pytest.mark.dcmtk
def test_a_destination_that_is_down_gets_everything_when_it_returns(setup, running, announcer_for, tmp_path):
    port = pick_free_port()  # nothing listens there yet
    setup.dicom("pacs", port)
    archive = setup.folder("archive")
    setup.forward_all("pacs", "archive")
    setup.write()
    worker = start_worker(setup, running)
    sent = instances(tmp_path / "data", 10)
    uids = [instance.sop_instance_uid for instance in sent]
    announcer = announcer_for(setup)
    announcer.announce(*(announcer.put(instance) for instance in sent))

    started = time.monotonic()
    assert wait_until(lambda: all_arrived(archive, uids), 10), worker.output()
    assert time.monotonic() - started < 5, "the folder waited for the DICOM destination"
    assert wait_until(lambda: "retry scheduled" in worker.output(), 10)
    time.sleep(2)  # down for a while: several retries
    assert list(setup.spool.accepted())  # nothing lost, nothing dead
    assert Queue(setup.spool).list_jobs(failed_only=True) == []

    pacs_out = tmp_path / "pacs-out"
    start_storescp(tmp_path, port, pacs_out, running["peers"])
    assert wait_until(lambda: all_arrived(pacs_out, uids), 20), worker.output()
    assert wait_until(lambda: spool_empty(setup), 10)
    assert received(pacs_out) == {uid: 1 for uid in uids}
    assert worker.stop() == 0


class CountingStoreSCP:
    """Our engine's Storage SCP in this process, accepting only some SOP classes; counts what it stores.

    It also keeps the InstitutionName each instance came with (a morph's mark).
    """

    def __init__(self, port: int, sop_classes: list[str], delay: float = 0.0) -> None:
        self.received: dict[str, int] = {}
        self.institutions: dict[str, str] = {}
        self.delay = delay
        self.ae = AE("STORESCP")
        for uid in sop_classes:
            self.ae.add_supported_context(uid)
        self.ae.start_server((LOOPBACK, port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])

    def _store(self, event) -> int:
        time.sleep(self.delay)  # a slow destination
        uid = str(event.request.affected_sop_instance_uid)
        self.received[uid] = self.received.get(uid, 0) + 1
        self.institutions[uid] = str(event.dataset.get("InstitutionName", ""))
        return SUCCESS

    def shutdown(self) -> None:
        self.ae.shutdown()


def test_a_refused_sop_class_is_dead_then_retried_after_the_fix(setup, running, announcer_for, tmp_path):
    port = pick_free_port()
    scp = CountingStoreSCP(port, [store_data.MR_IMAGE_STORAGE])  # no CT Image Storage
    try:
        setup.dicom("pacs", port)
        setup.forward_all("pacs")
        setup.write()
        worker = start_worker(setup, running)
        ct = instances(tmp_path / "ct", 3)
        mr = instances(tmp_path / "mr", 2, kind=store_data.TYPICAL)
        announcer = announcer_for(setup)
        announcer.announce(*(announcer.put(instance) for instance in [*ct, *mr]))
        queue = Queue(setup.spool)

        assert wait_until(lambda: len(queue.list_jobs(failed_only=True)) == 3, 20), worker.output()
        assert wait_until(lambda: all(scp.received.get(i.sop_instance_uid) == 1 for i in mr), 10)
        dead = queue.list_jobs(failed_only=True)
        assert {job.sop_instance_uid for job in dead} == {instance.sop_instance_uid for instance in ct}
        assert all(job.attempts == 1 and "refuses CT Image Storage" in job.last_error for job in dead), dead
        assert all(setup.spool.path_of(job.instance).exists() for job in dead)  # kept for a replay
        assert worker.output().count(" dead ") == 3

        scp.shutdown()
        scp = CountingStoreSCP(port, [store_data.MR_IMAGE_STORAGE, store_data.CT_IMAGE_STORAGE])  # fixed
        assert queue.retry(None, time.time()) == 3  # what `router queue retry --all` does
        assert wait_until(lambda: all(scp.received.get(i.sop_instance_uid) == 1 for i in ct), 15), worker.output()
        assert wait_until(lambda: spool_empty(setup), 10)
        assert queue.list_jobs() == []
        assert worker.stop() == 0
    finally:
        scp.shutdown()


def test_sigterm_finishes_the_delivery_in_flight_and_leaves_the_rest_queued(setup, running, announcer_for, tmp_path):
    port = pick_free_port()
    scp = CountingStoreSCP(port, [store_data.CT_IMAGE_STORAGE], delay=0.3)
    try:
        setup.dicom("pacs", port)
        setup.forward_all("pacs")
        setup.write()
        worker = start_worker(setup, running)
        sent = instances(tmp_path / "data", 12)
        uids = [instance.sop_instance_uid for instance in sent]
        announcer = announcer_for(setup)
        announcer.announce(*(announcer.put(instance) for instance in sent))
        assert wait_until(lambda: len(scp.received) >= 2, 15), worker.output()

        started = time.monotonic()
        assert worker.stop() == 0
        assert time.monotonic() - started < 5
        assert "stopped" in worker.output()
        jobs = Queue(setup.spool).list_jobs()
        assert jobs and all(job.state is JobState.QUEUED and job.attempts == 0 for job in jobs)
        assert len(jobs) + len(scp.received) == len(sent)  # the one in flight was finished, not abandoned

        restarted = start_worker(setup, running)
        assert wait_until(lambda: set(scp.received) == set(uids), 20), restarted.output()
        assert wait_until(lambda: spool_empty(setup), 10)
        assert scp.received == {uid: 1 for uid in uids}  # without a crash, nothing twice
        assert restarted.stop() == 0
    finally:
        scp.shutdown()


def test_a_delivery_that_outlasts_the_drain_is_broken_off_and_resumed_at_the_next_start(
    setup, running, announcer_for, tmp_path
):
    port = pick_free_port()
    scp = CountingStoreSCP(port, [store_data.CT_IMAGE_STORAGE], delay=30)  # answers after the drain timeout
    try:
        setup.dicom("pacs", port)
        setup.forward_all("pacs")
        setup.write()
        worker = start_worker(setup, running)
        (instance,) = instances(tmp_path / "data", 1)
        announcer = announcer_for(setup)
        announcer.announce(announcer.put(instance))
        queue = Queue(setup.spool)
        assert wait_until(lambda: [job.state for job in queue.list_jobs()] == [JobState.IN_FLIGHT], 10)

        started = time.monotonic()
        assert worker.stop() == 0
        assert 9 < time.monotonic() - started < 14  # the 10 s drain, then the delivery is broken off
        assert "did not finish in time" in worker.output()
        assert [job.state for job in queue.list_jobs()] == [JobState.IN_FLIGHT]

        scp.shutdown()
        scp = CountingStoreSCP(port, [store_data.CT_IMAGE_STORAGE])
        restarted = start_worker(setup, running)
        assert wait_until(lambda: scp.received == {instance.sop_instance_uid: 1}, 15), restarted.output()
        assert "reclaimed=1" in restarted.output()
        assert restarted.stop() == 0
    finally:
        scp.shutdown()


@pytest.mark.dcmtk
def test_kill_9_mid_stream_loses_nothing(setup, running, announcer_for, tmp_path):
    port = pick_free_port()
    setup.dicom("pacs", port)
    archive = setup.folder("archive")
    setup.forward_all("pacs", "archive")
    setup.write()
    pacs_out = tmp_path / "pacs-out"
    start_storescp(tmp_path, port, pacs_out, running["peers"])
    worker = start_worker(setup, running, *FAST_SCAN)
    sent = instances(tmp_path / "data", 60)
    uids = [instance.sop_instance_uid for instance in sent]
    announcer = announcer_for(setup)
    first, second = sent[:40], sent[40:]
    announcer.announce(*(announcer.put(instance) for instance in first))
    assert wait_until(lambda: len(received(pacs_out)) >= 5, 20), worker.output()
    worker.kill()
    assert len(received(pacs_out)) < len(sent)  # killed mid-stream
    announcer.announce(*(announcer.put(instance) for instance in second))  # while no worker runs

    restarted = start_worker(setup, running, *FAST_SCAN)
    both = lambda: all_arrived(archive, uids, exactly_once=False) and all_arrived(pacs_out, uids, exactly_once=False)  # noqa: E731
    assert wait_until(both, ARRIVAL_TIMEOUT), restarted.output()
    assert wait_until(lambda: spool_empty(setup), 10)
    assert Queue(setup.spool).list_jobs() == []
    assert restarted.stop() == 0


def test_a_file_nobody_announced_is_found_by_the_scan(setup, running, tmp_path):
    archive = setup.folder("archive")
    setup.forward_all("archive")
    setup.write()
    dataset = store_data.small_ct(seed=9)
    dataset.file_meta = store_data.file_meta_for(dataset, store_data.SYNTAXES["explicit"])
    dataset.file_meta.SourceApplicationEntityTitle = "LOSTCT"
    name = setup.spool.new_name(str(dataset.SOPInstanceUID))
    path = setup.spool.path_of(name)
    dataset.save_as(path, enforce_file_format=True)
    junk = setup.spool.path_of(setup.spool.new_name("9.9"))
    junk.write_bytes(b"not a DICOM file")
    old = time.time() - 60
    for accepted in (path, junk):
        os.utime(accepted, (old, old))  # accepted a minute ago; the bus message was lost

    worker = start_worker(setup, running, "--log-json", *FAST_SCAN)
    uid = str(dataset.SOPInstanceUID)
    assert wait_until(lambda: received(archive) == {uid: 1}, 15), worker.output()
    queue = Queue(setup.spool)
    assert wait_until(lambda: len(queue.list_jobs(failed_only=True)) == 1, 10), worker.output()
    (dead,) = queue.list_jobs(failed_only=True)
    assert dead.instance == junk.name and "cannot read the instance's header" in dead.last_error
    assert wait_until(lambda: '"delivered"' in worker.output(), 5), worker.output()
    lines = [json.loads(line) for line in worker.output().splitlines()]  # every line is JSON
    (delivered,) = [line for line in lines if line["message"] == "delivered"]
    assert (delivered["from"], delivered["to"], delivered["sop_instance_uid"]) == ("LOSTCT", "archive", uid)
    assert any(line["level"] == "ERROR" and junk.name in line["message"] for line in lines)
    assert not any("cannot read the header" in line["message"] for line in lines)  # no rule looks at the data set

    later = store_data.small_ct(seed=10)  # lost while the worker runs: found by a later scan
    store_data.write_instance(later, store_data.SYNTAXES["implicit"], setup.spool.path_of(setup.spool.new_name("1")), "small")
    assert wait_until(lambda: str(later.SOPInstanceUID) in received(archive), 10), worker.output()
    assert delivered["latency"] >= 60 and delivered["attempts"] == 1
    assert worker.stop() == 0


def test_sighup_reloads_the_rules_and_a_bad_file_keeps_the_old(setup, running, announcer_for, tmp_path):
    first = setup.folder("first")
    second = setup.folder("second")
    setup.forward_all("first")
    setup.write()
    worker = start_worker(setup, running)
    announcer = announcer_for(setup)
    one, two, three = instances(tmp_path / "data", 3)

    announcer.announce(announcer.put(one))
    assert wait_until(lambda: received(first) == {one.sop_instance_uid: 1}, 10), worker.output()

    setup.forward_all("second", "first")
    setup.destinations["first"]["folder"] = "./moved"  # a changed destination gets a new runner
    setup.write()
    worker.signal(signal.SIGHUP)
    assert wait_until(lambda: "config reloaded" in worker.output(), 10), worker.output()
    announcer.announce(announcer.put(two))
    moved = tmp_path / "moved"
    assert wait_until(lambda: received(second) == received(moved) == {two.sop_instance_uid: 1}, 10), worker.output()
    assert received(first) == {one.sop_instance_uid: 1}

    setup.path.write_text(setup.path.read_text() + "\nnonsense: [\n")
    worker.signal(signal.SIGHUP)
    assert wait_until(lambda: "config not reloaded" in worker.output(), 10), worker.output()
    announcer.announce(announcer.put(three))
    assert wait_until(lambda: three.sop_instance_uid in received(second), 10), worker.output()
    assert worker.stop() == 0
    assert "stopped" in worker.output()


def test_queue_states_are_visible_while_a_destination_is_down(setup, running, announcer_for, tmp_path):
    setup.dicom("pacs", pick_free_port(), retry={"attempts": 2, "backoff": "0.2s", "max_backoff": "0.2s"})
    setup.forward_all("pacs")
    setup.write()
    worker = start_worker(setup, running)
    announcer = announcer_for(setup)
    (instance,) = instances(tmp_path / "data", 1)
    announcer.announce(announcer.put(instance))
    queue = Queue(setup.spool)
    assert wait_until(lambda: len(queue.list_jobs(failed_only=True)) == 1, 15), worker.output()
    (job,) = queue.list_jobs()
    assert job.state is JobState.DEAD and job.attempts == 2 and "cannot associate" in job.last_error
    assert job.last_error.endswith("(gave up after 2 attempts)")
    (counts,) = queue.counts(time.time())
    assert (counts.destination, counts.dead, counts.queued, counts.delivered) == ("pacs", 1, 0, 0)
    assert queue.purge([job.id]) == 1
    assert spool_empty(setup)
    assert worker.stop() == 0


def test_a_job_keeps_the_morphs_it_was_recorded_with_after_a_reload(setup, running, announcer_for, tmp_path):
    port = pick_free_port()  # the destination is down while the rules change
    setup.dicom("pacs", port)

    def morphing(institution: str) -> list[dict]:
        return [{"name": "mark", "forward": ["pacs"], "morph": [{"set": {"InstitutionName": institution}}]}]

    setup.rules = morphing("Before")
    setup.write()
    worker = start_worker(setup, running)
    announcer = announcer_for(setup)
    before, after = instances(tmp_path / "data", 2)
    announcer.announce(announcer.put(before))
    assert wait_until(lambda: "retry scheduled" in worker.output(), 10), worker.output()

    setup.rules = morphing("After")
    setup.write()
    worker.signal(signal.SIGHUP)
    assert wait_until(lambda: "config reloaded" in worker.output(), 10), worker.output()
    announcer.announce(announcer.put(after))
    assert wait_until(lambda: len(Queue(setup.spool).list_jobs()) == 2, 10), worker.output()

    scp = CountingStoreSCP(port, [store_data.CT_IMAGE_STORAGE])
    try:
        expected = {before.sop_instance_uid: "Before", after.sop_instance_uid: "After"}
        assert wait_until(lambda: scp.institutions == expected, 20), worker.output()
        assert wait_until(lambda: spool_empty(setup), 10)
        assert worker.stop() == 0
    finally:
        scp.shutdown()
