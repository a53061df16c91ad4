"""Where a received data set goes as its fragments arrive, and the Part 10 file it becomes.

`SpoolingSink` keeps a small data set in memory and, past `threshold` bytes,
moves it to a temporary Part 10 file (preamble and file meta written first),
so memory per association stays bounded whatever the instance size, and
saving the instance is a rename. `ReceivedDataset` is what the sink hands
back: the encoded bytes, or the file holding them after the file meta.

In memory, a data set is the list of its fragments as they arrived, views
into the received PDUs (which are never written again), not a copy: saving it
is one gathered write of the file header and those views, into the file
without a name a `ReadyFile` made beforehand when there is one (then linked
under its name): creating a file, the costly part on a disk, is done while
nobody waits.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import struct
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID

from router.net.gather import write_gathered
from router.net.whole_file import HEAD, check_data_set, check_parts

PREAMBLE = b"\0" * 128 + b"DICM"
DEFAULT_SPOOL_THRESHOLD = 8 << 20
FILE_META_VERSION = b"\x00\x01"
COPY_BUFFER = 1 << 20
WRITE_BUFFER = 1 << 20  # a spool file is written in 1 MiB pieces, not one system call per fragment
SPOOL_FILE_MODE = 0o666
SAVED_FILE_MODE = 0o666  # as open(path, "wb"): the umask decides
PART_SUFFIX = ".part"  # a file being written: complete once renamed without it
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
# A file without a name in a folder (Linux); 0 where the platform has no such files.
_ANONYMOUS_FILE = os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC if hasattr(os, "O_TMPFILE") else 0
_NO_ANONYMOUS_FILES = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})
META_GROUP = 0x0002


def build_file_meta(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax: str,
    implementation_class_uid: str,
    implementation_version_name: str | None,
    source_ae_title: str | None = None,
) -> FileMetaDataset:
    """The File Meta Information (group 0002) of a received instance."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = FILE_META_VERSION
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(implementation_class_uid)
    if implementation_version_name:
        meta.ImplementationVersionName = implementation_version_name
    if source_ae_title:
        meta.SourceApplicationEntityTitle = source_ae_title
    return meta


def file_header(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax: str,
    implementation_class_uid: str,
    implementation_version_name: str | None,
    source_ae_title: str | None = None,
) -> bytes:
    """Preamble, 'DICM' and the file meta group (the elements `build_file_meta` names), encoded
    directly: a receiver writes one per instance, and pydicom took half a millisecond for it. Only
    the instance UID differs between the instances of one association: the rest is made once."""
    before, after = _meta_around_instance(
        sop_class_uid, transfer_syntax, implementation_class_uid, implementation_version_name, source_ae_title
    )
    instance = _element(0x0003, b"UI", _uid(sop_instance_uid))
    group_length = len(before) + len(instance) + len(after)
    return b"".join((PREAMBLE, _element(0x0000, b"UL", _UL.pack(group_length)), before, instance, after))


@functools.lru_cache(maxsize=256)
def _meta_around_instance(
    sop_class_uid: str,
    transfer_syntax: str,
    implementation_class_uid: str,
    implementation_version_name: str | None,
    source_ae_title: str | None,
) -> tuple[bytes, bytes]:
    """The encoded file meta elements before the SOP instance UID, and those after it."""
    before = _element(0x0001, b"OB", FILE_META_VERSION) + _element(0x0002, b"UI", _uid(sop_class_uid))
    after = [_element(0x0010, b"UI", _uid(transfer_syntax)), _element(0x0012, b"UI", _uid(implementation_class_uid))]
    if implementation_version_name:
        after.append(_element(0x0013, b"SH", _text(implementation_version_name)))
    if source_ae_title:
        after.append(_element(0x0016, b"AE", _text(source_ae_title)))
    return before, b"".join(after)


_SHORT_HEADER = struct.Struct("<HH2sH")  # tag, VR, 16-bit length
_LONG_HEADER = struct.Struct("<HH2s2xI")  # tag, VR (OB), reserved, 32-bit length
_UL = struct.Struct("<I")


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    header = _LONG_HEADER if vr == b"OB" else _SHORT_HEADER
    return header.pack(META_GROUP, element, vr, len(value)) + value


def _uid(value: str) -> bytes:
    encoded = value.encode("ascii")
    return encoded + b"\0" if len(encoded) % 2 else encoded


def _text(value: str) -> bytes:
    encoded = value.strip().encode("ascii", "replace")
    return encoded + b" " if len(encoded) % 2 else encoded


def _write_into_place(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """`write(temporary)` makes the file beside `path` under a name of its own (a spool file's
    suffix, so folder scans pass it by), which then replaces `path` in one rename; on failure the
    temporary file is removed and the error raised."""
    temporary = f"{os.fspath(path)}.{uuid.uuid4().hex[:12]}{PART_SUFFIX}"
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class ReadyFile:
    """A file without a name, made ahead for the next instance received in memory to be saved into.

    On a disk, creating a file is most of what saving a small instance costs (on this machine's
    ext4, ~130 us of kernel CPU, against ~12 us to write and name a file that exists), and it
    would be paid while the peer waits for the response. So once the association has answered,
    it makes the next file (`refill`) while the peer prepares its next request: an anonymous one
    (O_TMPFILE) in the folder the last instance was saved into, which `ReceivedDataset.save_as`
    then writes and links under its name there (linkat through /proc/self/fd). Made in that
    folder, the file gets what one created there gets (group of a setgid folder, default ACL,
    security label); it appears whole, under its name only; nothing is left if the process dies;
    and making and naming such files contends less than creating named ones (four processes saving
    into one folder: half the kernel CPU). A save into another folder drops the file made ahead
    (the next one is made there). Linux only (O_TMPFILE, /proc): without them, and after a link
    fails for any reason but a name already taken (a full disk, a folder removed, no /proc), files
    are saved the usual way. The association's thread alone uses it.
    """

    def __init__(self) -> None:
        self._enabled = bool(_ANONYMOUS_FILE)
        self._folder_name: str | None = None  # the folder of the last save, as its path named it
        self._folder: int | None = None  # a descriptor of that folder: files are made and linked there
        self._ready: int | None = None  # the descriptor of the file made ahead
        self._wanted = False  # one was taken (or asked for) since the last refill

    def take(self, path: str | os.PathLike) -> int | None:
        """The file made ahead, if it was made in the folder of `path`: now the caller's to write,
        `link` and close. None otherwise (one made in another folder is dropped)."""
        folder = os.path.dirname(os.fspath(path)) or os.curdir
        ready, self._ready = self._ready, None
        self._wanted = self._enabled
        if folder == self._folder_name:
            return ready
        _close_quietly(ready, self._folder)
        self._folder_name, self._folder = folder, None
        return None

    def refill(self) -> None:
        """Make the next file if the last one was taken (or asked for). A failure leaves none: on a
        full disk the next instance is saved the usual way, which reports it; where the file
        system cannot make anonymous files, no more are tried."""
        if not self._wanted or self._ready is not None or self._folder_name is None:
            return
        self._wanted = False
        try:
            if self._folder is None:
                self._folder = os.open(self._folder_name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._ready = os.open(os.curdir, _ANONYMOUS_FILE, SAVED_FILE_MODE, dir_fd=self._folder)
        except OSError as exc:
            if exc.errno in _NO_ANONYMOUS_FILES:
                self.stop()

    def link(self, fd: int, path: str | os.PathLike) -> bool:
        """Give the file `fd` (which `take(path)` gave) the name `path`; False if it cannot have it:
        a name already taken, or (then no more files are made) any other failure."""
        assert self._folder is not None
        try:
            # Given a folder descriptor, os.link calls linkat with AT_SYMLINK_FOLLOW, which links
            # the file that /proc/self/fd/N stands for, here into the folder it was made in.
            os.link(f"/proc/self/fd/{fd}", os.path.basename(os.fspath(path)), dst_dir_fd=self._folder)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                self.stop()
            return False
        return True

    def stop(self) -> None:
        """Make no more files; the one made ahead is dropped (the association ends)."""
        self._enabled = self._wanted = False
        _close_quietly(self._ready, self._folder)
        self._ready = self._folder = self._folder_name = None


def _close_quietly(*descriptors: int | None) -> None:
    """Close the descriptors given (None: none); a failure to close one drops nothing but it."""
    for descriptor in descriptors:
        if descriptor is not None:
            with contextlib.suppress(OSError):
                os.close(descriptor)


@dataclass
class ReceivedDataset:
    """A received data set: in memory (`parts`), or in the file at `path` after `data_offset` bytes."""

    file_header: bytes
    parts: list[memoryview] | None = None
    path: str | None = None
    data_offset: int = 0
    length: int = 0
    spooled: bool = False  # `path` is our spool file, removed by `discard`
    error: str | None = None  # why the data set could not be kept (e.g. the disk is full)
    ready: ReadyFile | None = None  # makes the file a data set in memory is saved into, if it can

    def check_whole(self, syntax: str) -> None:
        """NotWhole unless the data set, in transfer syntax `syntax`, holds every byte its elements
        announce (a peer may send a file cut short as it is)."""
        if self.parts is not None:
            check_parts(self.parts, syntax)
            return
        assert self.path is not None
        with open(self.path, "rb") as file:
            handle = file.fileno()
            size = os.fstat(handle).st_size
            check_data_set(handle, size, self.data_offset, syntax, os.pread(handle, self.data_offset + HEAD, 0))

    def encoded(self, include_meta: bool = True) -> bytes:
        """The data set bytes as received (with preamble and file meta if `include_meta`)."""
        if self.parts is not None:
            return b"".join([self.file_header, *self.parts] if include_meta else self.parts)
        assert self.path is not None
        with open(self.path, "rb") as file:
            if not include_meta:
                file.seek(self.data_offset)
            return file.read()

    def save_as(self, path: str | os.PathLike) -> None:
        """Write the Part 10 file to `path`: a rename of the spool file the first time (a copy
        across file systems), a copy of the file saved before on later calls. A failure (a full
        disk) leaves no part of the new file, and a file already at `path` stays as it was until
        the new one is whole: that one is written beside it and renamed over it. A new file (the
        common case: a router's spool names are new) is written into the file `ready` made ahead
        and given its name, or else under its own name."""
        if self.path is not None and not self.spooled:
            source = self.path  # saved before: that file stays where it is
            _write_into_place(path, lambda temporary: shutil.copyfile(source, temporary))
            return
        if self.path is not None:
            try:
                os.replace(self.path, path)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                source = self.path  # another file system: no rename, so copy and remove
                _write_into_place(path, lambda temporary: shutil.copyfile(source, temporary))
                os.unlink(source)
            self.path, self.spooled = str(path), False
            return
        ready = self.ready.take(path) if self.ready is not None else None
        if ready is not None and self._write_ready(ready, path):
            return
        try:
            self._write_parts(path)
        except FileExistsError:
            _write_into_place(path, self._write_parts)

    def _write_ready(self, fd: int, path: str | os.PathLike) -> bool:
        """Write the file into `fd`, the file its `ready` made ahead, and give it the name `path`;
        False if it cannot have that name (the caller saves it the usual way). A failure leaves
        nothing: the file has no name until it is whole, and loses it again if closing it fails."""
        assert self.ready is not None
        try:
            self._write_into(fd)
            linked = self.ready.link(fd, path)
        except BaseException:
            _close_quietly(fd)
            raise
        try:
            os.close(fd)
        except OSError:
            if linked:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
        return linked

    def _write_parts(self, path: str | os.PathLike) -> None:
        """Write the file header and the parts held in memory to the new file `path` (FileExistsError
        if there is one); removed again if the write fails."""
        handle = os.open(path, _NEW_FILE, SAVED_FILE_MODE)
        try:
            try:
                self._write_into(handle)
            finally:
                os.close(handle)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise

    def _write_into(self, handle: int) -> None:
        """Write the file header and the parts held in memory to the open file `handle`."""
        write_gathered(functools.partial(os.writev, handle), [self.file_header, *(self.parts or ())])

    def discard(self) -> None:
        """Remove our spool file, if the data set is still in one (it is then gone)."""
        if self.spooled and self.path is not None and os.path.exists(self.path):
            os.unlink(self.path)
            self.path = None

    def copy_to(self, target) -> None:
        """Write the whole Part 10 file to the open binary file `target` with bounded memory."""
        if self.parts is not None:
            target.write(self.file_header)
            for part in self.parts:
                target.write(part)
            return
        assert self.path is not None
        with open(self.path, "rb") as file:
            shutil.copyfileobj(file, target, COPY_BUFFER)


class SpoolingSink:
    """Collects one data set: in memory up to `threshold` bytes, then in a temporary file.

    Once in the file, fragments are still held (as views) until a
    `WRITE_BUFFER`'s worth is there, then written with one `writev`.
    """

    def __init__(self, file_header: bytes, directory: str | None = None, threshold: int = DEFAULT_SPOOL_THRESHOLD,
                 ready: ReadyFile | None = None):
        self.file_header = file_header
        self.directory = directory
        self.threshold = threshold
        self.ready = ready  # handed to a data set kept in memory, to be saved into
        self._parts: list[bytes | memoryview] = []  # fragments held, as received, not yet written
        self._held = 0  # their total length
        self._fd: int | None = None  # the spool file, once the data set outgrew `threshold`
        self._length = 0
        self._error: str | None = None

    def write(self, fragment: memoryview) -> None:
        """Take the next fragment: a view of bytes that are never written again (it is kept, not copied)."""
        self._length += len(fragment)
        if self._error is not None:
            return  # the rest of a data set we cannot keep is read and dropped
        self._parts.append(fragment)
        self._held += len(fragment)
        try:
            if self._fd is None and self._held > self.threshold:
                self._spill()
            elif self._fd is not None and self._held >= WRITE_BUFFER:
                self._write_held()
        except OSError as exc:
            self._fail(exc)

    def _spill(self) -> None:
        directory = self.directory or tempfile.gettempdir()
        path = os.path.join(directory, f"received-{uuid.uuid4().hex}.dcm{PART_SUFFIX}")
        # os.open with 0o666 lets the umask decide the mode, as for any file the user writes.
        self._fd = os.open(path, _NEW_FILE, SPOOL_FILE_MODE)
        self._path = path
        self._parts.insert(0, self.file_header)
        self._write_held()

    def _write_held(self) -> None:
        assert self._fd is not None
        write_gathered(functools.partial(os.writev, self._fd), self._parts)
        self._parts, self._held = [], 0

    def finish(self) -> ReceivedDataset:
        if self._error is not None:
            return ReceivedDataset(self.file_header, length=self._length, error=self._error)
        if self._fd is None:
            return ReceivedDataset(self.file_header, parts=self._parts, length=self._length, ready=self.ready)  # no copy
        try:
            self._write_held()
        except OSError as exc:
            self._fail(exc)
            return ReceivedDataset(self.file_header, length=self._length, error=self._error)
        os.close(self._fd)
        self._fd = None
        return ReceivedDataset(
            self.file_header, path=self._path, data_offset=len(self.file_header), length=self._length, spooled=True
        )

    def _fail(self, exc: OSError) -> None:
        """Writing the spool file failed (e.g. the disk is full): say why, keep nothing."""
        self._error = f"cannot spool the data set: {exc.strerror or exc}"
        self.abandon()

    def abandon(self) -> None:
        """Drop what was collected (the association ended mid data set, or writing it failed)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)
            os.unlink(self._path)
        self._parts, self._held = [], 0
