"""The durable delivery queue: one SQLite file (the spool's queue.db) shared by every worker.

Two tables hold the work (the layout is `workers.schema`). `instances`
has one row per accepted spool file (keyed by its spool name) with the facts
the rules and the logs need; `jobs` has one row per thing to do for an
instance: a copy to a destination with the morphs of the rule that asked for
it, or a prefetch from a Q/R destination (`workers.jobs`). A job is owned by
the worker (its index) that recorded it, or by the worker that delivers its
lane for it (`workers.shares`), and is in one of three states:

    queued     waiting for `next_attempt` (a UNIX time)
    in_flight  claimed by its owner's runner of the job's lane (destination, kind)
    dead       failed permanently or out of attempts; `last_error` says why

`once` holds one row per prefetch rule and `once_key` that has fired: it is
inserted in the transaction that records the prefetch job, so a prefetch
with a `once_per` key fires once across every worker and restart (the rows
are kept: a study that comes back a year later does not fire again).

A finished job's row is deleted and the counter of its lane in `delivered`
goes up, so the file does not grow with the traffic. A busy worker writes in
batches: `record_claiming` records a batch of instances and hands the caller
their new jobs already claimed (in flight) in the same transaction,
`claim_many` claims several due jobs at once, and `settle` records how many
attempts ended (and puts back claimed jobs never started) in one transaction. When an instance has no
copy left to deliver, its spool file is removed (a prefetch never needs the
file), and once it has no job at all, its row: in that order, so that a late
announcement of the same file (a bus message or a spool scan) finds either
the row or no file, and is ignored (`record`). The last delivery only removes
the file; `finish_done`, which a worker runs on a timer, deletes the rows of
instances without jobs in one transaction (removing any file a crash left
behind first).

Every connection uses WAL mode, a busy timeout and short transactions
(`BEGIN IMMEDIATE` for writes), so several worker processes and the operator
commands share the file. A `Queue` is one connection: make one per thread.
The connections of one process may share a `write_lock`: they then take
turns in the process instead of in SQLite, whose busy handler sleeps (a
millisecond and more) while another connection writes.

The operator commands (`router status`, `router queue list|retry|purge`) use:

    Queue(spool).counts(now)              per lane: queued, in flight, delivered, dead, oldest queued age
    Queue(spool).list_jobs(failed_only)   the jobs, oldest first, as `Job` values
    Queue(spool).retry(ids, now)          dead jobs (ids, or every one with None) queued again, attempts reset
    Queue(spool).purge(ids)               jobs deleted (ids, any state but in flight; None: every dead job),
                                          with the spool files no job needs any more

A queue that cannot be written (a full disk, an I/O error) raises
`QueueUnwritable`, with the file and SQLite's reason, and nothing of the
failed transaction is kept: a failed `record` leaves the spool files for a
later scan, a failed `settle` removes no file. The connections of a worker
process share a `QueueOutage`: it logs the first failure in one line, says
how long to wait before trying again (a back-off that grows with each round
of failures), and logs the end once a write changes the file again.

A running worker learns about retried jobs within its
`Timing.refresh_interval`: it watches the file's data version and wakes its
runners when another connection changed it.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from router.bus import InstanceAccepted
from router.config import RetryPolicy
from router.logs import FIELDS
from router.spool import Spool
from rules.decision import Decision, Morph
from workers.jobs import JobKind, Lane, PrefetchOrder, PrefetchProgress, morphs_of, morphs_text, order_of, order_text
from workers.jobs import progress_of, progress_text
from workers.retry import backoff
from workers.schema import create_or_upgrade

LOGGER = logging.getLogger("workers")
BUSY_TIMEOUT = 30.0  # seconds a connection waits for another one's write transaction
OUTAGE_BACKOFF = RetryPolicy(backoff=1.0, max_backoff=30.0)  # between tries at a queue that cannot be written

# SQLite's primary result codes that say the file cannot be written now (its storage, not the statement)
SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN = 8, 10, 13, 14
UNWRITABLE_CODES = frozenset({SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN})
UNWRITABLE_MESSAGES = frozenset({  # their messages, for a Python without `sqlite_errorcode` (before 3.11)
    "attempt to write a readonly database", "disk I/O error", "database or disk is full", "unable to open database file",
})
PRIMARY_CODE = 0xFF  # an extended result code's low byte is its primary code

JOB_COLUMNS = """j.id, j.instance, j.destination, j.state, j.attempts, j.next_attempt, j.last_error,
    i.sop_instance_uid, i.sop_class_uid, i.transfer_syntax, i.calling_ae, i.accepted_at, j.kind, j.spec, j.progress"""
JOB_FROM = "jobs j JOIN instances i ON i.name = j.instance"
STORE_JOB_OF = "SELECT 1 FROM jobs WHERE instance = ? AND kind = 'store' LIMIT 1"


class JobState(str, Enum):
    """Where a job stands (a finished job is no longer a row)."""

    QUEUED = "queued"
    IN_FLIGHT = "in_flight"
    DEAD = "dead"


@dataclass(frozen=True)
class Job:
    """One copy of one instance to one destination, or one prefetch it fired, with the instance's facts."""

    id: int
    instance: str  # the spool file name
    destination: str  # for a prefetch: its source
    state: JobState
    attempts: int
    next_attempt: float
    last_error: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str
    calling_ae: str
    accepted_at: float
    kind: JobKind = JobKind.STORE
    morphs: tuple[Morph, ...] = ()  # a copy's
    order: PrefetchOrder | None = None  # a prefetch's
    progress: PrefetchProgress = PrefetchProgress()  # a prefetch's, from its earlier attempts

    @property
    def lane(self) -> Lane:
        return Lane(self.destination, self.kind)


@dataclass(frozen=True)
class DestinationCounts:
    """The jobs of one lane by state; `oldest_queued_age` in seconds (None: nothing queued)."""

    destination: str
    kind: JobKind = JobKind.STORE
    queued: int = 0
    in_flight: int = 0
    delivered: int = 0
    dead: int = 0
    oldest_queued_age: float | None = None

    @property
    def label(self) -> str:
        return Lane(self.destination, self.kind).label


@dataclass(frozen=True)
class Ending:
    """How an attempt at `job` ended: delivered, or failed with `error` and queued again for `retry_at` (None: dead).

    A failed prefetch keeps its `progress` for the next attempt.
    """

    job: Job
    delivered: bool = True
    error: str = ""
    retry_at: float | None = None
    progress: PrefetchProgress | None = None


@dataclass(frozen=True)
class Recording:
    """An announced instance, what the rules decided for it, and its study (which its prefetches leave out)."""

    message: InstanceAccepted
    decision: Decision
    study_uid: str = ""


class QueueUnwritable(Exception):
    """The queue file cannot be written now (a full disk, an I/O error); nothing of the transaction was kept."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot write the queue {path} ({reason})")
        self.path = path
        self.reason = reason


class QueueOutage:
    """The queue writes of one process failing for want of storage: one log line each way, and the back-off.

    Each failure (`failed`) that comes after the wait the last one set starts
    a new round and a longer wait (`OUTAGE_BACKOFF`); the first round logs the
    file and the reason. A committed write that changed the file (`wrote`) ends
    the outage. Thread-safe: a worker's connections share one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rounds = 0
        self._retry_at = 0.0  # monotonic
        self._since = 0.0

    def failed(self, error: QueueUnwritable) -> None:
        """A write failed: a new round (logged if it is the first) unless the last round's wait still runs."""
        now = time.monotonic()
        with self._lock:
            if now < self._retry_at:
                return
            self._rounds += 1
            self._retry_at = now + backoff(OUTAGE_BACKOFF, self._rounds, random.random())
            if self._rounds == 1:
                self._since = now
                LOGGER.error(f"{error}: accepted instances wait in the spool; trying again with a back-off")

    def wrote(self, path: Path) -> None:
        """A write that changed the file `path` was committed: the outage, if any, is over (logged)."""
        with self._lock:
            if not self._rounds:
                return
            lasted, self._rounds, self._retry_at = time.monotonic() - self._since, 0, 0.0
        LOGGER.info(f"the queue {path} can be written again", extra={FIELDS: {"after": round(lasted, 1)}})

    def pause(self) -> float:
        """Seconds until the next try at the queue (0: now)."""
        with self._lock:
            return max(0.0, self._retry_at - time.monotonic())

    def waiting(self) -> bool:
        """True while the wait after a failed write runs."""
        return self.pause() > 0


class Queue:
    """One connection to the spool's queue; see the module docstring."""

    def __init__(
        self,
        spool: Spool,
        busy_timeout: float = BUSY_TIMEOUT,
        write_lock: threading.Lock | None = None,
        outage: QueueOutage | None = None,
    ) -> None:
        self.spool = spool
        self._write_lock: AbstractContextManager = write_lock or nullcontext()
        self._outage = outage
        with self._storage():
            self._db = sqlite3.connect(spool.queue_path, timeout=busy_timeout, isolation_level=None)
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")  # a crash loses nothing; a power cut, at most the last commits
                with self._write() as db:
                    create_or_upgrade(db)
                self._data_version = self._version()
            except BaseException:
                self._db.close()
                raise

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; on any error it is rolled back (SQLite may have done it already)."""
        with self._write_lock, self._storage():
            changes = self._db.total_changes
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        if self._outage is not None and self._db.total_changes > changes:
            self._outage.wrote(self.spool.queue_path)

    @contextmanager
    def _storage(self) -> Iterator[None]:
        """SQLite's errors that say the file cannot be written become `QueueUnwritable` (told to the outage)."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if not _unwritable(exc):
                raise
            error = QueueUnwritable(self.spool.queue_path, str(exc))
            if self._outage is not None:
                self._outage.failed(error)
            raise error from exc

    # ---- recording ------------------------------------------------------------------------------
    def record(self, recordings: Iterable[Recording], owner: int, now: float) -> list[InstanceAccepted]:
        """Record instances and their queued jobs, in one transaction; return the new instances.

        Each forward is a copy job (identical ones are one job) and each
        prefetch a prefetch job, unless its rule already fired for its
        `once_key`. An instance already recorded, or whose spool file is gone
        (delivered and removed), is skipped: recording twice is harmless. The
        spool file of an instance no destination wants is removed at once.
        """
        return self.record_claiming(recordings, owner, now, {})[0]

    def record_claiming(
        self,
        recordings: Iterable[Recording],
        owner: int,
        now: float,
        room: Mapping[Lane, int],
        owners: Mapping[Lane, int] | None = None,
    ) -> tuple[list[InstanceAccepted], list[Job]]:
        """`record`, but up to `room[lane]` new jobs of each lane are recorded claimed (in flight) and returned;
        the jobs of a lane in `owners` are recorded queued for the worker it names, which delivers that lane."""
        owners = owners or {}
        room = dict(room)
        recorded, claimed = [], []
        with self._write() as db:
            for recording in recordings:
                message = recording.message
                if not os.path.exists(self.spool.path_of(message.name)):
                    continue
                inserted = db.execute(
                    "INSERT OR IGNORE INTO instances VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (message.name, message.sop_class_uid, message.sop_instance_uid, message.transfer_syntax,
                     message.calling_ae, message.called_ae, message.peer_address, message.size,
                     message.accepted_at, "\n".join(recording.decision.matched)),
                ).rowcount
                if not inserted:
                    continue
                for lane, spec in _orders(db, recording, now):
                    lane_owner = owners.get(lane, owner)
                    state = JobState.IN_FLIGHT if room.get(lane, 0) > 0 and lane_owner == owner else JobState.QUEUED
                    row = db.execute(
                        "INSERT OR IGNORE INTO jobs (instance, destination, kind, spec, owner, state, next_attempt) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                        (message.name, lane.destination, lane.kind.value, spec, lane_owner, state.value, now),
                    ).fetchone()
                    if row is not None and state is JobState.IN_FLIGHT:
                        room[lane] -= 1
                        claimed.append(_new_job(row[0], message, lane, spec, now))
                recorded.append(recording)
        with suppress(QueueUnwritable):  # recorded all the same: `finish_done` forgets these rows later
            self._finish([recording.message.name for recording in recorded if not recording.decision.forwards])
        return [recording.message for recording in recorded], claimed

    def known_names(self) -> set[str]:
        """The spool names of every recorded instance."""
        return {name for (name,) in self._db.execute("SELECT name FROM instances")}

    # ---- a worker's own jobs ------------------------------------------------------------------------
    def reclaim(self, owner: int) -> int:
        """Put back to queued the jobs a dead process of index `owner` left in flight; return how many."""
        with self._write() as db:
            return db.execute(
                "UPDATE jobs SET state = ? WHERE owner = ? AND state = ?",
                (JobState.QUEUED.value, owner, JobState.IN_FLIGHT.value),
            ).rowcount

    def adopt(self, owner: int, workers: int) -> int:
        """Take over the jobs of worker indexes >= `workers` (a config with fewer workers); return how many."""
        with self._write() as db:
            return db.execute(
                "UPDATE jobs SET owner = ?, state = CASE state WHEN ? THEN ? ELSE state END WHERE owner >= ?",
                (owner, JobState.IN_FLIGHT.value, JobState.QUEUED.value, workers),
            ).rowcount

    def hand_over(self, lane: Lane, owner: int, to: int) -> int:
        """Give worker `to` the queued jobs of `owner` in `lane` (it delivers that lane); return how many."""
        with self._write() as db:
            return db.execute(
                "UPDATE jobs SET owner = ? WHERE owner = ? AND destination = ? AND kind = ? AND state = ?",
                (to, owner, lane.destination, lane.kind.value, JobState.QUEUED.value),
            ).rowcount

    def claim(self, owner: int, lane: Lane, now: float) -> Job | None:
        """Take the next due job of `owner` in `lane` (it goes in flight), or None."""
        jobs = self.claim_many(owner, lane, now, 1)
        return jobs[0] if jobs else None

    def claim_many(self, owner: int, lane: Lane, now: float, limit: int) -> list[Job]:
        """Take up to `limit` due jobs of `owner` in `lane`, the earliest first (they go in flight)."""
        with self._write() as db:
            ids = [job_id for (job_id,) in db.execute(
                """UPDATE jobs SET state = ? WHERE id IN (
                       SELECT id FROM jobs WHERE owner = ? AND destination = ? AND kind = ? AND state = ?
                       AND next_attempt <= ? ORDER BY next_attempt, id LIMIT ?)
                   RETURNING id""",
                (JobState.IN_FLIGHT.value, owner, lane.destination, lane.kind.value, JobState.QUEUED.value, now, limit),
            ).fetchall()]
            if not ids:
                return []
            rows = db.execute(
                f"SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE j.id IN ({', '.join('?' * len(ids))}) "
                "ORDER BY j.next_attempt, j.id",
                ids,
            )
            return [_job_of(row) for row in rows]

    def next_due(self, owner: int, lane: Lane) -> float | None:
        """When the earliest queued job of `owner` in `lane` is due, or None if there is none."""
        (due,) = self._db.execute(
            "SELECT MIN(next_attempt) FROM jobs WHERE owner = ? AND destination = ? AND kind = ? AND state = ?",
            (owner, lane.destination, lane.kind.value, JobState.QUEUED.value),
        ).fetchone()
        return due

    def queued_lanes(self, owner: int) -> set[Lane]:
        """The lanes `owner` has queued jobs in."""
        rows = self._db.execute(
            "SELECT DISTINCT destination, kind FROM jobs WHERE owner = ? AND state = ?", (owner, JobState.QUEUED.value)
        )
        return {Lane(destination, JobKind(kind)) for destination, kind in rows}

    def delivered(self, job: Job) -> bool:
        """Count `job` done and forget it; True when that was its instance's last copy (spool file removed)."""
        return bool(self.settle([Ending(job)]))

    def failed(self, job: Job, error: str, retry_at: float | None, progress: PrefetchProgress | None = None) -> None:
        """Count a failed attempt: queue the job again for `retry_at`, or (None) make it dead; keep its `progress`."""
        self.settle([Ending(job, False, error, retry_at, progress)])

    def settle(self, endings: Iterable[Ending], released: Iterable[Job] = ()) -> list[str]:
        """Record how attempts ended and queue again the claimed jobs never started (`released`), in one transaction.

        A delivered job is counted and forgotten; a failed one is queued again
        or made dead (`Ending`). Return the instances whose last copy this
        delivered: their spool files are removed (their rows go with the next
        `finish_done`).
        """
        counts: Counter[Lane] = Counter()
        copied: set[str] = set()
        with self._write() as db:
            for ending in endings:
                job = ending.job
                if ending.delivered:
                    db.execute("DELETE FROM jobs WHERE id = ?", (job.id,))
                    counts[job.lane] += 1
                    if job.kind is JobKind.STORE:
                        copied.add(job.instance)
                    continue
                state = JobState.DEAD if ending.retry_at is None else JobState.QUEUED
                progress = None if ending.progress is None else progress_text(ending.progress)
                db.execute(
                    "UPDATE jobs SET state = ?, attempts = attempts + 1, next_attempt = COALESCE(?, next_attempt), "
                    "last_error = ?, progress = COALESCE(?, progress) WHERE id = ?",
                    (state.value, ending.retry_at, ending.error, progress, job.id),
                )
            db.executemany(
                "INSERT INTO delivered VALUES (?, ?, ?) "
                "ON CONFLICT (destination, kind) DO UPDATE SET count = count + excluded.count",
                [(lane.destination, lane.kind.value, count) for lane, count in counts.items()],
            )
            db.executemany(
                "UPDATE jobs SET state = ? WHERE id = ? AND state = ?",
                [(JobState.QUEUED.value, job.id, JobState.IN_FLIGHT.value) for job in released],
            )
            finished = sorted(name for name in copied if db.execute(STORE_JOB_OF, (name,)).fetchone() is None)
        for name in finished:
            self.spool.remove(name)
        return finished

    def data_changed(self) -> bool:
        """True when another connection committed a change since the last call."""
        version = self._version()
        changed, self._data_version = version != self._data_version, version
        return changed

    def _version(self) -> int:
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    # ---- finishing instances --------------------------------------------------------------------------
    def finish_done(self) -> int:
        """Remove the spool files no copy needs (a crash may leave some), and forget the instances without jobs; how many."""
        rows = self._db.execute(
            "SELECT name FROM instances WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE instance = name AND kind = 'store')"
        )
        return self._finish([name for (name,) in rows.fetchall()], checked=True)

    def _finish(self, names: list[str], checked: bool = False) -> int:
        """Remove the spool files of instances `names` no copy needs, then the rows no job needs; return how many rows.

        `checked`: the caller just found that no copy needs them.
        """
        done = names if checked else [name for name in names if self._db.execute(STORE_JOB_OF, (name,)).fetchone() is None]
        for name in done:
            self.spool.remove(name)
        if not done:
            return 0
        with self._write() as db:
            return db.executemany(
                "DELETE FROM instances WHERE name = ? AND NOT EXISTS (SELECT 1 FROM jobs WHERE instance = name)",
                [(name,) for name in done],
            ).rowcount

    # ---- the operator's view ---------------------------------------------------------------------------
    def counts(self, now: float) -> list[DestinationCounts]:
        """Per lane (every one with a job or a finished one), the jobs by state; sorted by destination, then kind."""
        tallies: dict[tuple[str, str], dict[str, float | None]] = {}
        for destination, kind, state, count in self._db.execute(
            "SELECT destination, kind, state, COUNT(*) FROM jobs GROUP BY 1, 2, 3"
        ):
            tallies.setdefault((destination, kind), {})[state] = count
        for destination, kind, count in self._db.execute("SELECT destination, kind, count FROM delivered"):
            tallies.setdefault((destination, kind), {})["delivered"] = count
        oldest = self._db.execute(
            f"SELECT j.destination, j.kind, MIN(i.accepted_at) FROM {JOB_FROM} WHERE j.state = ? GROUP BY 1, 2",
            (JobState.QUEUED.value,),
        )
        for destination, kind, accepted_at in oldest:
            tallies[(destination, kind)]["oldest"] = max(0.0, now - accepted_at)
        return [
            DestinationCounts(
                destination,
                JobKind(kind),
                queued=int(tally.get(JobState.QUEUED.value) or 0),
                in_flight=int(tally.get(JobState.IN_FLIGHT.value) or 0),
                delivered=int(tally.get("delivered") or 0),
                dead=int(tally.get(JobState.DEAD.value) or 0),
                oldest_queued_age=tally.get("oldest"),
            )
            for (destination, kind), tally in sorted(tallies.items())
        ]

    def list_jobs(self, failed_only: bool = False, limit: int | None = None) -> list[Job]:
        """The jobs (only the dead ones with `failed_only`), oldest first, at most `limit` of them."""
        where = "WHERE j.state = ?" if failed_only else ""
        parameters: list = [JobState.DEAD.value] if failed_only else []
        rows = self._db.execute(
            f"SELECT {JOB_COLUMNS} FROM {JOB_FROM} {where} ORDER BY j.id LIMIT ?", (*parameters, -1 if limit is None else limit)
        )
        return [_job_of(row) for row in rows]

    def retry(self, ids: Iterable[int] | None, now: float) -> int:
        """Queue dead jobs again with their attempts reset: those in `ids`, or all with None; return how many."""
        selection, parameters = _selection(ids)
        with self._write() as db:
            return db.execute(
                f"UPDATE jobs SET state = ?, attempts = 0, next_attempt = ? WHERE state = ? {selection}",
                (JobState.QUEUED.value, now, JobState.DEAD.value, *parameters),
            ).rowcount

    def purge(self, ids: Iterable[int] | None) -> int:
        """Delete the jobs in `ids` (unless in flight), or every dead job with None; return how many.

        An instance no job needs any more loses its spool file.
        """
        selection, parameters = _selection(ids)
        condition = "state != ?" if ids is not None else "state = ?"
        state = JobState.IN_FLIGHT if ids is not None else JobState.DEAD
        with self._write() as db:
            names = [
                name
                for (name,) in db.execute(
                    f"DELETE FROM jobs WHERE {condition} {selection} RETURNING instance", (state.value, *parameters)
                ).fetchall()
            ]
        self._finish(sorted(set(names)))
        return len(names)


def _job_of(row: tuple) -> Job:
    kind, spec, progress = JobKind(row[12]), row[13], row[14]
    if kind is JobKind.PREFETCH:
        return Job(row[0], row[1], row[2], JobState(row[3]), *row[4:12], kind, (), order_of(spec), progress_of(progress))
    return Job(row[0], row[1], row[2], JobState(row[3]), *row[4:12], kind, morphs_of(spec))


def _new_job(job_id: int, message: InstanceAccepted, lane: Lane, spec: str, now: float) -> Job:
    """The job just recorded claimed for `message` in `lane` with its stored order `spec`."""
    return _job_of((
        job_id, message.name, lane.destination, JobState.IN_FLIGHT.value, 0, now, "", message.sop_instance_uid,
        message.sop_class_uid, message.transfer_syntax, message.calling_ae, message.accepted_at, lane.kind.value, spec, "",
    ))


def _orders(db: sqlite3.Connection, recording: Recording, now: float) -> list[tuple[Lane, str]]:
    """The lane and stored order of each job of `recording`; a prefetch already fired for its `once_key` is left out."""
    orders = [(Lane(forward.destination), morphs_text(forward.morphs)) for forward in recording.decision.forwards]
    for prefetch in recording.decision.prefetches:
        first = not prefetch.once_key or db.execute(
            "INSERT OR IGNORE INTO once VALUES (?, ?, ?)", (prefetch.rule, prefetch.once_key, now)
        ).rowcount == 1
        if first:
            orders.append((Lane(prefetch.source, JobKind.PREFETCH), order_text(PrefetchOrder(prefetch, recording.study_uid))))
    return orders


def _unwritable(error: sqlite3.OperationalError) -> bool:
    """True when SQLite says the file cannot be written now, rather than that a statement is wrong."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:
        return str(error) in UNWRITABLE_MESSAGES
    return code & PRIMARY_CODE in UNWRITABLE_CODES


def _selection(ids: Iterable[int] | None) -> tuple[str, list[int]]:
    """An `AND id IN (...)` clause for `ids`, or nothing for None (every job)."""
    if ids is None:
        return "", []
    chosen = [int(job_id) for job_id in ids]
    return f"AND id IN ({', '.join('?' * len(chosen))})", chosen
