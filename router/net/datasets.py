"""Encoding and decoding a data set in a negotiated transfer syntax (raw DEFLATE included).

Identifiers (C-FIND, C-MOVE, C-GET) and N-service attribute lists travel in
the transfer syntax of their presentation context; these two functions are
the only place that turns them into bytes and back.
"""

from __future__ import annotations

import zlib
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

RAW_DEFLATE = -15  # zlib window bits for a raw DEFLATE stream (no zlib header)


def encode_dataset(dataset: Dataset, syntax: str) -> bytes:
    """`dataset` encoded in `syntax`, padded to even length."""
    syntax = UID(syntax)
    buffer = DicomBytesIO()
    buffer.is_little_endian = syntax.is_little_endian
    buffer.is_implicit_VR = syntax.is_implicit_VR
    write_dataset(buffer, dataset)
    data = buffer.getvalue()
    if syntax == DeflatedExplicitVRLittleEndian:
        compressor = zlib.compressobj(wbits=RAW_DEFLATE)
        data = compressor.compress(data) + compressor.flush()
    return data + b"\0" if len(data) % 2 else data


def decode_dataset(data: bytes, syntax: str) -> Dataset:
    """The data set `data` holds in `syntax` (ValueError-like pydicom errors if malformed)."""
    syntax = UID(syntax)
    if syntax == DeflatedExplicitVRLittleEndian:
        data = zlib.decompress(data, wbits=RAW_DEFLATE)
    return read_dataset(BytesIO(data), syntax.is_implicit_VR, syntax.is_little_endian)
