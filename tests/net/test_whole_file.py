"""Whether a file to send is whole (router.net.whole_file), as `source_for` checks it.

Real files cut at chosen points: a cut inside a value or a header is named
(`NotWhole`, a ValueError, says which element needs how many bytes), a file
cut where an element ends is a whole, shorter data set. The fast loop over
the bytes already read and the element-by-element steps agree at every cut of
a file with sequences, items of undefined length and an element after its
pixel data; a data set ending with its pixel data is checked in the first
read alone, however large the file.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from router.net import whole_file
from router.net.datasets import encode_dataset
from router.net.sources import source_for
from router.net.whole_file import NotWhole, check_data_set
from tests.interop import store_data

PIXEL_BYTES = 64  # 4 x 8 samples of 16 bits
PADDING = 0xFFFCFFFC  # Data Set Trailing Padding: an element after the pixel data
PADDING_BYTES = 6
BIG_ENDIAN_FILE = "MR_small_bigendian.dcm"
NEWER_SYNTAX = "1.2.840.10008.1.2.8.1"  # Deflated Image Frame Compression: newer than pydicom 3.0's dictionary
SYNTAX_NAMES = {"explicit": ExplicitVRLittleEndian, "implicit": ImplicitVRLittleEndian, "big-endian": ExplicitVRBigEndian}


def small_dataset(with_padding: bool = False) -> Dataset:
    """A CT of 4 x 8 pixels with a sequence and an item of undefined length before its pixel data
    (and Data Set Trailing Padding after it, `with_padding`): short files, cut at every byte."""
    ds = store_data.small_ct(seed=1)
    # Fixed UIDs, so that the file's length is too: with generated ones (their length varies), a
    # data set of 818 bytes cut in 100-byte fragments ended in a fragment holding exactly its last
    # element, and cut there it was whole (about one run in fifty).
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1001", "1.2.826.0.1.3680043.8.498.1002"
    ds.Rows, ds.Columns = 4, 8
    ds.PixelData = store_data.twelve_bit_samples(PIXEL_BYTES // 2, seed=1)
    item = Dataset()
    item.CodeValue, item.CodeMeaning = "T-D1100", "Head"
    item.is_undefined_length_sequence_item = True
    ds.AnatomicRegionSequence = Sequence([item])
    ds["AnatomicRegionSequence"].is_undefined_length = True
    if with_padding:
        ds.add_new(PADDING, "OB", b"\0" * PADDING_BYTES)
    return ds


def write(path: Path, ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> bytes:
    store_data.write_instance(ds, syntax, path, store_data.SMALL)
    return path.read_bytes()


def cut(path: Path, data: bytes, keep: int) -> Path:
    path.write_bytes(data[:keep])
    return path


def pixel_value_end(data: bytes, syntax: str) -> int:
    """Where the pixel data's value ends: before the padding that follows it."""
    return len(data) - (PADDING_BYTES + (8 if syntax == ImplicitVRLittleEndian else 12))


# ---- what a cut file is refused with ----------------------------------------------------------------
@pytest.mark.parametrize("syntax_name", SYNTAX_NAMES)
def test_a_file_cut_inside_its_pixel_data_is_refused_naming_what_is_missing(tmp_path, syntax_name):
    path = tmp_path / "ct.dcm"
    data = write(path, small_dataset(), SYNTAX_NAMES[syntax_name])
    assert source_for(path).length == len(data) - store_data.data_offset(path)

    with pytest.raises(NotWhole, match=f"^truncated: Pixel Data needs {PIXEL_BYTES} bytes, {PIXEL_BYTES - 10} remain$"):
        source_for(cut(path, data, len(data) - 10))


@pytest.mark.parametrize("syntax_name", SYNTAX_NAMES)
def test_a_file_cut_where_its_pixel_data_ends_is_whole_and_sent_as_it_is(tmp_path, syntax_name):
    """The element after the pixel data is gone, the data set that is left is whole."""
    syntax = SYNTAX_NAMES[syntax_name]
    path = tmp_path / "ct.dcm"
    data = write(path, small_dataset(with_padding=True), syntax)
    end = pixel_value_end(data, syntax)

    source = source_for(cut(path, data, end))

    assert source.length == end - store_data.data_offset(path)
    with pytest.raises(NotWhole, match="^truncated: Data Set Trailing Padding needs 6 bytes, 2 remain$"):
        source_for(cut(path, data, len(data) - 4))


@pytest.mark.parametrize(
    "keep, reason",
    [
        (lambda data: data.index(b"Head") + 2, "truncated: Code Meaning needs 4 bytes, 2 remain"),  # in an item
        (lambda data: data.index(b"Head") + 4, "truncated: the header of an element needs 8 bytes, 0 remain"),  # no item end
        (lambda data: data.rindex(b"\xe0\x7f\x10\x00") + 10, "truncated: the header of an element needs 4 bytes, 2 remain"),
    ],
    ids=["in-an-item", "without-its-delimiter", "in-the-pixel-data-header"],
)
def test_a_file_cut_before_its_pixel_data_is_refused_naming_what_is_missing(tmp_path, keep, reason):
    path = tmp_path / "ct.dcm"
    data = write(path, small_dataset())
    with pytest.raises(NotWhole, match=f"^{reason}$"):
        source_for(cut(path, data, keep(data)))


def test_encapsulated_pixel_data_is_walked_fragment_by_fragment(tmp_path):
    instance = store_data.jpeg_instance(tmp_path)
    data = instance.path.read_bytes()
    assert source_for(instance.path).length == len(data) - store_data.data_offset(instance.path)

    with pytest.raises(NotWhole, match="^truncated: an item of Pixel Data needs"):
        source_for(cut(instance.path, data, len(data) - 100))
    with pytest.raises(NotWhole, match="^truncated: the header of an item of Pixel Data needs 8 bytes, 0 remain$"):
        source_for(cut(instance.path, data, len(data) - 8))  # the sequence delimiter is gone


def test_pydicoms_big_endian_file_is_whole_and_its_cut_copy_is_not(tmp_path):
    path = tmp_path / BIG_ENDIAN_FILE
    data = Path(get_testdata_file(BIG_ENDIAN_FILE)).read_bytes()
    assert source_for(cut(path, data, len(data))).transfer_syntax == ExplicitVRBigEndian
    with pytest.raises(NotWhole, match="^truncated: Pixel Data needs 8192 bytes, 8191 remain$"):
        source_for(cut(path, data, len(data) - 1))


def test_a_file_without_file_meta_is_checked_as_pydicom_read_it(tmp_path):
    """pydicom reads on past a value cut short; the check does not."""
    ds = small_dataset()
    path = tmp_path / "raw.dcm"
    data = encode_dataset(ds, ImplicitVRLittleEndian)
    assert source_for(cut(path, data, len(data))).data == data
    with pytest.raises(NotWhole, match=f"^truncated: Pixel Data needs {PIXEL_BYTES} bytes, 2 remain$"):
        source_for(cut(path, data, len(data) - PIXEL_BYTES + 2))


def test_a_deflated_data_set_is_left_to_its_inflater(tmp_path):
    path = tmp_path / "deflated.dcm"
    data = write(path, small_dataset(), store_data.SYNTAXES["deflated"])
    assert source_for(cut(path, data, len(data) - 10)).length == len(data) - 10 - store_data.data_offset(path)


def test_a_syntax_pydicom_does_not_know_is_walked_as_explicit_vr_little_endian(tmp_path):
    """Every transfer syntax but Implicit VR Little Endian and Explicit VR Big Endian is Explicit VR Little Endian."""
    ds = small_dataset()
    meta = store_data.file_meta_for(ds, NEWER_SYNTAX)
    header = DicomBytesIO()
    header.write(store_data.PREAMBLE)
    write_file_meta_info(header, meta)
    data = header.getvalue() + encode_dataset(ds, ExplicitVRLittleEndian)
    path = tmp_path / "newer.dcm"

    assert source_for(cut(path, data, len(data))).transfer_syntax == NEWER_SYNTAX
    with pytest.raises(NotWhole, match=f"^truncated: Pixel Data needs {PIXEL_BYTES} bytes, {PIXEL_BYTES - 2} remain$"):
        source_for(cut(path, data, len(data) - 2))


# ---- what the check reads ---------------------------------------------------------------------------
@pytest.fixture
def no_more_reads(monkeypatch):
    """The check may not read the file past the bytes it was given."""

    def refuse(*args):
        raise AssertionError("the check read the file again")

    monkeypatch.setattr(whole_file.os, "pread", refuse)


@pytest.mark.parametrize("kind", [store_data.SMALL, store_data.TYPICAL])
def test_a_data_set_ending_with_its_pixel_data_is_checked_in_the_first_read_alone(tmp_path, no_more_reads, kind):
    """The 0.5 MB MR's pixel data starts in the first 4 KiB read for the file meta: its value is skipped by its length."""
    path = tmp_path / f"{kind}.dcm"
    data = write(path, store_data.GENERATORS[kind]())
    assert source_for(path).length == len(data) - store_data.data_offset(path)
    with pytest.raises(NotWhole, match="^truncated: Pixel Data needs"):
        source_for(cut(path, data, len(data) - 1))


def test_an_element_past_the_first_read_is_read_where_it_is(tmp_path, monkeypatch):
    path = tmp_path / "mr.dcm"
    ds = store_data.typical_mr()
    ds.add_new(PADDING, "OB", b"\0" * PADDING_BYTES)
    data = write(path, ds)
    reads = []
    pread = os.pread
    monkeypatch.setattr(whole_file.os, "pread", lambda fd, count, offset: reads.append(offset) or pread(fd, count, offset))

    assert source_for(path).length == len(data) - store_data.data_offset(path)
    assert reads == [len(data) - PADDING_BYTES - 12]  # the padding's header, once
    with pytest.raises(NotWhole, match="^truncated: Data Set Trailing Padding needs 6 bytes, 5 remain$"):
        source_for(cut(path, data, len(data) - 1))


@pytest.mark.parametrize("syntax_name", SYNTAX_NAMES)
def test_the_fast_loop_and_the_steps_agree_at_every_cut(tmp_path, monkeypatch, syntax_name):
    """Every cut of a file with a sequence, an item of undefined length and an element after its
    pixel data: the verdict with the file's bytes in hand (the fast loop) is the one of a walk
    element by element through blocks read from the file; the cuts found whole are where a
    top-level element ends, or fewer bytes than an element header (8) past it, which are passed over."""
    path = tmp_path / "ct.dcm"
    data = write(path, small_dataset(with_padding=True), SYNTAX_NAMES[syntax_name])
    start = store_data.data_offset(path)
    syntax = SYNTAX_NAMES[syntax_name]
    expected_whole = sorted({end + extra for end in top_level_ends(path, start, syntax) for extra in range(8)} & set(range(len(data) + 1)))

    def verdicts(fd: int, keep: int) -> tuple[str, str]:
        fast = verdict(lambda: check_data_set(fd, keep, start, syntax, data[:keep]))
        with monkeypatch.context() as steps_only:
            steps_only.setattr(whole_file._Walk, "_skim", lambda self, position: position)
            steps = verdict(lambda: check_data_set(fd, keep, start, syntax))
        return fast, steps

    whole = []
    for keep in range(start, len(data) + 1):
        fd = os.open(cut(path, data, keep), os.O_RDONLY)
        try:
            fast, steps = verdicts(fd, keep)
        finally:
            os.close(fd)
        assert fast == steps, f"cut at {keep}"
        if fast == "whole":
            whole.append(keep)
    assert whole == expected_whole


def verdict(check) -> str:
    try:
        check()
    except NotWhole as exc:
        return str(exc)
    return "whole"


def top_level_ends(path: Path, start: int, syntax: str) -> list[int]:
    """The data set's start and where each of its top-level elements ends, by pydicom's encoding of each."""
    ends = [start]
    for element in dcmread(path):
        ends.append(ends[-1] + len(encode_dataset(Dataset({element.tag: element}), syntax)))
    return ends


@pytest.mark.parametrize("syntax_name", SYNTAX_NAMES)
def test_the_quick_yes_by_the_pixel_data_header_agrees_with_the_walk_at_every_cut(tmp_path, monkeypatch, syntax_name):
    """A file that ends with its pixel data (with a sequence before it), cut at every byte: the
    verdict of the check, which first looks only at the last Pixel Data header, is the walk's."""
    path = tmp_path / "ct.dcm"
    syntax = SYNTAX_NAMES[syntax_name]
    data = write(path, small_dataset(), syntax)
    start = store_data.data_offset(path)
    quick_yes = 0
    for keep in range(start, len(data) + 1):
        fd = os.open(cut(path, data, keep), os.O_RDONLY)
        try:
            checked = verdict(lambda: check_data_set(fd, keep, start, syntax, data[:keep]))
            with monkeypatch.context() as walk_only:
                walk_only.setattr(whole_file, "_ends_with_pixel_data", lambda *args: False)
                walked = verdict(lambda: check_data_set(fd, keep, start, syntax, data[:keep]))
        finally:
            os.close(fd)
        assert checked == walked, f"cut at {keep}"
        quick_yes += whole_file._ends_with_pixel_data(data[:keep], start, keep, *whole_file._encoding(syntax))
    assert quick_yes == (syntax != ExplicitVRBigEndian)  # the whole file only, in little endian


def test_a_data_set_received_in_fragments_is_checked_across_them(tmp_path):
    """`check_parts`: the fragments a data set arrived in, end to end, whatever their sizes."""
    path = tmp_path / "ct.dcm"
    data = write(path, small_dataset(with_padding=True))
    data_set = data[store_data.data_offset(path) :]
    for size in (1, 7, 100, 4096, len(data_set)):
        parts = [memoryview(data_set)[start : start + size] for start in range(0, len(data_set), size)]
        whole_file.check_parts(parts, ExplicitVRLittleEndian)
        cut = parts[:-1] if len(parts) > 1 else [parts[0][:-1]]
        with pytest.raises(NotWhole, match="^truncated: "):
            whole_file.check_parts(cut, ExplicitVRLittleEndian)


# ---- data sets that pydicom reads: the check must take them as whole ---------------------------
def explicit_element(group: int, element: int, vr: bytes, value: bytes, length: int | None = None) -> bytes:
    """One Explicit VR Little Endian element (`length` replaces the value's, e.g. undefined)."""
    length = len(value) if length is None else length
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2s2xI", group, element, vr, length) + value
    return struct.pack("<HH2sH", group, element, vr, length) + value


def implicit_item(*elements: bytes, undefined: bool = True) -> bytes:
    body = b"".join(elements)
    if not undefined:
        return struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body
    return struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED) + body + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)


UNDEFINED = 0xFFFFFFFF
SEQUENCE_END = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
HEAD_ELEMENTS = explicit_element(0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.7\0") + explicit_element(
    0x0008, 0x0018, b"UI", b"1.2.3.4\0"
)
NAME = explicit_element(0x0010, 0x0010, b"PN", b"DOE^J ")


def test_a_un_element_of_undefined_length_is_walked_as_the_implicit_vr_sequence_it_is():
    """PS3.5 6.2.2: a private sequence passed on by a node without its dictionary."""
    private = struct.pack("<HHI", 0x0009, 0x1002, 4) + b"abcd"  # Implicit VR, inside the UN
    un = explicit_element(0x0009, 0x1001, b"UN", implicit_item(private) + SEQUENCE_END, UNDEFINED)
    data_set = HEAD_ELEMENTS + explicit_element(0x0009, 0x0010, b"LO", b"PRIVATE ") + un + NAME
    whole_file.check_parts([data_set], ExplicitVRLittleEndian)
    with pytest.raises(NotWhole, match="^truncated: "):
        whole_file.check_parts([data_set[: len(data_set) - len(NAME) - 4]], ExplicitVRLittleEndian)


def test_sequences_nested_past_the_limit_are_refused_not_a_crash():
    opening = explicit_element(0x0040, 0xA730, b"SQ", b"", UNDEFINED) + struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED)
    closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + SEQUENCE_END
    for depth, fits in ((whole_file.MAX_DEPTH, True), (2000, False)):
        data_set = HEAD_ELEMENTS + opening * depth + closing * depth
        if fits:
            whole_file.check_parts([data_set], ExplicitVRLittleEndian)
            continue
        with pytest.raises(NotWhole, match=f"^corrupt: sequences nested more than {whole_file.MAX_DEPTH} deep$"):
            whole_file.check_parts([data_set], ExplicitVRLittleEndian)


def test_explicit_vr_bytes_in_an_implicit_vr_context_and_a_few_trailing_bytes_are_whole():
    """As pydicom reads them: the VR encoding the data shows, and fewer bytes than a header passed over."""
    data_set = HEAD_ELEMENTS + NAME
    whole_file.check_parts([data_set], ImplicitVRLittleEndian)
    for trailing in range(1, 8):
        whole_file.check_parts([data_set + b"\0" * trailing], ExplicitVRLittleEndian)
    with pytest.raises(NotWhole, match="^truncated: "):
        whole_file.check_parts([data_set + explicit_element(0x0010, 0x0020, b"LO", b"", 100)], ExplicitVRLittleEndian)


def test_an_item_in_implicit_vr_inside_an_explicit_vr_data_set_is_walked_as_it_is_encoded():
    """Old writers put Implicit VR items in Explicit VR sequences; pydicom reads them."""
    code = struct.pack("<HHI", 0x0008, 0x0100, 6) + b"T-1234"  # Implicit VR, in an item of undefined length
    sequence = explicit_element(0x0008, 0x2218, b"SQ", implicit_item(code) + SEQUENCE_END, UNDEFINED)
    data_set = HEAD_ELEMENTS + sequence + NAME
    whole_file.check_parts([data_set], ExplicitVRLittleEndian)
    with pytest.raises(NotWhole, match="^truncated: "):
        whole_file.check_parts([data_set[: len(HEAD_ELEMENTS) + len(sequence) - 12]], ExplicitVRLittleEndian)
