"""Delivery to a folder destination: `FOLDER/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`.

Only the header is read (the three UIDs, never the pixel data). The spool
file is hard-linked to a temporary name beside the target (copied when the
folder is on another file system), renamed over the target, and the file and
its directory are synced before the delivery counts. A copy with morphs is
read whole, morphed and written to the temporary name instead, in the
instance's own transfer syntax; its place follows its (possibly morphed)
UIDs. A second delivery of the same instance replaces the first, so a retry
after a crash leaves one file.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from router.config import Durability, FolderDestination
from router.net.values import uid_as_file_name
from router.spool import make_durable, sync_directory
from workers.attempt import DELIVERED, HoldsNothingOpen, Outcome, Parcel, morphed_copy, permanent, transient

UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
SUFFIX = ".dcm"
NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP})  # copy instead


class UnusableHeader(ValueError):
    """The instance's header cannot name its place in the folder."""


def deliver_to_folder(destination: FolderDestination, source: Path) -> Outcome:
    """Store the spool file `source` under the destination's folder."""
    try:
        header = pydicom.dcmread(source, stop_before_pixels=True, specific_tags=list(UID_KEYWORDS))
        target = target_of(destination, header)
    except FileNotFoundError:
        return permanent(f"the spool file {source.name} is gone")
    except (OSError, InvalidDicomError, ValueError) as exc:  # UnusableHeader is a ValueError
        return permanent(f"cannot read the instance's header: {exc}")
    return _stored(target, lambda: place(source, target))


def deliver_morphed(destination: FolderDestination, parcel: Parcel) -> Outcome:
    """Store the parcel's data set, its morphs applied, under the destination's folder."""
    dataset = morphed_copy(parcel)
    if isinstance(dataset, Outcome):
        return dataset
    try:
        target = target_of(destination, dataset)
    except UnusableHeader as exc:
        return permanent(f"cannot place the morphed copy: {exc}")
    try:
        return _stored(target, lambda: install(target, lambda temporary: _write_part10(dataset, temporary)))
    except Exception as exc:  # noqa: BLE001 - pydicom refuses a data set it cannot encode with many exception types
        return permanent(f"cannot write the morphed copy: {exc}")


def target_of(destination: FolderDestination, header: Dataset) -> Path:
    """Where an instance with this header goes; UnusableHeader if its UIDs cannot name files."""
    components = []
    for keyword in UID_KEYWORDS:
        try:
            components.append(uid_as_file_name(str(header.get(keyword) or "").strip()))
        except ValueError as exc:
            raise UnusableHeader(f"{keyword}: {exc}") from None
    study, series, instance = components
    return destination.folder / study / series / f"{instance}{SUFFIX}"


def place(source: Path, target: Path) -> None:
    """Put a durable copy (or hard link) of `source` at `target`, atomically."""
    install(target, lambda temporary: _link_or_copy(source, temporary))


def install(target: Path, write: Callable[[Path], None]) -> None:
    """Make `target` durably what `write(temporary)` writes beside it, atomically."""
    created = _make_directories(target.parent)
    temporary = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        write(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    make_durable(target, Durability.FSYNC)
    for directory in created:
        sync_directory(directory.parent)


def _stored(target: Path, store: Callable[[], None]) -> Outcome:
    """The outcome of `store()`, which puts a file at `target`."""
    try:
        store()
    except OSError as exc:
        return transient(f"cannot write {target}: {exc.strerror or exc}")
    return DELIVERED


def _link_or_copy(source: Path, temporary: Path) -> None:
    try:
        os.link(source, temporary)
    except OSError as exc:
        if exc.errno not in NO_LINK:
            raise
        shutil.copyfile(source, temporary)


def _write_part10(dataset: Dataset, path: Path) -> None:
    """Write a morphed copy as a Part 10 file in its own transfer syntax, its meta naming its (new) UIDs."""
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.save_as(path, enforce_file_format=True)


def _make_directories(directory: Path) -> list[Path]:
    """Make `directory` and its missing parents; return the ones made, deepest first."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
    return missing


class FolderSender(HoldsNothingOpen):
    """Folder delivery in the shape of a `workers.delivery.DicomSender`: nothing to keep open."""

    def __init__(self, destination: FolderDestination) -> None:
        self.destination = destination

    def send(self, parcel: Parcel) -> Outcome:
        if parcel.morphs:
            return deliver_morphed(self.destination, parcel)
        return deliver_to_folder(self.destination, parcel.path)
