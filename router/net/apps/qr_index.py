"""The qrscp's index: the instances it holds, their files, and their key attributes, in SQLite.

One table, a row per SOP Instance: the file's path, size, modification time
and transfer syntax, and a column per stored key (`qr_model.STORED_KEYWORDS`;
several values joined by backslashes). The index is a cache of the folder: a
database of another layout (`SCHEMA_VERSION`) is rebuilt from the files. `scan` brings the index in line with the instance
folder: new or changed files are read (up to the pixel data), then checked to
be whole by the headers of what follows (the pixel data is never loaded); what
is not a regular file, not DICOM or cut short is logged as an error and
skipped, and so is a folder that cannot be listed; rows of vanished or now
skipped files are dropped. Before a file is sent, `InstanceIndex.check_sendable` sees that it
still holds the instance indexed, whole: a file cut short since has another
size, and is read and checked again like a new one.
Associations run on their own threads, so one connection serves them all
behind a lock; a search copies its rows out before matching them.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
import zlib
from dataclasses import dataclass, field
from typing import Callable

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from router.net.apps.qr_match import Values, as_values
from router.net.whole_file import NotWhole, check_whole
from router.net.received import PART_SUFFIX  # a reception in progress, or a file being saved
from router.net.apps.qr_model import STORED_KEYWORDS, UNIQUE_KEYS, Query, Record, find_matches

LOGGER = logging.getLogger("router.net")

TABLE = "instances"
PRIMARY_KEY = "SOPInstanceUID"
REQUIRED_KEYWORDS = ("SOPClassUID", *UNIQUE_KEYS.values())
"""Without these an instance cannot be found, placed in the hierarchy or sent."""
MULTIPLE = "\\"
SCHEMA_VERSION = 1  # PRAGMA user_version of the layout below
_FILE_COLUMNS = ("path", "size", "mtime", "syntax")
_COLUMNS = (*_FILE_COLUMNS, *STORED_KEYWORDS)
NOT_REGULAR = {  # os.walk lists these among the files (a link to a directory among the folders)
    stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
}


class NotIndexable(Exception):
    """A file the index cannot hold: not DICOM, unreadable, or without its unique keys."""


@dataclass(frozen=True)
class StoredInstance:
    """An indexed instance: where its file is, its transfer syntax and its key attributes; the
    file's size and modification time (ns) when it was indexed, if it was."""

    path: str
    transfer_syntax: str
    record: Record
    size: int | None = None
    mtime: int | None = None

    @property
    def sop_instance_uid(self) -> str:
        return self.record[PRIMARY_KEY][0]


@dataclass
class ScanSummary:
    """What a scan of the instance folder did."""

    indexed: int = 0
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)
    removed: int = 0

    def skip(self, path: str, reason: str) -> None:
        """Pass over the file or folder at `path`, saying why as an error (shown without -v, as storescu does)."""
        LOGGER.error(f"Skipping {path}: {reason}")
        self.skipped.append(path)

    def skip_folder(self, error: OSError) -> None:
        """Pass over a folder the scan cannot list (os.walk's `onerror`)."""
        self.skip(error.filename, error.strerror or str(error))


def read_instance(path: str) -> StoredInstance:
    """The whole DICOM file at `path` as the index keeps it (NotIndexable if it cannot)."""
    try:
        with open(path, "rb") as file:
            dataset = dcmread(file, stop_before_pixels=True, specific_tags=list(STORED_KEYWORDS))
            record = {keyword: as_values(dataset.get(keyword)) for keyword in STORED_KEYWORDS}
            syntax = UID(dataset.file_meta.TransferSyntaxUID)
            missing = [keyword for keyword in REQUIRED_KEYWORDS if not record[keyword]]
            if missing:
                raise NotIndexable(f"no {', '.join(missing)}")
            if not syntax.is_deflated:  # pydicom inflated it all, and zlib finds a stream cut short
                check_whole(file, syntax)
    except NotIndexable:
        raise
    except NotWhole as exc:
        raise NotIndexable(str(exc)) from exc
    except InvalidDicomError as exc:
        raise NotIndexable("not a DICOM file") from exc
    except zlib.error as exc:
        raise NotIndexable(f"truncated or corrupt: the deflated data set does not inflate ({exc})") from exc
    except Exception as exc:  # unreadable or corrupt, whatever pydicom tripped on: say so and go on
        raise NotIndexable(f"unreadable ({type(exc).__name__}: {exc})") from exc
    return StoredInstance(path, str(syntax), record)


class InstanceIndex:
    """The SQLite index of an instance folder; safe to share between threads."""

    def __init__(self, database: str, folder: str) -> None:
        self.folder = os.path.abspath(folder)
        self._database = os.path.abspath(database)  # with its journal, never indexed if in the folder
        self._lock = threading.Lock()
        self._db = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
        columns = ", ".join(f'"{name}" TEXT' for name in STORED_KEYWORDS if name != PRIMARY_KEY)
        with self._lock:
            if self._db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                self._db.execute(f"DROP TABLE IF EXISTS {TABLE}")
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute(
                f'CREATE TABLE IF NOT EXISTS {TABLE} ("{PRIMARY_KEY}" TEXT PRIMARY KEY, '
                f"path TEXT NOT NULL, size INTEGER, mtime INTEGER, syntax TEXT, {columns})"
            )
            for keyword in UNIQUE_KEYS.values():
                self._db.execute(f'CREATE INDEX IF NOT EXISTS "by_{keyword}" ON {TABLE} ("{keyword}")')

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0]

    # ---- adding -------------------------------------------------------------
    def add_file(self, path: str) -> StoredInstance:
        """Index (or re-index) the file at `path`; NotIndexable if it cannot be."""
        path = os.path.abspath(path)
        status = os.stat(path)
        instance = read_instance(path)
        with self._lock:
            self._put(instance, status)
        return instance

    def check_sendable(self, instance: StoredInstance) -> None:
        """NotIndexable unless the file of the indexed `instance` still holds it whole: unchanged since
        it was indexed (the same size and modification time), or read again (`read_instance`) and
        found whole and the same instance, which is then indexed as it is now (its keys may have
        changed; it is not read again next time). A file cut short has another size: always read again."""
        status = _regular_file_status(instance.path)
        if (status.st_size, status.st_mtime_ns) == (instance.size, instance.mtime):
            return
        now = read_instance(instance.path)
        if now.sop_instance_uid != instance.sop_instance_uid:
            raise NotIndexable(f"changed since it was indexed: it now holds {now.sop_instance_uid}")
        with self._lock:
            self._put(now, status)

    def _put(self, instance: StoredInstance, status: os.stat_result) -> None:
        """Index `instance` as its file was (`status`) before it was read: a later change is seen."""
        record = instance.record
        values = [instance.path, status.st_size, status.st_mtime_ns, instance.transfer_syntax]
        values += [MULTIPLE.join(record[name]) for name in STORED_KEYWORDS]
        names = ", ".join(f'"{name}"' for name in _COLUMNS)
        marks = ", ".join("?" * len(_COLUMNS))
        self._db.execute(f"INSERT OR REPLACE INTO {TABLE} ({names}) VALUES ({marks})", values)

    def clear(self) -> list[str]:
        """Delete every indexed instance file and empty the index; the files that could not be deleted."""
        failed = []
        with self._lock:
            for (path,) in self._db.execute(f"SELECT path FROM {TABLE}").fetchall():
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass  # gone already: nothing to delete
                except OSError as exc:
                    failed.append(f"{path}: {exc.strerror or exc}")
            self._db.execute(f"DELETE FROM {TABLE}")
        return failed

    def scan(self) -> ScanSummary:
        """Index what the instance folder holds now, recursively, in one transaction."""
        summary = ScanSummary()
        with self._lock:
            known = {row[0]: (row[1], row[2]) for row in self._db.execute(f"SELECT path, size, mtime FROM {TABLE}")}
            kept = set()
            self._db.execute("BEGIN")
            try:
                for path in _files(self.folder, summary.skip_folder):
                    if not path.startswith(self._database) and self._scan_file(path, known.get(path), summary):
                        kept.add(path)
                gone = [(path,) for path in known if path not in kept]  # vanished, or refused now
                self._db.executemany(f"DELETE FROM {TABLE} WHERE path = ?", gone)
                summary.removed = len(gone)
            finally:
                self._db.execute("COMMIT")
        return summary

    def _scan_file(self, path: str, known: tuple[int, int] | None, summary: ScanSummary) -> bool:
        """Whether the file at `path` is indexed, as it was (`known`: its size and time) or anew."""
        try:
            status = _regular_file_status(path)
            if known == (status.st_size, status.st_mtime_ns):
                summary.unchanged += 1
                return True
            self._put(read_instance(path), status)
        except NotIndexable as exc:
            summary.skip(path, str(exc))
            return False
        summary.indexed += 1
        return True

    # ---- searching ----------------------------------------------------------
    def instances(self, query: Query) -> list[StoredInstance]:
        """The indexed instances that may match `query`: narrowed by its exact unique keys only."""
        clauses, parameters = [], []
        for keyword in UNIQUE_KEYS.values():
            condition = query.conditions.get(keyword)
            exact = condition.exact_values() if condition is not None else None
            if exact is not None:
                clauses.append(f'"{keyword}" IN ({", ".join("?" * len(exact))})')
                parameters.extend(exact)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        names = ", ".join(f'"{name}"' for name in ("path", "syntax", "size", "mtime", *STORED_KEYWORDS))
        with self._lock:
            rows = self._db.execute(f"SELECT {names} FROM {TABLE}{where} ORDER BY rowid", parameters).fetchall()
        return [StoredInstance(path, syntax, _record(keys), size, mtime) for path, syntax, size, mtime, *keys in rows]

    def find(self, query: Query) -> list[Record]:
        """The entities a C-FIND `query` matches."""
        return find_matches(query, (instance.record for instance in self.instances(query)))

    def retrieve(self, query: Query) -> list[StoredInstance]:
        """The instances a C-GET/C-MOVE `query` asks for: every one under each matching entity."""
        return [instance for instance in self.instances(query) if query.accepts(instance.record)]


def _record(row: tuple) -> Record:
    return {name: _split(value) for name, value in zip(STORED_KEYWORDS, row)}


def _split(value: str | None) -> Values:
    return tuple(value.split(MULTIPLE)) if value else ()


def _regular_file_status(path: str) -> os.stat_result:
    """The status of the file at `path`, after symbolic links; NotIndexable (never opened) unless
    it is a regular file: a FIFO would block the scan, a device never end."""
    try:
        status = os.stat(path)
    except OSError as exc:
        link = f"symbolic link to {os.readlink(path)}: " if os.path.islink(path) else ""
        raise NotIndexable(f"{link}{exc.strerror}") from exc
    if not stat.S_ISREG(status.st_mode):
        raise NotIndexable(f"not a regular file ({NOT_REGULAR.get(stat.S_IFMT(status.st_mode), 'of a special kind')})")
    return status


def _files(folder: str, unlistable: Callable[[OSError], None]):
    """Every file under `folder`, in a stable order, except the spool files of receptions;
    `unlistable` is told of each folder that cannot be listed, which os.walk passes over."""
    for directory, subdirectories, names in os.walk(folder, onerror=unlistable):
        subdirectories.sort()
        for name in sorted(names):
            if not name.endswith(PART_SUFFIX):
                yield os.path.join(directory, name)
