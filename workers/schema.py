"""The tables of the delivery queue (`workers.queue`), and the upgrade of a file written by an older layout.

The layout's version is SQLite's `user_version`. Version 1 (no version set)
had one job per instance and destination and one delivered count per
destination; version 2 adds the job's kind, its order (`spec`: the morphs of
a copy, or a prefetch) and a prefetch's progress, counts deliveries per
destination and kind, and remembers which `once_per` prefetches fired
(`once`). An upgrade keeps every job (as a copy without morphs) and count.
"""

from __future__ import annotations

import sqlite3

VERSION = 2

INSTANCES = """CREATE TABLE IF NOT EXISTS instances (
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
)"""
JOBS = """CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance TEXT NOT NULL,
    destination TEXT NOT NULL,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    owner INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    progress TEXT NOT NULL DEFAULT '',
    UNIQUE (instance, destination, kind, spec)
)"""
DELIVERED = """CREATE TABLE IF NOT EXISTS delivered (
    destination TEXT NOT NULL,
    kind TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (destination, kind)
)"""
ONCE = """CREATE TABLE IF NOT EXISTS once (
    rule TEXT NOT NULL,
    once_key TEXT NOT NULL,
    fired_at REAL NOT NULL,
    PRIMARY KEY (rule, once_key)
)"""
INDEXES = (
    "CREATE INDEX IF NOT EXISTS jobs_due ON jobs (owner, destination, kind, state, next_attempt)",
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, destination, kind)",
)
UPGRADE_FROM_1 = (
    "DROP INDEX IF EXISTS jobs_due",
    "DROP INDEX IF EXISTS jobs_state",
    "ALTER TABLE jobs RENAME TO jobs_1",
    "ALTER TABLE delivered RENAME TO delivered_1",
    JOBS,
    DELIVERED,
    """INSERT INTO jobs (id, instance, destination, kind, spec, owner, state, attempts, next_attempt, last_error)
       SELECT id, instance, destination, 'store', '', owner, state, attempts, next_attempt, last_error FROM jobs_1""",
    "INSERT INTO delivered SELECT destination, 'store', count FROM delivered_1",
    "DROP TABLE jobs_1",
    "DROP TABLE delivered_1",
)


def create_or_upgrade(db: sqlite3.Connection) -> None:
    """Bring the tables to this version's layout (inside the caller's write transaction)."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version == VERSION:
        return
    if version == 0 and db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'").fetchone():
        for statement in UPGRADE_FROM_1:
            db.execute(statement)
    for statement in (INSTANCES, JOBS, DELIVERED, ONCE, *INDEXES):
        db.execute(statement)
    db.execute(f"PRAGMA user_version = {VERSION}")
