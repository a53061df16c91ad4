"""What an SCU sends a data set from: an encoded buffer, or a Part 10 file streamed in blocks.

`source_for(dataset_or_path)` returns a `DatasetSource`: the SOP class and
instance, the transfer syntax the bytes are in, their length, and `blocks()`
yielding them. A file is read block by block into one reused buffer and never
held whole, unless it is smaller than `read_whole_below`: then it is read at
once, with one open (a sender of many small files saves a second open and a
walk of the file meta through small reads); a pydicom Dataset is encoded in the transfer syntax its file meta
names (Implicit VR Little Endian when it names none).

A file is checked to be whole before it makes a source (router.net.whole_file):
one cut short, whose data set announces more bytes than the file holds, raises
NotWhole (a ValueError) and is never sent. A data set that ends with its
pixel data, as most do, is checked by that element's header alone in the bytes
already read for the file meta (~1.5 us for a small instance); any other is
walked by its element headers, each value skipped by its length, and the file
is read again (os.pread, while it is open) only where headers lie past those
bytes: elements after the pixel data, encapsulated fragments. A file without a
usable file meta is checked as pydicom decoded it.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass
from typing import Any, Iterator

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ImplicitVRLittleEndian

from router.net.datasets import encode_dataset
from router.net.whole_file import DEFLATED_SYNTAXES, FILE_META_START, LONG_VRS, MAGIC, PREAMBLE_LENGTH
from router.net.whole_file import check_data_set, check_file

META_GROUP = 0x0002
# Read and sent a block at a time, so the peer works on one block while the next is read and sent:
# 64 KiB moved 0.5 MB instances 40% faster than 1 MiB blocks at the same CPU (measured to DCMTK's
# storescp and ours); 32 KiB to 256 KiB were all better than 1 MiB, 64 KiB the best.
BLOCK_SIZE = 1 << 16
META_HEAD = 4096  # bytes read at once to find the file meta (it rarely takes 400)
_TAG_VR = struct.Struct("<HH2s")
_SHORT_LENGTH = struct.Struct("<H")
_LONG_LENGTH = struct.Struct("<2xI")


@dataclass
class DatasetSource:
    """An encoded data set to send: from `data` when it is set, else from `path` at `offset`."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    length: int
    data: bytes | None = None
    path: str | None = None
    offset: int = 0

    def blocks(self, size: int = BLOCK_SIZE) -> Iterator[memoryview]:
        """The data set in order, as views of at most `size` bytes (valid until the next one)."""
        if self.data is not None:
            view = memoryview(self.data)
            for start in range(0, len(view), size):
                yield view[start : start + size]
            return
        assert self.path is not None
        buffer = _take_buffer(max(1, min(size, self.length)))
        try:
            with open(self.path, "rb", buffering=0) as file:
                file.seek(self.offset)
                while count := file.readinto(buffer):
                    yield buffer[:count]
        finally:
            _SPARE.buffer = buffer.obj


class _SpareBuffer(threading.local):
    """The read buffer a thread's last file left: the next file reuses it.

    Allocating (and zeroing) a fresh buffer per file cost a sender about a
    fifth of its CPU time for 0.5 MB instances. A buffer is taken out while a
    file is read, so two files read at once in one thread never share one.
    """

    buffer: bytearray | None = None


_SPARE = _SpareBuffer()


def _take_buffer(size: int) -> memoryview:
    spare, _SPARE.buffer = _SPARE.buffer, None
    if spare is None or len(spare) < size:
        spare = bytearray(size)
    return memoryview(spare)[:size]


def source_for(dataset_or_path: Dataset | DatasetSource | str | os.PathLike, read_whole_below: int = 0) -> DatasetSource:
    """The source for a pydicom Dataset or a DICOM file's path (a source is its own).

    A file smaller than `read_whole_below` bytes is read whole: its source
    holds the data set in `data` (and still names its `path`). NotWhole (a
    ValueError) if the file is cut short.
    """
    if isinstance(dataset_or_path, DatasetSource):
        return dataset_or_path
    if isinstance(dataset_or_path, Dataset):
        return _from_dataset(dataset_or_path)
    path = os.fspath(dataset_or_path)
    with open(path, "rb", buffering=0) as file:
        size = os.fstat(file.fileno()).st_size
        head = file.read(size if size < read_whole_below else META_HEAD)  # one read: the whole file, or its meta
        meta, head = _read_meta(file, head)
        usable = meta is not None and all(meta.get(element) for element in _META_UIDS)
        if usable:
            check_data_set(file.fileno(), size, meta[_DATA_OFFSET], meta[_TRANSFER_SYNTAX], head)
    if not usable:
        return _from_file_without_meta(path)
    offset = meta[_DATA_OFFSET]
    data = head[offset:] if size < read_whole_below else None
    return DatasetSource(
        sop_class_uid=meta[_SOP_CLASS],
        sop_instance_uid=meta[_SOP_INSTANCE],
        transfer_syntax=meta[_TRANSFER_SYNTAX],
        length=size - offset,
        data=data,
        path=path,
        offset=offset,
    )


_SOP_CLASS, _SOP_INSTANCE, _TRANSFER_SYNTAX = 0x0002, 0x0003, 0x0010  # elements of group 0002
_META_UIDS = (_SOP_CLASS, _SOP_INSTANCE, _TRANSFER_SYNTAX)
_DATA_OFFSET = -1  # the key under which `_read_meta` gives where the data set starts
_MAX_META_VALUE = 1 << 16
_MAX_META_READ = 1 << 20  # read at most this much of a file to find the end of its meta
_TRUNCATED = object()  # `_meta_in`: the head ends inside the file meta


def _read_meta(file, head: bytes) -> tuple[dict[int, Any] | None, bytes]:
    """The file meta of `file` (see `_meta_in`), whose first bytes `head` holds; while the meta runs
    past them, more of the file is read onto `head`, which is returned with the meta."""
    while (meta := _meta_in(head, whole=False)) is _TRUNCATED:
        if len(head) >= _MAX_META_READ:
            return None, head  # not believed: no file meta is that long
        more = file.read(max(len(head), META_HEAD))
        if not more:
            return _meta_in(head, whole=True), head
        head += more
    return meta, head


def _meta_in(head: bytes, whole: bool) -> Any:
    """The UIDs of the file meta at the start of `head` by element number, and the data set's
    offset; None without preamble or with a truncated element; _TRUNCATED when `head` ends inside
    the meta and is not the `whole` file.

    Only group 0002 is walked (always Explicit VR Little Endian), so a deflated
    data set is never inflated and nothing is decoded through pydicom: for a
    small instance that decoding cost more than sending it.
    """
    end = len(head)
    if end < FILE_META_START:
        return None if whole else _TRUNCATED
    if head[PREAMBLE_LENGTH:FILE_META_START] != MAGIC:
        return None
    meta: dict[int, Any] = {}
    position = FILE_META_START
    while True:
        if position + _TAG_VR.size > end:
            if not whole:
                return _TRUNCATED
            if position > end:
                return None  # the last element's value runs past the end of the file
            meta[_DATA_OFFSET] = position  # the file ends with its meta (or bytes too few for an element)
            return meta
        group, element, vr = _TAG_VR.unpack_from(head, position)
        if group != META_GROUP:
            meta[_DATA_OFFSET] = position
            return meta
        length_field = _LONG_LENGTH if vr in LONG_VRS else _SHORT_LENGTH
        value_start = position + _TAG_VR.size + length_field.size
        if value_start > end:
            return None if whole else _TRUNCATED
        (length,) = length_field.unpack_from(head, position + _TAG_VR.size)
        position = value_start + length
        if element in _META_UIDS and length <= _MAX_META_VALUE:  # one cut short is read again, whole, next turn
            meta[element] = head[value_start:position].decode("ascii", "replace").rstrip("\0 ")


def _from_file_without_meta(path: str) -> DatasetSource:
    """A file whose meta does not name its instance and syntax: decoded by pydicom, checked to be
    whole as pydicom read it (which goes on past a value cut short), and encoded again."""
    with open(path, "rb") as file:
        dataset = dcmread(file, force=True)
        _require_instance(dataset)
        if dataset.file_meta.get("TransferSyntaxUID") not in DEFLATED_SYNTAXES:
            check_file(file.fileno(), *dataset.original_encoding)
    return _from_dataset(dataset)


def _require_instance(dataset: Dataset) -> None:
    if "SOPClassUID" not in dataset or "SOPInstanceUID" not in dataset:
        raise ValueError("not a DICOM instance: it has no SOP Class UID and SOP Instance UID")


def _from_dataset(dataset: Dataset) -> DatasetSource:
    _require_instance(dataset)
    meta = getattr(dataset, "file_meta", None)
    syntax = UID(getattr(meta, "TransferSyntaxUID", None) or ImplicitVRLittleEndian)
    data = encode_dataset(dataset, syntax)
    return DatasetSource(
        sop_class_uid=str(dataset.SOPClassUID),
        sop_instance_uid=str(dataset.SOPInstanceUID),
        transfer_syntax=str(syntax),
        length=len(data),
        data=data,
    )
