"""The delivery queue: recording (copies with morphs, prefetches, once_per), claiming, outcomes, reclaim, counts,
retry and purge, when spool files go, batches (recording claimed, claiming several, settling several endings),
the shared write lock, and the upgrade of an older file."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from router.bus import InstanceAccepted
from router.spool import Spool
from rules.decision import Decision, Forward, Morph, MorphKind, Prefetch
from workers.jobs import JobKind, Lane, PrefetchOrder, PrefetchProgress
from workers.queue import DestinationCounts, Ending, JobState, Queue, Recording

NOW = 1_000_000.0
OWNER = 0
PACS, ARCHIVE = Lane("pacs"), Lane("archive")
PACS_PREFETCH = Lane("pacs", JobKind.PREFETCH)
STUDY = "1.2.3.4"
SET_NAME = Morph(MorphKind.SET, "InstitutionName", "Main Hospital")
DELETE_IDS = Morph(MorphKind.DELETE, "OtherPatientIDs")


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
    return Decision(tuple(Forward(destination, rule="rule") for destination in destinations), matched=("rule",))


def prefetch(once_key: str = STUDY, rule: str = "priors") -> Prefetch:
    return Prefetch(rule, "pacs", "WORKSTATION", (("PatientID", "P1"),), 3, once_key)


def test_recording_is_idempotent(spool, queue):
    message = accepted(spool, "1.1")
    assert queue.record([Recording(message, to("pacs", "archive"))], OWNER, NOW) == [message]
    assert queue.record([Recording(message, to("pacs", "archive"))], OWNER, NOW) == []  # a second announcement
    assert Queue(spool).record([Recording(message, to("pacs"))], 1, NOW) == []  # or another worker's scan
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
    assert queue.record([Recording(first, to("pacs")), Recording(gone, to("pacs"))], OWNER, NOW) == [first]


def test_an_instance_no_rule_forwards_is_finished_at_once(spool, queue):
    message = accepted(spool, "1.1")
    assert queue.record([Recording(message, to())], OWNER, NOW) == [message]
    assert not spool.path_of(message.name).exists()
    assert queue.known_names() == set()


def test_claim_takes_the_owners_due_jobs_in_order(spool, queue):
    first, second = accepted(spool, "1.1"), accepted(spool, "1.2")
    queue.record([Recording(first, to("pacs"))], OWNER, NOW)
    queue.record([Recording(second, to("pacs"))], OWNER, NOW + 1)
    assert queue.claim(1, PACS, NOW + 5) is None  # another worker's jobs
    assert queue.claim(OWNER, ARCHIVE, NOW + 5) is None
    assert queue.claim(OWNER, PACS, NOW - 1) is None  # nothing due yet
    assert queue.next_due(OWNER, PACS) == NOW
    job = queue.claim(OWNER, PACS, NOW + 5)
    assert job.sop_instance_uid == "1.1" and job.state is JobState.IN_FLIGHT
    assert queue.claim(OWNER, PACS, NOW + 5).sop_instance_uid == "1.2"
    assert queue.claim(OWNER, PACS, NOW + 5) is None
    assert queue.next_due(OWNER, PACS) is None


def test_the_last_delivery_removes_the_spool_file(spool, queue):
    message = accepted(spool, "1.1")
    queue.record([Recording(message, to("pacs", "archive"))], OWNER, NOW)
    pacs = queue.claim(OWNER, PACS, NOW)
    archive = queue.claim(OWNER, ARCHIVE, NOW)
    assert queue.delivered(pacs) is False
    assert spool.path_of(message.name).exists()
    assert queue.delivered(archive) is True
    assert not spool.path_of(message.name).exists()
    assert queue.list_jobs() == [] and queue.known_names() == {message.name}  # the row goes in the next sweep
    assert queue.record([Recording(message, to("pacs"))], OWNER, NOW) == []  # a late announcement: the row is there
    assert queue.finish_done() == 1 and queue.known_names() == set()
    assert queue.record([Recording(message, to("pacs"))], OWNER, NOW) == []  # a later one: the file is gone


def test_a_dead_job_keeps_the_spool_file(spool, queue):
    message = accepted(spool, "1.1")
    queue.record([Recording(message, to("pacs", "archive"))], OWNER, NOW)
    queue.failed(queue.claim(OWNER, PACS, NOW), "refused", None)
    queue.delivered(queue.claim(OWNER, ARCHIVE, NOW))
    assert spool.path_of(message.name).exists()
    (dead,) = queue.list_jobs(failed_only=True)
    assert (dead.destination, dead.state, dead.attempts, dead.last_error) == ("pacs", JobState.DEAD, 1, "refused")


def test_a_failed_attempt_is_retried_later(spool, queue):
    queue.record([Recording(accepted(spool, "1.1"), to("pacs"))], OWNER, NOW)
    queue.failed(queue.claim(OWNER, PACS, NOW), "connection refused", NOW + 30)
    assert queue.claim(OWNER, PACS, NOW + 29) is None
    job = queue.claim(OWNER, PACS, NOW + 30)
    assert (job.attempts, job.last_error, job.next_attempt) == (1, "connection refused", NOW + 30)


# ---- batches ---------------------------------------------------------------------------------------
def test_record_claiming_hands_over_up_to_the_room_of_each_lane_in_flight(spool, queue):
    messages = [accepted(spool, f"1.{index}") for index in range(3)]
    recorded, claimed = queue.record_claiming(
        [Recording(message, to("pacs", "archive")) for message in messages], OWNER, NOW, {PACS: 2}
    )
    assert recorded == messages
    assert [(job.lane, job.instance, job.state, job.attempts) for job in claimed] == [
        (PACS, messages[0].name, JobState.IN_FLIGHT, 0), (PACS, messages[1].name, JobState.IN_FLIGHT, 0),
    ]
    assert claimed[0].sop_instance_uid == "1.0" and claimed[0].calling_ae == "CT1" and claimed[0].accepted_at == NOW
    assert {job.id: job for job in queue.list_jobs()}[claimed[0].id] == claimed[0]  # what the row says
    states = sorted((job.lane, job.state) for job in queue.list_jobs() if job.id not in {c.id for c in claimed})
    assert states == [(ARCHIVE, JobState.QUEUED)] * 3 + [(PACS, JobState.QUEUED)]
    assert queue.record_claiming([Recording(messages[0], to("pacs"))], OWNER, NOW, {PACS: 5}) == ([], [])


def test_record_claiming_queues_the_jobs_of_a_lane_another_worker_delivers_for_it(spool, queue):
    message = accepted(spool, "1.1")
    recorded, claimed = queue.record_claiming([Recording(message, to("pacs", "archive"))], 1, NOW, {PACS: 5, ARCHIVE: 5}, {PACS: 0})
    assert recorded == [message]
    assert [job.lane for job in claimed] == [ARCHIVE]  # its own lane: in hand at once
    assert queue.claim(1, PACS, NOW) is None
    assert queue.claim(0, PACS, NOW).instance == message.name


def test_hand_over_gives_only_the_queued_jobs_of_one_lane(spool, queue):
    queue.record([Recording(accepted(spool, f"1.{index}"), to("pacs", "archive")) for index in range(3)], 1, NOW)
    in_flight = queue.claim(1, PACS, NOW)
    assert queue.hand_over(PACS, 1, 0) == 2
    assert queue.hand_over(PACS, 1, 0) == 0
    assert len(queue.claim_many(0, PACS, NOW, 10)) == 2
    assert len(queue.claim_many(1, ARCHIVE, NOW, 10)) == 3  # another lane stays
    assert {job.id: job.state for job in queue.list_jobs()}[in_flight.id] is JobState.IN_FLIGHT


def test_claim_many_takes_up_to_the_limit_earliest_first(spool, queue):
    for index in range(5):
        queue.record([Recording(accepted(spool, f"1.{index}"), to("pacs"))], OWNER, NOW + 4 - index)
    claimed = queue.claim_many(OWNER, PACS, NOW + 10, 3)
    assert [job.sop_instance_uid for job in claimed] == ["1.4", "1.3", "1.2"]
    assert all(job.state is JobState.IN_FLIGHT for job in claimed)
    assert [job.sop_instance_uid for job in queue.claim_many(OWNER, PACS, NOW + 10, 3)] == ["1.1", "1.0"]
    assert queue.claim_many(OWNER, PACS, NOW + 10, 3) == []


def test_settle_records_endings_and_puts_back_released_jobs_in_one_go(spool, queue):
    messages = [accepted(spool, f"1.{index}") for index in range(4)]
    queue.record([Recording(message, to("pacs")) for message in messages], OWNER, NOW)
    done, retried, dead, unstarted = queue.claim_many(OWNER, PACS, NOW, 4)
    finished = queue.settle(
        [Ending(done), Ending(retried, False, "busy", NOW + 30), Ending(dead, False, "refused")], released=[unstarted]
    )
    assert finished == [messages[0].name] and not spool.path_of(messages[0].name).exists()
    jobs = {job.id: job for job in queue.list_jobs()}
    assert (jobs[retried.id].state, jobs[retried.id].attempts, jobs[retried.id].next_attempt) == (JobState.QUEUED, 1, NOW + 30)
    assert (jobs[dead.id].state, jobs[dead.id].last_error) == (JobState.DEAD, "refused")
    assert (jobs[unstarted.id].state, jobs[unstarted.id].attempts) == (JobState.QUEUED, 0)  # never started: no attempt
    assert done.id not in jobs
    assert queue.counts(NOW)[0].delivered == 1


def test_connections_sharing_a_write_lock_take_turns_through_it(spool, queue):
    lock = threading.Lock()
    message = accepted(spool, "1.1")

    def record_on_a_connection_of_its_own() -> None:
        other = Queue(spool, write_lock=lock)
        other.record([Recording(message, to("pacs"))], OWNER, NOW)
        other.close()

    with lock:  # as if another connection of the process were writing
        writer = threading.Thread(target=record_on_a_connection_of_its_own)
        writer.start()
        writer.join(0.3)
        assert writer.is_alive() and queue.known_names() == set()
    writer.join(5)
    assert not writer.is_alive() and queue.known_names() == {message.name}


def test_reclaim_queues_what_a_dead_process_left_in_flight(spool, queue):
    queue.record([Recording(accepted(spool, "1.1"), to("pacs")), Recording(accepted(spool, "1.2"), to("pacs"))], OWNER, NOW)
    queue.record([Recording(accepted(spool, "1.3"), to("pacs"))], 1, NOW)
    queue.claim(OWNER, PACS, NOW)
    queue.claim(1, PACS, NOW)
    assert queue.reclaim(OWNER) == 1
    assert sorted(job.state for job in queue.list_jobs()) == [JobState.IN_FLIGHT, JobState.QUEUED, JobState.QUEUED]
    assert queue.claim(OWNER, PACS, NOW).attempts == 0  # an interrupted delivery costs no attempt


def test_adopt_takes_over_the_jobs_of_workers_that_no_longer_exist(spool, queue):
    queue.record([Recording(accepted(spool, "1.1"), to("pacs"))], 3, NOW)
    queue.claim(3, PACS, NOW)
    assert queue.adopt(OWNER, workers=2) == 1
    assert queue.claim(OWNER, PACS, NOW) is not None


def test_counts_per_destination(spool, queue):
    queue.record([Recording(accepted(spool, "1.1", NOW - 50), to("pacs", "archive"))], OWNER, NOW)
    queue.record([Recording(accepted(spool, "1.2", NOW - 20), to("pacs"))], OWNER, NOW)
    queue.record([Recording(accepted(spool, "1.3", NOW - 10), to("pacs"))], OWNER, NOW)
    queue.delivered(queue.claim(OWNER, ARCHIVE, NOW))
    queue.failed(queue.claim(OWNER, PACS, NOW), "refused", None)
    queue.claim(OWNER, PACS, NOW)
    assert queue.counts(NOW) == [
        DestinationCounts("archive", delivered=1),
        DestinationCounts("pacs", queued=1, in_flight=1, dead=1, oldest_queued_age=10.0),
    ]


def test_delivered_jobs_leave_a_count_not_rows(spool, queue):
    for index in range(20):
        queue.record([Recording(accepted(spool, f"1.{index}"), to("pacs"))], OWNER, NOW)
        queue.delivered(queue.claim(OWNER, PACS, NOW))
    assert queue.counts(NOW) == [DestinationCounts("pacs", delivered=20)]
    assert queue.list_jobs() == [] and list(spool.accepted()) == []
    assert queue.finish_done() == 20 and queue.known_names() == set()


def test_retry_queues_dead_jobs_with_attempts_reset(spool, queue):
    for uid in ("1.1", "1.2", "1.3"):
        queue.record([Recording(accepted(spool, uid), to("pacs"))], OWNER, NOW)
        queue.failed(queue.claim(OWNER, PACS, NOW), "refused", None)
    first, second, third = (job.id for job in queue.list_jobs())
    assert queue.retry([first], NOW + 100) == 1
    assert queue.retry([first], NOW + 100) == 0  # no longer dead
    job = queue.claim(OWNER, PACS, NOW + 100)
    assert (job.id, job.attempts, job.last_error) == (first, 0, "refused")
    assert queue.retry(None, NOW + 200) == 2
    assert queue.list_jobs(failed_only=True) == []
    assert {job.id for job in queue.list_jobs() if job.state is JobState.QUEUED} == {second, third}


def test_purge_deletes_jobs_and_the_files_nothing_needs(spool, queue):
    one, two = accepted(spool, "1.1"), accepted(spool, "1.2")
    queue.record([Recording(one, to("pacs", "archive")), Recording(two, to("pacs"))], OWNER, NOW)
    queue.failed(queue.claim(OWNER, PACS, NOW), "refused", None)  # one -> pacs is dead
    in_flight = queue.claim(OWNER, PACS, NOW)  # two -> pacs
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
    queue.record([Recording(message, to("pacs"))], OWNER, NOW)
    job = queue.claim(OWNER, PACS, NOW)
    queue._db.execute("DELETE FROM jobs WHERE id = ?", (job.id,))  # as if killed before removing the file
    assert queue.finish_done() == 1
    assert not spool.path_of(message.name).exists() and queue.known_names() == set()


def test_data_changed_sees_other_connections_only(spool, queue):
    other = Queue(spool)
    assert queue.data_changed() is False
    queue.record([Recording(accepted(spool, "1.1"), to("pacs"))], OWNER, NOW)
    queue.failed(queue.claim(OWNER, PACS, NOW), "refused", None)
    assert queue.data_changed() is False
    assert other.retry(None, NOW) == 1  # what `router queue retry` does
    assert queue.data_changed() is True
    assert queue.data_changed() is False
    other.close()


# ---- copies with morphs, prefetches, once_per ---------------------------------------------------------
def test_copies_with_different_morphs_are_separate_jobs_and_identical_ones_one(spool, queue):
    forwards = (
        Forward("pacs", (SET_NAME, DELETE_IDS), "a"),
        Forward("pacs", (SET_NAME, DELETE_IDS), "b"),  # the same copy, asked by another rule
        Forward("pacs", (SET_NAME,), "c"),
        Forward("pacs", (), "d"),
    )
    queue.record([Recording(accepted(spool, "1.1"), Decision(forwards, matched=("a", "b", "c", "d")))], OWNER, NOW)
    jobs = queue.list_jobs()
    assert [(job.lane, job.morphs) for job in jobs] == [
        (PACS, (SET_NAME, DELETE_IDS)),
        (PACS, (SET_NAME,)),
        (PACS, ()),
    ]
    claimed = [queue.claim(OWNER, PACS, NOW) for _ in jobs]
    assert [job.morphs for job in claimed] == [job.morphs for job in jobs]  # the decision travels with the job


def test_a_prefetch_is_a_job_in_its_sources_prefetch_lane_and_needs_no_spool_file(spool, queue):
    message = accepted(spool, "1.1")
    decision = Decision((Forward("archive"),), (prefetch(),), ("priors",))
    queue.record([Recording(message, decision, STUDY)], OWNER, NOW)
    assert queue.claim(OWNER, PACS, NOW) is None  # the deliveries to pacs never wait behind a prefetch
    delivery = queue.claim(OWNER, ARCHIVE, NOW)
    assert queue.delivered(delivery) is True
    assert not spool.path_of(message.name).exists()  # the prefetch needs no file
    job = queue.claim(OWNER, PACS_PREFETCH, NOW)
    assert (job.kind, job.order, job.progress) == (JobKind.PREFETCH, PrefetchOrder(prefetch(), STUDY), PrefetchProgress())
    assert job.sop_instance_uid == "1.1"  # the instance that fired it
    assert queue.finish_done() == 0  # its row stays while the prefetch runs
    progress = PrefetchProgress(("2.1", "2.2"), ("2.1",), found=4)
    queue.failed(job, "0xB000 for 2.2", NOW + 10, progress)
    again = queue.claim(OWNER, PACS_PREFETCH, NOW + 10)
    assert (again.attempts, again.progress, again.progress.remaining) == (1, progress, ("2.2",))
    assert queue.delivered(again) is False
    assert queue.finish_done() == 1 and queue.known_names() == set()
    assert queue.counts(NOW) == [
        DestinationCounts("archive", delivered=1),
        DestinationCounts("pacs", JobKind.PREFETCH, delivered=1),
    ]
    assert [entry.label for entry in queue.counts(NOW)] == ["archive", "pacs (prefetch)"]


def test_an_instance_that_only_fires_a_prefetch_loses_its_file_at_once(spool, queue):
    message = accepted(spool, "1.1")
    queue.record([Recording(message, Decision((), (prefetch(),), ("priors",)), STUDY)], OWNER, NOW)
    assert not spool.path_of(message.name).exists()
    assert queue.record([Recording(message, Decision((), (prefetch(""),), ("priors",)), STUDY)], OWNER, NOW) == []
    assert [job.lane for job in queue.list_jobs()] == [PACS_PREFETCH]


def test_once_per_fires_once_per_key_across_connections_and_batches(spool, queue):
    other = Queue(spool)  # another worker
    decision = Decision((Forward("archive"),), (prefetch(),), ("priors",))
    for start in range(0, 200, 50):
        batch = [Recording(accepted(spool, f"1.{index}"), decision, STUDY) for index in range(start, start + 50)]
        (queue if start % 100 else other).record(batch, start // 50, NOW)
    queue.record([Recording(accepted(spool, "2.1"), Decision((), (prefetch("5.6.7"),), ("priors",)), "5.6.7")], OWNER, NOW)
    queue.record([Recording(accepted(spool, "2.2"), Decision((), (prefetch(rule="other"),), ("other",)), STUDY)], OWNER, NOW)
    for uid in ("3.1", "3.2"):  # no once_per: every instance fires
        queue.record([Recording(accepted(spool, uid), Decision((), (prefetch(""),), ("priors",)), STUDY)], OWNER, NOW)
    prefetches = [job for job in queue.list_jobs() if job.kind is JobKind.PREFETCH]
    fired = [(job.order.prefetch.rule, job.order.prefetch.once_key, job.sop_instance_uid) for job in prefetches]
    assert fired == [("priors", STUDY, "1.0"), ("priors", "5.6.7", "2.1"), ("other", STUDY, "2.2"),
                     ("priors", "", "3.1"), ("priors", "", "3.2")]
    other.close()


def test_a_queue_file_of_the_first_layout_is_upgraded_with_its_jobs_and_counts(spool):
    db = sqlite3.connect(spool.queue_path)
    db.executescript("""
        CREATE TABLE instances (name TEXT PRIMARY KEY, sop_class_uid TEXT NOT NULL, sop_instance_uid TEXT NOT NULL,
            transfer_syntax TEXT NOT NULL, calling_ae TEXT NOT NULL, called_ae TEXT NOT NULL, peer_address TEXT NOT NULL,
            size INTEGER NOT NULL, accepted_at REAL NOT NULL, matched_rules TEXT NOT NULL);
        CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, instance TEXT NOT NULL, destination TEXT NOT NULL,
            owner INTEGER NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL,
            last_error TEXT NOT NULL DEFAULT '', UNIQUE (instance, destination));
        CREATE INDEX jobs_due ON jobs (owner, destination, state, next_attempt);
        CREATE TABLE delivered (destination TEXT PRIMARY KEY, count INTEGER NOT NULL);
        INSERT INTO instances VALUES ('1.1.x.dcm', '1.2', '1.1', '1.2.840.10008.1.2', 'CT1', 'ROUTER', '', 10, 5.0, 'r');
        INSERT INTO jobs VALUES (7, '1.1.x.dcm', 'pacs', 0, 'dead', 3, 5.0, 'refused');
        INSERT INTO delivered VALUES ('pacs', 12);
    """)
    db.close()
    queue = Queue(spool)
    (job,) = queue.list_jobs()
    assert (job.id, job.lane, job.state, job.attempts, job.last_error, job.morphs) == (7, PACS, JobState.DEAD, 3, "refused", ())
    assert queue.counts(NOW) == [DestinationCounts("pacs", delivered=12, dead=1)]
    queue.close()
    assert Queue(spool).list_jobs() == [job]  # opened again: nothing to upgrade
