"""Sequence paths read from raw bytes (rules.sequences) give what pydicom's own conversion gives, in both little
endian syntaxes, with items and sequences of defined and undefined length, nested, and in other character sets;
bytes the scanner does not read fall back to pydicom and never raise."""

from __future__ import annotations

from io import BytesIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import Dataset, FileMetaDataset, dcmread
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from rules.paths import parse_path, texts_of, values_at
from rules.sequences import ScanError, scan_items
from tests.rules.support import CT

pytestmark = pytest.mark.timeout(60)

WORDS = st.sampled_from(["SPS1", "SPS2", "A\\B", "", "x y ", "Ünïcode"])
PATHS = [
    "RequestAttributesSequence[*].ScheduledProcedureStepID",
    "RequestAttributesSequence[1].ScheduledProcedureStepID",
    "RequestAttributesSequence[*].ScheduledProtocolCodeSequence[*].CodeValue",
    "RequestAttributesSequence[0].ScheduledProtocolCodeSequence[1].CodeValue",
    "RequestAttributesSequence[*].ScheduledProtocolCodeSequence[*].CodeMeaning",
    "RequestAttributesSequence[*].RequestedProcedureID",
]


@st.composite
def requests(draw) -> Dataset:
    """A data set with a RequestAttributesSequence two levels deep, lengths defined or not, in an 8-bit or UTF-8 set."""
    dataset = Dataset()
    dataset.SpecificCharacterSet = draw(st.sampled_from(["ISO_IR 100", "ISO_IR 192"]))
    undefined = draw(st.booleans())
    items = []
    for _ in range(draw(st.integers(0, 3))):
        item = Dataset()
        item.is_undefined_length_sequence_item = undefined
        if draw(st.booleans()):
            item.ScheduledProcedureStepID = draw(WORDS)
        item.RequestedProcedureID = draw(WORDS)
        codes = []
        for _ in range(draw(st.integers(0, 2))):
            code = Dataset()
            code.is_undefined_length_sequence_item = draw(st.booleans())
            code.CodeValue, code.CodeMeaning, code.Rows = draw(WORDS), draw(WORDS), 7
            codes.append(code)
        item.ScheduledProtocolCodeSequence = Sequence(codes)
        item["ScheduledProtocolCodeSequence"].is_undefined_length = draw(st.booleans())
        items.append(item)
    dataset.RequestAttributesSequence = Sequence(items)
    dataset["RequestAttributesSequence"].is_undefined_length = undefined
    return dataset


def read_back(dataset: Dataset, syntax: str) -> Dataset:
    dataset.SOPClassUID, dataset.SOPInstanceUID = CT, "1.2.3"
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = syntax
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return dcmread(BytesIO(buffer.getvalue()), stop_before_pixels=True)


def converted(dataset: Dataset, text: str) -> tuple[str, ...]:
    """The values at a path, through pydicom's conversion of every sequence on the way."""
    datasets = [dataset]
    *sequences, last = text.split(".")
    for step in sequences:
        keyword, index = step[:-1].split("[")
        items = [item for current in datasets for item in (current.get(keyword) or [])]
        datasets = items if index == "*" else items[int(index):int(index) + 1]
    return tuple(value for current in datasets for value in texts_of(current.get(last)))


@settings(max_examples=60, deadline=None)
@given(dataset=requests(), syntax=st.sampled_from([ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
def test_scanned_sequences_read_like_pydicom(dataset, syntax):
    for text in PATHS:
        scanned = values_at(read_back(dataset, syntax), parse_path(text))
        assert scanned == converted(read_back(dataset, syntax), text), text


def test_the_fast_path_reads_raw_items_without_converting_the_sequence():
    dataset = Dataset()
    item = Dataset()
    item.ScheduledProcedureStepID = "SPS7"
    dataset.RequestAttributesSequence = Sequence([item])
    raw = read_back(dataset, ExplicitVRLittleEndian)
    assert values_at(raw, parse_path("RequestAttributesSequence[*].ScheduledProcedureStepID")) == ("SPS7",)
    assert type(raw.get_item(0x00400275)).__name__ == "RawDataElement"  # still raw: pydicom did not convert it


@pytest.mark.parametrize("data", [
    b"\x08\x00\x60\x00",  # shorter than a header
    b"\xfe\xff\x00\xe0\x10\x00\x00\x00",  # an item longer than the value
    b"\x08\x00\x60\x00\x02\x00\x00\x00CT",  # an element where an item should be
    b"\xfe\xff\x00\xe0\xff\xff\xff\xff\x08\x00\x60\x00CS\xff\xffCT",  # an element longer than the value
    b"\xfe\xff\x00\xe0\xff\xff\xff\xff\x08\x00\x60\x00\x01\x02\x00\x00CT",  # not a VR
    b"\xfe\xff\x00\xe0\xff\xff\xff\xff\x08\x00\x60\x00CS\x02\x00CT\x40\x00\x75\x02SQ\x00\x00\xff\xff\xff\xff",
])
def test_bytes_the_scanner_does_not_read_raise_scan_error(data):
    with pytest.raises(ScanError):
        scan_items(data, implicit=False)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64), implicit=st.booleans())
def test_scanning_arbitrary_bytes_returns_items_or_raises_scan_error_only(data, implicit):
    try:
        scan_items(b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + data, implicit)
    except ScanError:
        pass
