"""The SCUs' -k values checked against their VR, and -f files that hold no DICOM data set.

A value the VR does not allow (a date that is none, a number out of range, a UID too long or a
wildcard where no wildcard matches) is refused with the key quoted before any association opens;
wildcards and ranges that a query may use are kept. A -f file that is not DICOM is refused,
whatever pydicom makes of its bytes when forced.
"""

from __future__ import annotations

import warnings

import pytest
from pydicom.dataset import Dataset

from router.net.apps.common import MAX_ITEM_INDEX, QueryKeyError, build_identifier


@pytest.mark.parametrize(
    "key, problem",
    [
        ("Rows=70000", "'70000' is out of range for US (0 to 65535)"),
        ("Rows=-1", "out of range for US"),
        ("StudyDate=notadate", "Invalid value for VR DA: 'notadate'"),
        ("StudyTime=25:99", "Invalid value for VR TM"),
        ("PatientAge=ABC", "Invalid value for VR AS"),
        ("StudyInstanceUID=1." + "2" * 75, "exceeds the maximum length of 64"),
        ("SeriesInstanceUID=*", "Invalid value for VR UI: '*'"),
        ("PatientName=" + "X" * 70, "component length (70)"),
        ("NumberOfStudyRelatedInstances=abc", "Invalid value for VR IS: 'abc'"),
        ("ModalitiesInStudy=CT\\m r", "Invalid value for VR CS: 'm r'"),
        (f"ReferencedStudySequence[{MAX_ITEM_INDEX + 1}].ReferencedSOPClassUID=1.2", f"item {MAX_ITEM_INDEX + 1} is past"),
    ],
)
def test_a_value_its_vr_does_not_allow_is_refused_with_the_key_quoted(key, problem):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydicom's raw warnings would be a second, unclear message
        with pytest.raises(QueryKeyError) as error:
            build_identifier(None, [key])
    assert str(error.value).startswith(f"-k '{key}': ") and problem in str(error.value)
    assert "Please see" not in str(error.value)


@pytest.mark.parametrize(
    "key",
    [
        "PatientName=DOE^J*", "PatientID=P?1*", "Modality=C*", "ModalitiesInStudy=CT\\MR",
        "StudyDate=20200101-20201231", "StudyDate=-20201231", "StudyTime=120000-", "StudyInstanceUID=1.2.3\\1.2.4",
        "Rows=65535", "StudyDescription=*", "QueryRetrieveLevel=STUDY",
    ],
)
def test_wildcards_ranges_and_lists_a_query_may_use_are_kept_without_a_warning(key):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        identifier = build_identifier(None, [key])
    keyword, _, value = key.partition("=")
    element = identifier[keyword]
    assert (element.value if element.VM <= 1 else "\\".join(map(str, element.value))) in (value, int(value) if value.isdigit() else value)


@pytest.mark.parametrize("content", [b"not an image\n", b"\0" * 16, b"hello world, this is text" * 10])
def test_a_query_file_that_is_not_dicom_is_refused(tmp_path, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(QueryKeyError, match=f"cannot read the query file {path}: not a DICOM data set"):
            build_identifier(str(path), [])


def test_a_query_file_without_part_10_header_is_read(tmp_path):
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientID = "P1"
    path = tmp_path / "bare.dcm"
    query.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert build_identifier(str(path), []).PatientID == "P1"
