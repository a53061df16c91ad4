"""The durable delivery queue: one SQLite file (the spool's queue.db) shared by every worker.

Two tables hold the work. `instances` has one row per accepted spool file
(keyed by its spool name) with the facts the rules and the logs need; `jobs`
has one row per instance and destination, owned by the worker (its index)
that recorded it, in one of three states:

    queued     waiting for `next_attempt` (a UNIX time)
    in_flight  claimed by its owner's delivery thread
    dead       failed permanently or out of attempts; `last_error` says why

A delivered job's row is deleted and the destination's counter in `delivered`
goes up, so the file does not grow with the traffic. When an instance has no
job left, its spool file is removed, then its row: in that order, so that a
late announcement of the same file (a bus message or a spool scan) finds
either the row or no file, and is ignored (`record`). The last delivery only
removes the file; `finish_done`, which a worker runs on a timer, deletes the
rows of instances without jobs in one transaction (removing any file a crash
left behind first).

Every connection uses WAL mode, a busy timeout and short transactions
(`BEGIN IMMEDIATE` for writes), so several worker processes and the operator
commands share the file. A `Queue` is one connection: make one per thread.

The operator commands (`router status`, `router queue list|retry|purge`) use:

    Queue(spool).counts(now)              per destination: queued, in flight, delivered, dead, oldest queued age
    Queue(spool).list_jobs(failed_only)   the jobs, oldest first, as `Job` values
    Queue(spool).retry(ids, now)          dead jobs (ids, or every one with None) queued again, attempts reset
    Queue(spool).purge(ids)               jobs deleted (ids, any state but in flight; None: every dead job),
                                          with the spool files no job needs any more

A running worker learns about retried jobs within `REFRESH_INTERVAL` of
`workers.worker`: it watches the file's data version and wakes its delivery
threads when another connection changed it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum

from router.bus import InstanceAccepted
from router.spool import Spool
from rules.evaluate import Decision

BUSY_TIMEOUT = 30.0  # seconds a connection waits for another one's write transaction

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS instances (
        name TEXT PRIMARY KEY,
        sop_class_uid TEXT NOT NULL,
        sop_instance_uid TEXT NOT NULL,
        transfer_syntax TEXT NOT NULL,
        calling_ae TEXT NOT NULL,
        called_ae TEXT NOT NULL,
        peer_address TEXT NOT NULL,
        size INTEGER NOT NULL,
        accepted_at REAL NOT NULL,
        matched_rules TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        instance TEXT NOT NULL,
        destination TEXT NOT NULL,
        owner INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL,
        last_error TEXT NOT NULL DEFAULT '',
        UNIQUE (instance, destination)
    )""",
    "CREATE INDEX IF NOT EXISTS jobs_due ON jobs (owner, destination, state, next_attempt)",
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, destination)",
    "CREATE TABLE IF NOT EXISTS delivered (destination TEXT PRIMARY KEY, count INTEGER NOT NULL)",
)

JOB_COLUMNS = """j.id, j.instance, j.destination, j.state, j.attempts, j.next_attempt, j.last_error,
    i.sop_instance_uid, i.sop_class_uid, i.transfer_syntax, i.calling_ae, i.accepted_at"""
JOB_FROM = "jobs j JOIN instances i ON i.name = j.instance"


class JobState(str, Enum):
    """Where a delivery job stands (a delivered job is no longer a row)."""

    QUEUED = "queued"
    IN_FLIGHT = "in_flight"
    DEAD = "dead"


@dataclass(frozen=True)
class Job:
    """One delivery of one instance to one destination, with the instance's facts."""

    id: int
    instance: str  # the spool file name
    destination: str
    state: JobState
    attempts: int
    next_attempt: float
    last_error: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str
    calling_ae: str
    accepted_at: float


@dataclass(frozen=True)
class DestinationCounts:
    """The jobs of one destination by state; `oldest_queued_age` in seconds (None: nothing queued)."""

    destination: str
    queued: int = 0
    in_flight: int = 0
    delivered: int = 0
    dead: int = 0
    oldest_queued_age: float | None = None


class Queue:
    """One connection to the spool's queue; see the module docstring."""

    def __init__(self, spool: Spool, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.spool = spool
        self._db = sqlite3.connect(spool.queue_path, timeout=busy_timeout, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a crash loses nothing; a power cut, at most the last commits
        with self._write():
            for statement in SCHEMA:
                self._db.execute(statement)
        self._data_version = self._version()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ---- recording ------------------------------------------------------------------------------
    def record(self, entries: Iterable[tuple[InstanceAccepted, Decision]], owner: int, now: float) -> list[InstanceAccepted]:
        """Record instances and one queued job per destination, in one transaction; return the new ones.

        An instance already recorded, or whose spool file is gone (delivered
        and removed), is skipped: recording twice is harmless. An instance no
        destination wants is finished at once (its spool file removed).
        """
        recorded = []
        with self._write() as db:
            for message, decision in entries:
                if db.execute("SELECT 1 FROM instances WHERE name = ?", (message.name,)).fetchone():
                    continue
                if not self.spool.path_of(message.name).exists():
                    continue
                db.execute(
                    "INSERT INTO instances VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (message.name, message.sop_class_uid, message.sop_instance_uid, message.transfer_syntax,
                     message.calling_ae, message.called_ae, message.peer_address, message.size,
                     message.accepted_at, "\n".join(decision.matched)),
                )
                db.executemany(
                    "INSERT OR IGNORE INTO jobs (instance, destination, owner, state, next_attempt) VALUES (?, ?, ?, ?, ?)",
                    [(message.name, destination, owner, JobState.QUEUED.value, now) for destination in decision.destinations],
                )
                recorded.append((message, decision))
        self._finish([message.name for message, decision in recorded if not decision.destinations])
        return [message for message, _ in recorded]

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

    def claim(self, owner: int, destination: str, now: float) -> Job | None:
        """Take the next due job of `owner` for `destination` (it goes in flight), or None."""
        with self._write() as db:
            row = db.execute(
                """UPDATE jobs SET state = ? WHERE id = (
                       SELECT id FROM jobs WHERE owner = ? AND destination = ? AND state = ? AND next_attempt <= ?
                       ORDER BY next_attempt, id LIMIT 1)
                   RETURNING id""",
                (JobState.IN_FLIGHT.value, owner, destination, JobState.QUEUED.value, now),
            ).fetchone()
            return None if row is None else self._job(row[0])

    def next_due(self, owner: int, destination: str) -> float | None:
        """When the earliest queued job of `owner` for `destination` is due, or None if there is none."""
        (due,) = self._db.execute(
            "SELECT MIN(next_attempt) FROM jobs WHERE owner = ? AND destination = ? AND state = ?",
            (owner, destination, JobState.QUEUED.value),
        ).fetchone()
        return due

    def queued_destinations(self, owner: int) -> set[str]:
        """The destinations `owner` has queued jobs for."""
        rows = self._db.execute(
            "SELECT DISTINCT destination FROM jobs WHERE owner = ? AND state = ?", (owner, JobState.QUEUED.value)
        )
        return {destination for (destination,) in rows}

    def delivered(self, job: Job) -> bool:
        """Count `job` delivered and forget it; True when that finished its instance (spool file removed)."""
        with self._write() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job.id,))
            db.execute(
                "INSERT INTO delivered VALUES (?, 1) ON CONFLICT (destination) DO UPDATE SET count = count + 1",
                (job.destination,),
            )
            finished = db.execute("SELECT 1 FROM jobs WHERE instance = ? LIMIT 1", (job.instance,)).fetchone() is None
        if finished:
            self.spool.remove(job.instance)  # its row goes with the next `finish_done`
        return finished

    def failed(self, job: Job, error: str, retry_at: float | None) -> None:
        """Count a failed attempt: queue the job again for `retry_at`, or (None) make it dead."""
        state = JobState.DEAD if retry_at is None else JobState.QUEUED
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET state = ?, attempts = attempts + 1, next_attempt = COALESCE(?, next_attempt), "
                "last_error = ? WHERE id = ?",
                (state.value, retry_at, error, job.id),
            )

    def data_changed(self) -> bool:
        """True when another connection committed a change since the last call."""
        version = self._version()
        changed, self._data_version = version != self._data_version, version
        return changed

    def _version(self) -> int:
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    # ---- finishing instances --------------------------------------------------------------------------
    def finish_done(self) -> int:
        """Forget every instance left without jobs (its spool file removed first); return how many."""
        rows = self._db.execute("SELECT name FROM instances WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE instance = name)")
        return self._finish([name for (name,) in rows.fetchall()])

    def _finish(self, names: list[str]) -> int:
        """Remove the spool files of instances `names`, then the rows of those no job needs; return how many."""
        needed = {name for name in names if self._db.execute("SELECT 1 FROM jobs WHERE instance = ?", (name,)).fetchone()}
        done = [name for name in names if name not in needed]
        for name in done:
            self.spool.remove(name)
        if done:
            with self._write() as db:
                db.executemany(
                    "DELETE FROM instances WHERE name = ? AND NOT EXISTS (SELECT 1 FROM jobs WHERE instance = name)",
                    [(name,) for name in done],
                )
        return len(done)

    # ---- the operator's view ---------------------------------------------------------------------------
    def counts(self, now: float) -> list[DestinationCounts]:
        """Per destination (every one with a job or a delivery), the jobs by state; sorted by name."""
        tallies: dict[str, dict[str, float | None]] = {}
        for destination, state, count in self._db.execute("SELECT destination, state, COUNT(*) FROM jobs GROUP BY 1, 2"):
            tallies.setdefault(destination, {})[state] = count
        for destination, count in self._db.execute("SELECT destination, count FROM delivered"):
            tallies.setdefault(destination, {})["delivered"] = count
        oldest = self._db.execute(
            f"SELECT j.destination, MIN(i.accepted_at) FROM {JOB_FROM} WHERE j.state = ? GROUP BY 1",
            (JobState.QUEUED.value,),
        )
        for destination, accepted_at in oldest:
            tallies[destination]["oldest"] = max(0.0, now - accepted_at)
        return [
            DestinationCounts(
                destination,
                queued=int(tally.get(JobState.QUEUED.value) or 0),
                in_flight=int(tally.get(JobState.IN_FLIGHT.value) or 0),
                delivered=int(tally.get("delivered") or 0),
                dead=int(tally.get(JobState.DEAD.value) or 0),
                oldest_queued_age=tally.get("oldest"),
            )
            for destination, tally in sorted(tallies.items())
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

    def _job(self, job_id: int) -> Job | None:
        row = self._db.execute(f"SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE j.id = ?", (job_id,)).fetchone()
        return None if row is None else _job_of(row)


def _job_of(row: tuple) -> Job:
    return Job(row[0], row[1], row[2], JobState(row[3]), *row[4:])


def _selection(ids: Iterable[int] | None) -> tuple[str, list[int]]:
    """An `AND id IN (...)` clause for `ids`, or nothing for None (every job)."""
    if ids is None:
        return "", []
    chosen = [int(job_id) for job_id in ids]
    return f"AND id IN ({', '.join('?' * len(chosen))})", chosen
