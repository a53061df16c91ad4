"""The delivery queue: recording, claiming, outcomes, reclaim, counts, retry and purge, and when spool files go."""

from __future__ import annotations

import pytest

from router.bus import InstanceAccepted
from router.spool import Spool
from rules.evaluate import Decision
from workers.queue import DestinationCounts, JobState, Queue

NOW = 1_000_000.0
OWNER = 0


@pytest.fixture
def spool(tmp_path) -> Spool:
    spool = Spool(tmp_path / "spool")
    spool.create()
    return spool


@pytest.fixture
def queue(spool):
    queue = Queue(spool)
    yield queue
    queue.close()


def accepted(spool: Spool, uid: str, accepted_at: float = NOW) -> InstanceAccepted:
    """An announcement of a spool file written for it."""
    name = spool.new_name(uid)
    spool.path_of(name).write_bytes(b"instance " + uid.encode())
    return InstanceAccepted(name, "1.2.840.10008.5.1.4.1.1.2", uid, "1.2.840.10008.1.2.1", "CT1", "ROUTER", "127.0.0.1", 10, accepted_at)


def to(*destinations: str) -> Decision:
    return Decision(destinations, ("rule",))


def test_recording_is_idempotent(spool, queue):
    message = accepted(spool, "1.1")
    assert queue.record([(message, to("pacs", "archive"))], OWNER, NOW) == [message]
    assert queue.record([(message, to("pacs", "archive"))], OWNER, NOW) == []  # a second announcement
    assert Queue(spool).record([(message, to("pacs"))], 1, NOW) == []  # or another worker's scan
    jobs = queue.list_jobs()
    assert [(job.destination, job.state, job.attempts) for job in jobs] == [
        ("pacs", JobState.QUEUED, 0),
        ("archive", JobState.QUEUED, 0),
    ]
    assert jobs[0].sop_instance_uid == "1.1" and jobs[0].calling_ae == "CT1" and jobs[0].instance == message.name
    assert queue.known_names() == {message.name}


def test_a_batch_is_one_transaction_and_a_vanished_file_is_skipped(spool, queue):
    first, gone = accepted(spool, "1.1"), accepted(spool, "1.2")
    spool.remove(gone.name)
    assert queue.record([(first, to("pacs")), (gone, to("pacs"))], OWNER, NOW) == [first]


def test_an_instance_no_rule_forwards_is_finished_at_once(spool, queue):
    message = accepted(spool, "1.1")
    assert queue.record([(message, to())], OWNER, NOW) == [message]
    assert not spool.path_of(message.name).exists()
    assert queue.known_names() == set()


def test_claim_takes_the_owners_due_jobs_in_order(spool, queue):
    first, second = accepted(spool, "1.1"), accepted(spool, "1.2")
    queue.record([(first, to("pacs"))], OWNER, NOW)
    queue.record([(second, to("pacs"))], OWNER, NOW + 1)
    assert queue.claim(1, "pacs", NOW + 5) is None  # another worker's jobs
    assert queue.claim(OWNER, "archive", NOW + 5) is None
    assert queue.claim(OWNER, "pacs", NOW - 1) is None  # nothing due yet
    assert queue.next_due(OWNER, "pacs") == NOW
    job = queue.claim(OWNER, "pacs", NOW + 5)
    assert job.sop_instance_uid == "1.1" and job.state is JobState.IN_FLIGHT
    assert queue.claim(OWNER, "pacs", NOW + 5).sop_instance_uid == "1.2"
    assert queue.claim(OWNER, "pacs", NOW + 5) is None
    assert queue.next_due(OWNER, "pacs") is None


def test_the_last_delivery_removes_the_spool_file(spool, queue):
    message = accepted(spool, "1.1")
    queue.record([(message, to("pacs", "archive"))], OWNER, NOW)
    pacs = queue.claim(OWNER, "pacs", NOW)
    archive = queue.claim(OWNER, "archive", NOW)
    assert queue.delivered(pacs) is False
    assert spool.path_of(message.name).exists()
    assert queue.delivered(archive) is True
    assert not spool.path_of(message.name).exists()
    assert queue.list_jobs() == [] and queue.known_names() == {message.name}  # the row goes in the next sweep
    assert queue.record([(message, to("pacs"))], OWNER, NOW) == []  # a late announcement: the row is there
    assert queue.finish_done() == 1 and queue.known_names() == set()
    assert queue.record([(message, to("pacs"))], OWNER, NOW) == []  # a later one: the file is gone


def test_a_dead_job_keeps_the_spool_file(spool, queue):
    message = accepted(spool, "1.1")
    queue.record([(message, to("pacs", "archive"))], OWNER, NOW)
    queue.failed(queue.claim(OWNER, "pacs", NOW), "refused", None)
    queue.delivered(queue.claim(OWNER, "archive", NOW))
    assert spool.path_of(message.name).exists()
    (dead,) = queue.list_jobs(failed_only=True)
    assert (dead.destination, dead.state, dead.attempts, dead.last_error) == ("pacs", JobState.DEAD, 1, "refused")


def test_a_failed_attempt_is_retried_later(spool, queue):
    queue.record([(accepted(spool, "1.1"), to("pacs"))], OWNER, NOW)
    queue.failed(queue.claim(OWNER, "pacs", NOW), "connection refused", NOW + 30)
    assert queue.claim(OWNER, "pacs", NOW + 29) is None
    job = queue.claim(OWNER, "pacs", NOW + 30)
    assert (job.attempts, job.last_error, job.next_attempt) == (1, "connection refused", NOW + 30)


def test_reclaim_queues_what_a_dead_process_left_in_flight(spool, queue):
    queue.record([(accepted(spool, "1.1"), to("pacs")), (accepted(spool, "1.2"), to("pacs"))], OWNER, NOW)
    queue.record([(accepted(spool, "1.3"), to("pacs"))], 1, NOW)
    queue.claim(OWNER, "pacs", NOW)
    queue.claim(1, "pacs", NOW)
    assert queue.reclaim(OWNER) == 1
    assert sorted(job.state for job in queue.list_jobs()) == [JobState.IN_FLIGHT, JobState.QUEUED, JobState.QUEUED]
    assert queue.claim(OWNER, "pacs", NOW).attempts == 0  # an interrupted delivery costs no attempt


def test_adopt_takes_over_the_jobs_of_workers_that_no_longer_exist(spool, queue):
    queue.record([(accepted(spool, "1.1"), to("pacs"))], 3, NOW)
    queue.claim(3, "pacs", NOW)
    assert queue.adopt(OWNER, workers=2) == 1
    assert queue.claim(OWNER, "pacs", NOW) is not None


def test_counts_per_destination(spool, queue):
    queue.record([(accepted(spool, "1.1", NOW - 50), to("pacs", "archive"))], OWNER, NOW)
    queue.record([(accepted(spool, "1.2", NOW - 20), to("pacs"))], OWNER, NOW)
    queue.record([(accepted(spool, "1.3", NOW - 10), to("pacs"))], OWNER, NOW)
    queue.delivered(queue.claim(OWNER, "archive", NOW))
    queue.failed(queue.claim(OWNER, "pacs", NOW), "refused", None)
    queue.claim(OWNER, "pacs", NOW)
    assert queue.counts(NOW) == [
        DestinationCounts("archive", delivered=1),
        DestinationCounts("pacs", queued=1, in_flight=1, dead=1, oldest_queued_age=10.0),
    ]


def test_delivered_jobs_leave_a_count_not_rows(spool, queue):
    for index in range(20):
        queue.record([(accepted(spool, f"1.{index}"), to("pacs"))], OWNER, NOW)
        queue.delivered(queue.claim(OWNER, "pacs", NOW))
    assert queue.counts(NOW) == [DestinationCounts("pacs", delivered=20)]
    assert queue.list_jobs() == [] and list(spool.accepted()) == []
    assert queue.finish_done() == 20 and queue.known_names() == set()


def test_retry_queues_dead_jobs_with_attempts_reset(spool, queue):
    for uid in ("1.1", "1.2", "1.3"):
        queue.record([(accepted(spool, uid), to("pacs"))], OWNER, NOW)
        queue.failed(queue.claim(OWNER, "pacs", NOW), "refused", None)
    first, second, third = (job.id for job in queue.list_jobs())
    assert queue.retry([first], NOW + 100) == 1
    assert queue.retry([first], NOW + 100) == 0  # no longer dead
    job = queue.claim(OWNER, "pacs", NOW + 100)
    assert (job.id, job.attempts, job.last_error) == (first, 0, "refused")
    assert queue.retry(None, NOW + 200) == 2
    assert queue.list_jobs(failed_only=True) == []
    assert {job.id for job in queue.list_jobs() if job.state is JobState.QUEUED} == {second, third}


def test_purge_deletes_jobs_and_the_files_nothing_needs(spool, queue):
    one, two = accepted(spool, "1.1"), accepted(spool, "1.2")
    queue.record([(one, to("pacs", "archive")), (two, to("pacs"))], OWNER, NOW)
    queue.failed(queue.claim(OWNER, "pacs", NOW), "refused", None)  # one -> pacs is dead
    in_flight = queue.claim(OWNER, "pacs", NOW)  # two -> pacs
    assert queue.purge([in_flight.id]) == 0  # never a job being delivered
    assert queue.purge(None) == 1  # every dead job: one -> pacs
    assert spool.path_of(one.name).exists()  # one -> archive still needs it
    (archive,) = [job for job in queue.list_jobs() if job.destination == "archive"]
    assert queue.purge([archive.id]) == 1
    assert not spool.path_of(one.name).exists()
    assert spool.path_of(two.name).exists()
    assert [job.id for job in queue.list_jobs()] == [in_flight.id]


def test_finish_done_completes_an_instance_left_without_jobs(spool, queue):
    message = accepted(spool, "1.1")
    queue.record([(message, to("pacs"))], OWNER, NOW)
    job = queue.claim(OWNER, "pacs", NOW)
    queue._db.execute("DELETE FROM jobs WHERE id = ?", (job.id,))  # as if killed before removing the file
    assert queue.finish_done() == 1
    assert not spool.path_of(message.name).exists() and queue.known_names() == set()


def test_data_changed_sees_other_connections_only(spool, queue):
    other = Queue(spool)
    assert queue.data_changed() is False
    queue.record([(accepted(spool, "1.1"), to("pacs"))], OWNER, NOW)
    queue.failed(queue.claim(OWNER, "pacs", NOW), "refused", None)
    assert queue.data_changed() is False
    assert other.retry(None, NOW) == 1  # what `router queue retry` does
    assert queue.data_changed() is True
    assert queue.data_changed() is False
    other.close()
