"""The spool: where every accepted instance is kept, durably, until all its deliveries are done.

Layout under the spool root (one filesystem, so every move is a rename):

    tmp/              data sets being received (the engine's spool directory); emptied at start
    tmp/<process>/    the same, for one process only (a listener's), emptied when it starts
    incoming/<name>   accepted instances: durable, answered Success, announced on the bus
    bus/              ipc:// endpoints of the bus
    queue.db          the workers' durable delivery queue (see `workers.queue`)

A file in `incoming/` is the source of truth for "accepted": its name is
`<SOP Instance UID>.<unique suffix>.dcm`, unique even when the same instance
is sent twice. It is a Part 10 file holding the data set bit for bit as
received. Workers never move it; they record it in the queue, and the last
finished delivery deletes it. A worker that starts scans `incoming/` for files
the queue does not know (an announcement lost with a killed process), so an
accepted instance is never forgotten.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from router.config import Durability

SUFFIX = ".dcm"
NOT_IN_A_UID = re.compile(r"[^0-9.]")
UNIQUE_BYTES = 6  # random bytes in a name: 12 hex digits


@dataclass(frozen=True)
class Spool:
    """The spool directories under `root`."""

    root: Path

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @cached_property
    def incoming(self) -> Path:  # cached: every accepted file's path is made from it
        return self.root / "incoming"

    @property
    def bus(self) -> Path:
        return self.root / "bus"

    @property
    def queue_path(self) -> Path:
        return self.root / "queue.db"

    def create(self) -> None:
        """Make the directories that do not exist yet."""
        for directory in (self.tmp, self.incoming, self.bus):
            directory.mkdir(parents=True, exist_ok=True)

    def clear_tmp(self) -> None:
        """Remove partial files a killed process left in `tmp/` (never accepted, never answered)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def fresh_tmp(self, process: str) -> Path:
        """An empty `tmp/<process>/` for one process: what a killed predecessor left there was never answered.

        Several processes receive at once; each clears only its own directory, never a live sibling's.
        """
        directory = self.tmp / process
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def new_name(self, sop_instance_uid: str) -> str:
        """A file name for an accepted instance, unique even for a resent instance."""
        safe = NOT_IN_A_UID.sub("", sop_instance_uid) or "unknown"
        return f"{safe}.{os.urandom(UNIQUE_BYTES).hex()}{SUFFIX}"

    def path_of(self, name: str) -> Path:
        """The accepted file called `name`; names never hold a directory part."""
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"'{name}' is not a spool file name")
        return self.incoming / name

    def accepted(self) -> Iterator[str]:
        """The names of every accepted file, oldest first."""
        entries = []
        for entry in os.scandir(self.incoming):
            if not entry.name.endswith(SUFFIX):
                continue
            try:
                entries.append((entry.stat().st_mtime, entry.name))
            except FileNotFoundError:
                continue  # delivered and removed while we looked
        entries.sort()
        return (name for _, name in entries)

    def remove(self, name: str) -> None:
        """Forget an accepted file whose deliveries are all done."""
        self.path_of(name).unlink(missing_ok=True)


def make_durable(path: Path, durability: Durability) -> None:
    """Make the written, closed file at `path` as durable as `durability` asks.

    A closed file is already with the operating system (it survives the death
    of the process), which is what `flush` promises; `none` promises nothing
    more. `fsync` also waits until the file and its directory entry are on disk.
    """
    if durability is not Durability.FSYNC:
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """fsync a directory, so a rename or a new file in it survives a power cut."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
