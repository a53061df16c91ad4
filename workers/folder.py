"""Delivery to a folder destination: `FOLDER/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`.

Only the header is read (the three UIDs, never the pixel data). The spool
file is hard-linked to a temporary name beside the target (copied when the
folder is on another file system), renamed over the target, and the file and
its directory are synced before the delivery counts. A second delivery of the
same instance replaces the first, so a retry after a crash leaves one file.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import uuid
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from router.config import Durability, FolderDestination
from router.spool import make_durable, sync_directory
from workers.attempt import DELIVERED, Outcome, Parcel, permanent, transient

UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
SAFE_COMPONENT = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")  # a UID, or close enough to be a file name
SUFFIX = ".dcm"
NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP})  # copy instead


class UnusableHeader(ValueError):
    """The instance's header cannot name its place in the folder."""


def deliver_to_folder(destination: FolderDestination, source: Path) -> Outcome:
    """Store the spool file `source` under the destination's folder."""
    try:
        study, series, instance = folder_components(source)
    except FileNotFoundError:
        return permanent(f"the spool file {source.name} is gone")
    except (OSError, InvalidDicomError, ValueError) as exc:  # UnusableHeader is a ValueError
        return permanent(f"cannot read the instance's header: {exc}")
    target = destination.folder / study / series / f"{instance}{SUFFIX}"
    try:
        place(source, target)
    except OSError as exc:
        return transient(f"cannot write {target}: {exc.strerror or exc}")
    return DELIVERED


def folder_components(source: Path) -> tuple[str, str, str]:
    """The study, series and instance UIDs of the Part 10 file `source`, each safe as a file name."""
    header = pydicom.dcmread(source, stop_before_pixels=True, specific_tags=list(UID_KEYWORDS))
    components = []
    for keyword in UID_KEYWORDS:
        value = str(header.get(keyword) or "").strip()
        if not SAFE_COMPONENT.match(value) or set(value) == {"."}:
            raise UnusableHeader(f"{keyword} {value!r} cannot name a file")
        components.append(value)
    study, series, instance = components
    return study, series, instance


def place(source: Path, target: Path) -> None:
    """Put a durable copy (or hard link) of `source` at `target`, atomically."""
    created = _make_directories(target.parent)
    temporary = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        try:
            os.link(source, temporary)
        except OSError as exc:
            if exc.errno not in NO_LINK:
                raise
            shutil.copyfile(source, temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    make_durable(target, Durability.FSYNC)
    for directory in created:
        sync_directory(directory.parent)


def _make_directories(directory: Path) -> list[Path]:
    """Make `directory` and its missing parents; return the ones made, deepest first."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
    return missing


class FolderSender:
    """Folder delivery in the shape of a `workers.delivery.DicomSender`: nothing to keep open."""

    def __init__(self, destination: FolderDestination) -> None:
        self.destination = destination

    def send(self, parcel: Parcel) -> Outcome:
        return deliver_to_folder(self.destination, parcel.path)

    def idle_deadline(self) -> float | None:
        return None

    def release_if_idle(self, now: float) -> None:
        """Nothing is held open."""

    def close(self) -> None:
        """Nothing is held open."""
