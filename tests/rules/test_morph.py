"""Morphs applied to a data set: set, delete, copy, replace; new elements take the right VR; errors say why."""

from __future__ import annotations

import copy
from io import BytesIO

import pytest
from pydicom import Dataset, FileMetaDataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from rules.decision import Morph, MorphKind
from rules.morph import MorphError, apply_morphs
from tests.rules.support import CT, header

pytestmark = pytest.mark.timeout(30)

SET, DELETE, COPY, REPLACE = MorphKind.SET, MorphKind.DELETE, MorphKind.COPY, MorphKind.REPLACE


def morphed(dataset: Dataset, *morphs: Morph) -> Dataset:
    apply_morphs(dataset, morphs)
    return dataset


def round_trip(dataset: Dataset, syntax: str) -> Dataset:
    """Written as a Part 10 file in `syntax` and read back."""
    dataset.SOPClassUID, dataset.SOPInstanceUID = CT, "1.2.3.4"
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = syntax
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return dcmread(BytesIO(buffer.getvalue()))


def test_set_replaces_a_value_and_creates_elements_with_the_dictionary_vr():
    dataset = morphed(
        header(InstitutionName="Old"),
        Morph(SET, "InstitutionName", "Main Hospital"),
        Morph(SET, "Rows", "512"),
        Morph(SET, "SliceThickness", "2.5"),
        Morph(SET, "ImageType", "DERIVED\\SECONDARY"),
        Morph(SET, "(0010,0010)", "Doe^John"),
        Morph(SET, "PatientComments", ""),
        Morph(SET, "StudyDate", "20240131"),
    )
    assert dataset.InstitutionName == "Main Hospital"
    assert (dataset["Rows"].VR, dataset.Rows) == ("US", 512)
    assert (dataset["SliceThickness"].VR, float(dataset.SliceThickness)) == ("DS", 2.5)
    assert list(dataset.ImageType) == ["DERIVED", "SECONDARY"]
    assert (dataset["PatientName"].VR, str(dataset.PatientName)) == ("PN", "Doe^John")
    assert dataset["PatientComments"].VR == "LT" and dataset.PatientComments == ""
    assert dataset["StudyDate"].VR == "DA"


def test_private_elements_take_their_creators_vr_else_lo():
    dataset = morphed(
        Dataset(),
        Morph(SET, "(0009,0010)", "GEMS_ACQU_01"),
        Morph(SET, "(0009,1024)", "1.5"),  # GEMS_ACQU_01 (0009,xx24) is DS in pydicom's private dictionary
        Morph(SET, "(0011,0010)", "SOMEONE"),
        Morph(SET, "(0011,1001)", "routed"),  # an unknown creator: LO
        Morph(SET, "(0013,1001)", "no creator"),  # no creator at all: LO
    )
    assert [dataset[tag].VR for tag in (0x00090010, 0x00091024, 0x00110010, 0x00111001, 0x00131001)] == [
        "LO", "DS", "LO", "LO", "LO"]
    read_back = round_trip(dataset, ExplicitVRLittleEndian)
    assert read_back[0x00111001].VR == "LO" and read_back[0x00111001].value == "routed"


def test_a_private_element_read_as_un_is_rewritten_as_text():
    source = Dataset()
    source.add_new(0x00110010, "LO", "SOMEONE")
    source.add_new(0x00111001, "LO", "before")
    dataset = round_trip(source, ImplicitVRLittleEndian)
    assert dataset[0x00111001].VR == "UN"
    morphed(dataset, Morph(REPLACE, "(0011,1001)", "after", pattern="^before$"))
    assert dataset[0x00111001].VR == "LO" and dataset[0x00111001].value == "after"


def test_delete_removes_present_elements_and_ignores_missing_ones():
    dataset = header(OtherPatientIDs=["A", "B"], PatientID="P")
    dataset.add_new(0x00091001, "LO", "x")
    morphed(dataset, Morph(DELETE, "OtherPatientIDs"), Morph(DELETE, "(0009,1001)"), Morph(DELETE, "PatientComments"))
    assert "OtherPatientIDs" not in dataset and 0x00091001 not in dataset and dataset.PatientID == "P"


def test_copy_keeps_the_value_or_converts_it_to_the_targets_vr():
    dataset = morphed(
        header(PatientID="P1", StudyDate="20240131", Rows=512),
        Morph(COPY, "OtherPatientIDs", source="PatientID"),
        Morph(COPY, "ContentDate", source="StudyDate"),
        Morph(COPY, "(0013,1001)", source="Rows"),
        Morph(COPY, "Columns", source="Rows"),
        Morph(COPY, "PatientComments", source="AccessionNumber"),  # missing source: nothing happens
    )
    assert dataset.OtherPatientIDs == "P1" and dataset.ContentDate == "20240131"
    assert (dataset[0x00131001].VR, dataset[0x00131001].value) == ("LO", "512")
    assert dataset.Columns == 512 and "PatientComments" not in dataset


def test_replace_rewrites_every_value_with_the_regex():
    dataset = morphed(
        header(AccessionNumber="ACC123", OtherPatientIDs=["ID-1", "ID-2"], SeriesNumber="7"),
        Morph(REPLACE, "AccessionNumber", "MH", pattern="^ACC"),
        Morph(REPLACE, "OtherPatientIDs", r"X\1", pattern=r"^ID-(\d)"),
        Morph(REPLACE, "SeriesNumber", "17", pattern="^7$"),
        Morph(REPLACE, "StudyDescription", "x", pattern="y"),  # missing: nothing happens
    )
    assert dataset.AccessionNumber == "MH123"
    assert list(dataset.OtherPatientIDs) == ["X1", "X2"]
    assert dataset.SeriesNumber == 17 and "StudyDescription" not in dataset


def test_morphs_change_only_the_dataset_given():
    original = header(InstitutionName="Old", AccessionNumber="ACC1")
    copied = copy.deepcopy(original)
    morphed(copied, Morph(SET, "InstitutionName", "New"), Morph(DELETE, "AccessionNumber"))
    assert original.InstitutionName == "Old" and original.AccessionNumber == "ACC1"


@pytest.mark.parametrize(("morph", "reason"), [
    (Morph(SET, "Rows", "abc"), "set Rows: invalid literal for int() with base 10: 'abc'"),
    (Morph(SET, "Rows", "70000"), "set Rows: 70000 does not fit in US (0 to 65535)"),
    (Morph(SET, "SeriesNumber", "1.5"), "set SeriesNumber: invalid literal for int() with base 10: '1.5'"),
    (Morph(SET, "PixelData", "x"), "set PixelData: OB elements cannot be written from text"),
    (Morph(SET, "Modalty", "CT"), "set Modalty: unknown DICOM keyword 'Modalty'"),
    (Morph(REPLACE, "SeriesNumber", "x", pattern="7"), "replace SeriesNumber: invalid literal for int() with base 10: 'x'"),
    (Morph(REPLACE, "SeriesNumber", r"\3", pattern="7"), "replace SeriesNumber: invalid group reference 3 at position 1"),
    (Morph(COPY, "Rows", source="PatientID"), "copy Rows: invalid literal for int() with base 10: 'P1'"),
])
def test_a_morph_that_cannot_work_raises_morph_error_with_its_reason(morph, reason):
    with pytest.raises(MorphError) as caught:
        apply_morphs(header(SeriesNumber="7", PatientID="P1"), [morph])
    assert str(caught.value) == reason
