"""What an SCU sends a data set from: an encoded buffer, or a Part 10 file streamed in blocks.

`source_for(dataset_or_path)` returns a `DatasetSource`: the SOP class and
instance, the transfer syntax the bytes are in, their length, and `blocks()`
yielding them. A file is read block by block into one reused buffer and never
held whole; a pydicom Dataset is encoded in the transfer syntax its file meta
names (Implicit VR Little Endian when it names none).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Iterator

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID, ImplicitVRLittleEndian

from router.net.datasets import encode_dataset

PREAMBLE_LENGTH = 128
MAGIC = b"DICM"
META_GROUP = 0x0002
BLOCK_SIZE = 1 << 20
_TAG_VR = struct.Struct("<HH2s")
_SHORT_LENGTH = struct.Struct("<H")
_LONG_LENGTH = struct.Struct("<2xI")
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})


@dataclass
class DatasetSource:
    """An encoded data set to send: from `data`, or from `path` at `offset`."""

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
        buffer = memoryview(bytearray(size))
        with open(self.path, "rb", buffering=0) as file:
            file.seek(self.offset)
            while True:
                count = file.readinto(buffer)
                if not count:
                    return
                yield buffer[:count]


def source_for(dataset_or_path: Dataset | DatasetSource | str | os.PathLike) -> DatasetSource:
    """The source for a pydicom Dataset or a DICOM file's path (a source is its own)."""
    if isinstance(dataset_or_path, DatasetSource):
        return dataset_or_path
    if isinstance(dataset_or_path, Dataset):
        return _from_dataset(dataset_or_path)
    path = os.fspath(dataset_or_path)
    with open(path, "rb") as file:
        offset = _data_offset(file)
    if offset is None:  # no preamble or file meta: decode it and encode it again
        return _from_dataset(dcmread(path, force=True))
    meta = read_file_meta_info(path)  # group 0002 only: a deflated data set is never inflated here
    return DatasetSource(
        sop_class_uid=str(meta.MediaStorageSOPClassUID),
        sop_instance_uid=str(meta.MediaStorageSOPInstanceUID),
        transfer_syntax=str(meta.TransferSyntaxUID),
        length=os.path.getsize(path) - offset,
        path=path,
        offset=offset,
    )


def known_file_source(path: str | os.PathLike, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str) -> DatasetSource:
    """The source for a Part 10 file whose SOP class, instance and syntax the caller already knows.

    Only the file meta's lengths are walked, its values are not decoded: for a
    small instance, decoding them costs more than sending it.
    """
    path = os.fspath(path)
    with open(path, "rb") as file:
        offset = _data_offset(file)
    if offset is None:
        return source_for(path)
    return DatasetSource(sop_class_uid, sop_instance_uid, transfer_syntax, os.path.getsize(path) - offset, path=path, offset=offset)


def _data_offset(file) -> int | None:
    """Where the data set starts after preamble and file meta, or None if the file has none."""
    if file.read(PREAMBLE_LENGTH + len(MAGIC))[PREAMBLE_LENGTH:] != MAGIC:
        return None
    while True:
        position = file.tell()
        header = file.read(_TAG_VR.size)
        if len(header) < _TAG_VR.size:
            return position
        group, _, vr = _TAG_VR.unpack(header)
        if group != META_GROUP:
            return position
        if vr in _LONG_VRS:
            (length,) = _LONG_LENGTH.unpack(file.read(_LONG_LENGTH.size))
        else:
            (length,) = _SHORT_LENGTH.unpack(file.read(_SHORT_LENGTH.size))
        file.seek(length, os.SEEK_CUR)


def _from_dataset(dataset: Dataset) -> DatasetSource:
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
