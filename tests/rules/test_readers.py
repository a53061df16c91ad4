"""The readers rules compile for their subjects (rules.paths.reader) give exactly what the general reading gives
(values_at), for raw and converted elements of every VR family, top-level and in sequence items, in both little
endian syntaxes: their fast paths only skip work, never change a value."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from rules.paths import parse_path, reader, values_at
from tests.rules.support import facts
from tests.rules.test_property import ELEMENTS, PROPERTY, datasets
from tests.rules.test_sequences import PATHS, read_back, requests

pytestmark = [pytest.mark.timeout(60), pytest.mark.filterwarnings("ignore")]
TOP_LEVEL = [f"({tag >> 16:04X},{tag & 0xFFFF:04X})" for tag in ELEMENTS] + [
    "RequestAttributesSequence", "RequestAttributesSequence[*].ScheduledProcedureStepID",
    "RequestAttributesSequence[1].RequestedProcedureID",
]
SYNTAXES = st.sampled_from([ExplicitVRLittleEndian, ImplicitVRLittleEndian])


@PROPERTY
@given(dataset=datasets())
def test_element_readers_read_what_values_at_reads(dataset):
    for text in TOP_LEVEL:
        path = parse_path(text)
        assert reader(path)(facts(dataset)) == values_at(dataset, path), text


@settings(max_examples=60, deadline=None)
@given(dataset=requests(), syntax=SYNTAXES)
def test_item_readers_read_what_values_at_reads(dataset, syntax):
    for text in PATHS:
        path = parse_path(text)
        assert reader(path)(facts(read_back(dataset, syntax))) == values_at(read_back(dataset, syntax), path), text


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_the_item_reader_leaves_the_sequence_raw(syntax):
    dataset, item = Dataset(), Dataset()
    item.ScheduledProcedureStepID, item.RequestedProcedureID = "SPS7", "RP7"
    dataset.RequestAttributesSequence = Sequence([item])
    raw = read_back(dataset, syntax)
    assert reader(parse_path("RequestAttributesSequence[*].ScheduledProcedureStepID"))(facts(raw)) == ("SPS7",)
    assert type(raw.get_item(0x00400275)).__name__ == "RawDataElement"


def test_readers_of_an_instance_without_a_header_read_nothing():
    for text in TOP_LEVEL:
        assert reader(parse_path(text))(facts(None)) == ()
