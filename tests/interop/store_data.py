"""Instances for the storage tests, written as Part 10 files, and ways to compare stored files.

Three generated sizes: a small CT (~10 KB), a typical MR (~0.5 MB) and a
multi-frame secondary capture past 50 MB, each written in Implicit VR Little
Endian, Explicit VR Little Endian and Deflated Explicit VR Little Endian; plus
a JPEG Baseline instance shipped with pydicom, passed through untouched. Pixel
values are seeded pseudo-random 12-bit samples, so no two blocks of a file
look alike (a block sent twice or out of order changes the hash) and deflate
still has something to squeeze.

`write_streamed_instance` writes an instance of any size (a gigabyte) with
bounded memory, plain or deflated as it is written. `data_part` and `data_digest` find and hash what follows a
file's meta group: the bytes a bit-preserving receiver must keep.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
MULTIFRAME_BYTE_SC_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7.2")
MULTIFRAME_WORD_SC_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7.3")

#: The uncompressed syntaxes every generated instance is written in, by a short name for test ids.
SYNTAXES: dict[str, UID] = {
    "implicit": ImplicitVRLittleEndian,
    "explicit": ExplicitVRLittleEndian,
    "deflated": DeflatedExplicitVRLittleEndian,
}
SMALL, TYPICAL, LARGE = "small", "typical", "large"
KINDS = (SMALL, TYPICAL, LARGE)
JPEG = "jpeg"
JPEG_TEST_FILE = "SC_rgb_jpeg_dcmtk.dcm"  # JPEG Baseline, written by DCMTK

SMALL_SIDE = 64  # 64 x 64 x 2 bytes: 8 KiB of pixels, ~10 KB on disk
TYPICAL_SIDE = 512  # 512 x 512 x 2 bytes: 0.5 MiB
LARGE_SIDE = 512
LARGE_FRAMES = 104  # 104 x 0.5 MiB = 52 MiB (54.5 MB)
LARGE_MINIMUM = 50_000_000

PREAMBLE = b"\0" * 128 + b"DICM"
META_GROUP = 0x0002
_GROUP_LENGTH_ELEMENT = struct.Struct("<HH2sHI")  # (0002,0000) UL: group, element, VR, length, value
_TWELVE_BITS = bytes(value & 0x0F for value in range(256))  # keeps the high byte of a sample < 16
HASH_BLOCK = 4 << 20
STREAM_CHUNK = 4 << 20


@dataclass(frozen=True)
class Instance:
    """One Part 10 file to send, and what identifies it."""

    path: Path
    kind: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str

    @property
    def size(self) -> int:
        return self.path.stat().st_size


# ---- generated data sets ---------------------------------------------------------------
def twelve_bit_samples(count: int, seed: int) -> bytes:
    """`count` little-endian 16-bit samples in 0..4095, pseudo-random from `seed`."""
    data = bytearray(random.Random(seed).randbytes(2 * count))
    data[1::2] = data[1::2].translate(_TWELVE_BITS)
    return bytes(data)


def _base_dataset(sop_class_uid: str, modality: str, description: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = generate_uid()
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC0001"
    ds.Modality = modality
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = description
    ds.PatientName = "Store^Test"
    ds.PatientID = "STORE-001"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    return ds


def _grayscale_pixels(ds: Dataset, rows: int, columns: int, frames: int, seed: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = twelve_bit_samples(rows * columns * frames, seed)
    ds["PixelData"].VR = "OW"


def small_ct(seed: int = 1) -> Dataset:
    """A CT image of about 10 KB."""
    ds = _base_dataset(CT_IMAGE_STORAGE, "CT", "small CT")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SliceThickness = "1.25"
    ds.KVP = "120"
    ds.ImagePositionPatient = ["-160", "-160", "12.5"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = ["0.625", "0.625"]
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    _grayscale_pixels(ds, SMALL_SIDE, SMALL_SIDE, 1, seed)
    return ds


def typical_mr(seed: int = 2) -> Dataset:
    """An MR image of about 0.5 MB."""
    ds = _base_dataset(MR_IMAGE_STORAGE, "MR", "typical MR")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "NONE"
    ds.MagneticFieldStrength = "1.5"
    ds.RepetitionTime = "500"
    ds.EchoTime = "15"
    ds.ImagePositionPatient = ["-125", "-125", "40"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = ["0.48828125", "0.48828125"]
    _grayscale_pixels(ds, TYPICAL_SIDE, TYPICAL_SIDE, 1, seed)
    return ds


def large_multiframe(seed: int = 3, frames: int = LARGE_FRAMES) -> Dataset:
    """A multi-frame grayscale word secondary capture past 50 MB."""
    ds = _base_dataset(MULTIFRAME_WORD_SC_STORAGE, "OT", "large multiframe")
    ds.ConversionType = "WSD"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.FrameTime = "40"
    _grayscale_pixels(ds, LARGE_SIDE, LARGE_SIDE, frames, seed)
    return ds


GENERATORS = {SMALL: small_ct, TYPICAL: typical_mr, LARGE: large_multiframe}


def file_meta_for(ds: Dataset, syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(syntax)
    return meta


def write_instance(ds: Dataset, syntax: str, path: Path, kind: str) -> Instance:
    """Write `ds` as a Part 10 file in `syntax` (pydicom adds the rest of the file meta)."""
    ds.file_meta = file_meta_for(ds, syntax)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return Instance(path, kind, str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(syntax))


PRIVATE_CLASS = "1.2.840.113619.4.030"  # a vendor's storage class, with the leading zero some send
NEWER_CLASS = "1.2.840.10008.5.1.4.1.1.999"  # under the standard's storage arc, not in our table


def unlisted_class_files(directory: Path) -> list[Instance]:
    """Two small CTs relabelled with SOP classes no table names: PRIVATE_CLASS and NEWER_CLASS."""
    directory.mkdir()
    files = []
    for seed, sop_class in enumerate((PRIVATE_CLASS, NEWER_CLASS), 1):
        dataset = small_ct(seed)
        dataset.SOPClassUID = sop_class
        files.append(write_instance(dataset, ExplicitVRLittleEndian, directory / f"unlisted-{seed}.dcm", SMALL))
    return files


def jpeg_instance(directory: Path) -> Instance:
    """pydicom's JPEG Baseline test file, copied as is (its bytes are never decoded)."""
    source = get_testdata_file(JPEG_TEST_FILE)
    if source is None:
        raise FileNotFoundError(f"pydicom's test file {JPEG_TEST_FILE} is not installed")
    path = directory / JPEG_TEST_FILE
    shutil.copyfile(source, path)
    meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
    return Instance(
        path, JPEG, str(meta.MediaStorageSOPClassUID), str(meta.MediaStorageSOPInstanceUID), str(meta.TransferSyntaxUID)
    )


def build_instances(directory: Path, syntax_name: str, kinds: tuple[str, ...] = KINDS) -> list[Instance]:
    """Fresh instances (new UIDs) of `kinds` in one syntax ("jpeg": the pass-through file)."""
    directory.mkdir(parents=True, exist_ok=True)
    if syntax_name == JPEG:
        return [jpeg_instance(directory)]
    syntax = SYNTAXES[syntax_name]
    return [
        write_instance(GENERATORS[kind](seed=index + 1), syntax, directory / f"{kind}-{syntax_name}.dcm", kind)
        for index, kind in enumerate(kinds)
    ]


class InstanceLibrary:
    """Instances built once per session, per syntax name, under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._built: dict[tuple[str, tuple[str, ...]], list[Instance]] = {}

    def get(self, syntax_name: str, kinds: tuple[str, ...] = KINDS) -> list[Instance]:
        key = (syntax_name, kinds)
        if key not in self._built:
            folder = self.root / f"{syntax_name}-{'-'.join(kinds)}"
            self._built[key] = build_instances(folder, syntax_name, kinds)
        return self._built[key]


_LIBRARIES: dict[Path, InstanceLibrary] = {}


def library(tmp_path_factory) -> InstanceLibrary:
    """The session's instance library (shared by every test module that asks)."""
    base = tmp_path_factory.getbasetemp()
    if base not in _LIBRARIES:
        _LIBRARIES[base] = InstanceLibrary(tmp_path_factory.mktemp("store-data"))
    return _LIBRARIES[base]


ALL_SYNTAX_NAMES = (*SYNTAXES, JPEG)


# ---- reading stored files back ----------------------------------------------------------
def data_offset(path: Path) -> int:
    """Where the data set starts in a Part 10 file: after preamble, 'DICM' and group 0002."""
    with open(path, "rb") as file:
        return _skip_file_meta(file, str(path))


def split_encoded(encoded: bytes) -> tuple[bytes, bytes]:
    """(preamble, 'DICM' and file meta; the data set) of a Part 10 file held in memory."""
    offset = _skip_file_meta(BytesIO(encoded), "the encoded instance")
    return encoded[:offset], encoded[offset:]


def _skip_file_meta(file, name: str) -> int:
    """The data set's offset from the File Meta Information Group Length (0002,0000).

    Deliberately not the engine's own walk over group 0002 (router.net.sources): the
    tests check the engine against an independent reading of the same file.
    """
    if file.read(len(PREAMBLE))[128:] != b"DICM":
        raise ValueError(f"{name} has no DICOM preamble")
    group, element, vr, _, length = _GROUP_LENGTH_ELEMENT.unpack(file.read(_GROUP_LENGTH_ELEMENT.size))
    if (group, element, vr) != (META_GROUP, 0x0000, b"UL"):
        raise ValueError(f"{name} does not start its file meta with the group length")
    return len(PREAMBLE) + _GROUP_LENGTH_ELEMENT.size + length


def data_part(path: Path) -> bytes:
    """The bytes after a (small) file's meta group."""
    with open(path, "rb") as file:
        file.seek(data_offset(path))
        return file.read()


def iter_data(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as file:
        file.seek(data_offset(path))
        while block := file.read(HASH_BLOCK):
            yield block


def data_digest(path: Path) -> tuple[int, str]:
    """(length, SHA-256) of the bytes after the file meta, read in blocks."""
    digest, length = hashlib.sha256(), 0
    for block in iter_data(path):
        digest.update(block)
        length += len(block)
    return length, digest.hexdigest()


def read_meta(path: Path) -> FileMetaDataset:
    return pydicom.dcmread(path, stop_before_pixels=True).file_meta


# ---- an instance of any size, written with bounded memory ---------------------------------
@dataclass(frozen=True)
class StreamedInstance:
    instance: Instance
    data_length: int
    data_sha256: str


def write_streamed_instance(
    path: Path, pixel_bytes: int, syntax: str = ExplicitVRLittleEndian, chunk: int = STREAM_CHUNK
) -> StreamedInstance:
    """A Part 10 file whose last element is `pixel_bytes` of OB pixel data, in `syntax`.

    The pixel data is written in `chunk`-sized pieces, each copy of one block
    stamped with its index so no two chunks are equal: a random block for
    Explicit VR Little Endian, a block of zeros (which deflates to almost
    nothing) for Deflated Explicit VR Little Endian, compressed as it is
    written. Returns the length and SHA-256 of the data set as stored in the
    file (after compression).
    """
    if pixel_bytes % 2 or pixel_bytes >= 0xFFFFFFFF:
        raise ValueError(f"pixel data length {pixel_bytes} must be even and below 2**32 - 1")
    syntax = UID(syntax)
    if syntax not in (ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
        raise ValueError(f"streamed instances are explicit VR little endian, deflated or not, not {syntax}")
    side = 1024
    frames = pixel_bytes // (side * side) or 1
    ds = _base_dataset(MULTIFRAME_BYTE_SC_STORAGE, "OT", "streamed multiframe")
    ds.ConversionType = "WSD"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = frames
    ds.Rows = side
    ds.Columns = side
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.FrameIncrementPointer = 0x00181063
    ds.FrameTime = "40"

    header = BytesIO()
    header.write(PREAMBLE)
    meta = file_meta_for(ds, syntax)
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.ImplementationClassUID = UID("2.25.314159265358979323846264338327950288")
    write_file_meta_info(header, meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    pixel_header = struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OB", pixel_bytes)

    deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS) if syntax == DeflatedExplicitVRLittleEndian else None
    digest, stored = hashlib.sha256(), 0
    base = bytearray(chunk) if deflate else bytearray(random.Random(pixel_bytes).randbytes(chunk))
    with open(path, "wb") as file:
        file.write(header.getvalue())

        def emit(data) -> None:
            nonlocal stored
            encoded = deflate.compress(data) if deflate else data
            file.write(encoded)
            digest.update(encoded)
            stored += len(encoded)

        emit(body.getvalue())
        emit(pixel_header)
        written, index = 0, 0
        while written < pixel_bytes:
            piece = min(chunk, pixel_bytes - written)
            base[:8] = index.to_bytes(8, "little")
            emit(memoryview(base)[:piece])
            written += piece
            index += 1
        if deflate:
            tail = deflate.flush()
            tail += b"\0" * ((stored + len(tail)) % 2)  # the deflated stream is padded to even length
            file.write(tail)
            digest.update(tail)
            stored += len(tail)
    instance = Instance(path, "streamed", str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(syntax))
    return StreamedInstance(instance, stored, digest.hexdigest())
