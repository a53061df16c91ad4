"""Every matching operator of the language, through the loader and a compiled RuleSet, on real data sets."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import Dataset, FileMetaDataset, dcmread
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

from tests.rules.support import CT, SC, compiled, facts, header

pytestmark = pytest.mark.timeout(30)


def matches(folder, when: str, dataset: Dataset | None = None, **fact_values: str) -> bool:
    rules = compiled(folder, f"- name: r\n  when: {when}\n  forward: [pacs]")
    return rules.evaluate(facts(dataset, **fact_values)).matched == ("r",)


def items(*step_ids: str) -> Sequence:
    sequence = []
    for step_id in step_ids:
        item = Dataset()
        item.ScheduledProcedureStepID = step_id
        sequence.append(item)
    return Sequence(sequence)


def from_bytes(dataset: Dataset, syntax: str = ImplicitVRLittleEndian) -> Dataset:
    """`dataset` written as a Part 10 file and read back as the worker reads it: raw, unconverted elements."""
    dataset.SOPClassUID, dataset.SOPInstanceUID = CT, "1.2.3.4"
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = syntax
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return dcmread(BytesIO(buffer.getvalue()), stop_before_pixels=True)


CASES = [
    # equality: case-sensitive, trailing spaces ignored on both sides, a missing element never matches
    ("{Modality: CT}", header(Modality="CT"), True),
    ("{Modality: CT}", header(Modality="CT "), True),
    ("{Modality: 'CT '}", header(Modality="CT"), True),
    ("{Modality: CT}", header(Modality="ct"), False),
    ("{Modality: CT}", header(Modality="MR"), False),
    ("{Modality: CT}", header(), False),
    ("{Modality: CT}", None, False),
    ("{Modality: CT}", header(Modality=""), False),
    # any of a list; multi-valued elements match if any value does
    ("{BodyPartExamined: [CHEST, THORAX]}", header(BodyPartExamined="THORAX"), True),
    ("{BodyPartExamined: [CHEST, THORAX]}", header(BodyPartExamined="HEAD"), False),
    ("{ImageType: AXIAL}", header(ImageType=["ORIGINAL", "PRIMARY", "AXIAL"]), True),
    ("{ImageType: [LOCALIZER, SCOUT]}", header(ImageType=["ORIGINAL", "PRIMARY", "AXIAL"]), False),
    # numbers compare as numbers on numeric elements
    ("{SeriesNumber: 3}", header(SeriesNumber="03"), True),
    ("{SliceThickness: 2.5}", header(SliceThickness="2.50"), True),
    ("{SeriesNumber: 3}", header(SeriesNumber="4"), False),
    # regex: searched anywhere in each value
    ("{StudyDescription: {regex: '(?i)lung|chest'}}", header(StudyDescription="CT CHEST W/O"), True),
    ("{StudyDescription: {regex: '(?i)lung|chest'}}", header(StudyDescription="Lung screening"), True),
    ("{StudyDescription: {regex: '(?i)lung|chest'}}", header(StudyDescription="HEAD"), False),
    ("{StudyDescription: {regex: '^CT'}}", header(StudyDescription="A CT"), False),
    ("{ImageType: {regex: '^DERIV'}}", header(ImageType=["DERIVED", "SECONDARY"]), True),
    # glob: the whole value, case-sensitive
    ("{StationName: {glob: 'CT*'}}", header(StationName="CT_ROOM_2"), True),
    ("{StationName: {glob: 'CT?'}}", header(StationName="CT12"), False),
    ("{StationName: {glob: 'CT*'}}", header(StationName="ct1"), False),
    ("{StationName: {glob: '[AB]X*'}}", header(StationName="BX9"), True),
    # exists
    ("{'(0008,0080)': {exists: true}}", header(InstitutionName="Main"), True),
    ("{'(0008,0080)': {exists: true}}", header(), False),
    ("{'(0008,0080)': {exists: true}}", header(InstitutionName=""), False),
    ("{InstitutionName: {exists: false}}", header(), True),
    ("{InstitutionName: {exists: false}}", header(InstitutionName="Main"), False),
    # not on one key: the element must have a value and the inner test must fail
    ("{Modality: {not: CT}}", header(Modality="MR"), True),
    ("{Modality: {not: CT}}", header(Modality="CT"), False),
    ("{Modality: {not: CT}}", header(), False),
    ("{Modality: {not: [CT, MR]}}", header(Modality="US"), True),
    ("{StudyDescription: {not: {regex: HEAD}}}", header(StudyDescription="HEAD CT"), False),
    ("{ImageType: {not: LOCALIZER}}", header(ImageType=["ORIGINAL", "LOCALIZER"]), False),
    # several operators on one key all hold
    ("{SeriesNumber: {ge: 1, lt: 5}}", header(SeriesNumber="4"), True),
    ("{SeriesNumber: {ge: 1, lt: 5}}", header(SeriesNumber="5"), False),
    ("{StudyDescription: {regex: CT, not: {regex: HEAD}}}", header(StudyDescription="CT CHEST"), True),
    # dates as dates, in DICOM or ISO form
    ("{StudyDate: {gt: 20240101}}", header(StudyDate="20240102"), True),
    ("{StudyDate: {gt: 20240101}}", header(StudyDate="20240101"), False),
    ("{StudyDate: {ge: 2024-01-01}}", header(StudyDate="20240101"), True),
    ("{StudyDate: {between: [2024-01-01, 2024-12-31]}}", header(StudyDate="20241231"), True),
    ("{StudyDate: {between: [2024-01-01, 2024-12-31]}}", header(StudyDate="20250101"), False),
    ("{StudyDate: {lt: 2024-01-01}}", header(StudyDate="not a date"), False),
    # times as times: '1300' > '12:00', though '1300' < '12:00' as text
    ("{StudyTime: {lt: '12:00'}}", header(StudyTime="083000.123"), True),
    ("{StudyTime: {lt: '12:00'}}", header(StudyTime="1300"), False),
    ("{StudyTime: {between: ['08', '0830']}}", header(StudyTime="0815"), True),
    # date-times (an offset is ignored: wall-clock time)
    ("{AcquisitionDateTime: {ge: '2024-01-31T08:30'}}", header(AcquisitionDateTime="20240131083000+0100"), True),
    ("{AcquisitionDateTime: {ge: '2024-01-31T08:30'}}", header(AcquisitionDateTime="2024013108"), False),
    # numbers as numbers: '10' > 2.5, though '10' < '2.5' as text; any value of a multi-valued element
    ("{SliceThickness: {between: [1, 2.5]}}", header(SliceThickness="2.0"), True),
    ("{SliceThickness: {between: [1, 2.5]}}", header(SliceThickness="10"), False),
    ("{SliceThickness: {gt: 5, lt: 10}}", header(SliceThickness="7"), True),
    ("{SliceThickness: {gt: 5, lt: 6}}", header(SliceThickness="5.5"), True),
    ("{SliceThickness: {gt: 5, lt: 10}}", header(SliceThickness="5"), False),
    ("{SliceThickness: {ge: 5, le: 5}}", header(SliceThickness="5"), True),
    ("{Rows: {ge: 512}}", header(Rows=512), True),
    ("{Rows: {gt: 512}}", header(Rows=512), False),
    ("{PixelSpacing: {lt: 0.5}}", header(PixelSpacing=["0.7", "0.4"]), True),
    # sequences by path: every item, or one
    ("{'RequestAttributesSequence[*].ScheduledProcedureStepID': SPS2}",
     header(RequestAttributesSequence=items("SPS1", "SPS2")), True),
    ("{'RequestAttributesSequence[0].ScheduledProcedureStepID': SPS2}",
     header(RequestAttributesSequence=items("SPS1", "SPS2")), False),
    ("{'RequestAttributesSequence[1].ScheduledProcedureStepID': SPS2}",
     header(RequestAttributesSequence=items("SPS1", "SPS2")), True),
    ("{'RequestAttributesSequence[5].ScheduledProcedureStepID': {exists: false}}",
     header(RequestAttributesSequence=items("SPS1")), True),
    ("{'RequestAttributesSequence.ScheduledProcedureStepID': {glob: 'SPS*'}}",
     header(RequestAttributesSequence=items("X", "SPS9")), True),
    ("{'(0040,0275)[*].(0040,0009)': SPS1}", header(RequestAttributesSequence=items("SPS1")), True),
    ("{RequestAttributesSequence: {exists: true}}", header(RequestAttributesSequence=items("SPS1")), True),
    ("{RequestAttributesSequence: {exists: true}}", header(RequestAttributesSequence=items()), False),
    # blocks
    ("{any: [{Modality: CT}, {Modality: MR}]}", header(Modality="MR"), True),
    ("{any: [{Modality: CT}, {Modality: MR}]}", header(Modality="US"), False),
    ("{all: [{Modality: CT}, {BodyPartExamined: CHEST}]}", header(Modality="CT", BodyPartExamined="HEAD"), False),
    ("{not: {Modality: CT}}", header(Modality="MR"), True),
    ("{not: {Modality: CT}}", header(), True),  # a block `not` negates: a missing element fails the inner test
    ("{not: {Modality: CT, BodyPartExamined: HEAD}}", header(Modality="CT", BodyPartExamined="CHEST"), True),
    ("{any: [{not: {Modality: CT}}, {all: [{Modality: CT}, {StudyDescription: {regex: HEAD}}]}]}",
     header(Modality="CT", StudyDescription="HEAD"), True),
    ("{Modality: CT, any: [{BodyPartExamined: CHEST}, {StudyDescription: {regex: '(?i)chest'}}]}",
     header(Modality="CT", BodyPartExamined="ABDOMEN", StudyDescription="chest too"), True),
]


@pytest.mark.parametrize(("when", "dataset", "expected"), CASES, ids=[f"{i}:{c[0]}" for i, c in enumerate(CASES)])
def test_operator(tmp_path, when, dataset, expected):
    assert matches(tmp_path, when, dataset) is expected


FACT_CASES = [
    ("{calling_ae: CT1}", {"calling_ae": "CT1"}, True),
    ("{calling_ae: CT1}", {"calling_ae": "  CT1 "}, True),
    ("{calling_ae: {glob: 'CT*'}}", {"calling_ae": "XR1"}, False),
    ("{called_ae: [ROUTER, GATEWAY]}", {"called_ae": "GATEWAY"}, True),
    ("{peer_ip: 10.0.0.0/8}", {"peer": "10.200.3.4"}, True),
    ("{peer_ip: 10.0.0.0/8}", {"peer": "192.168.1.1"}, False),
    ("{peer_ip: [192.168.1.7, 10.1.0.0/16]}", {"peer": "192.168.1.7"}, True),
    ("{peer_ip: 10.0.0.0/8}", {"peer": "::ffff:10.1.2.3"}, True),
    ("{peer_ip: 'fd00::/8'}", {"peer": "fd00::1"}, True),
    ("{peer_ip: 10.0.0.0/8}", {"peer": "not an address"}, False),
    ("{peer_ip: 10.0.0.0/8}", {"peer": ""}, False),
    ("{peer_ip: {regex: '^10\\.'}}", {"peer": "10.1.2.3"}, True),
    ("{sop_class: SecondaryCaptureImageStorage}", {"sop_class": SC}, True),
    ("{sop_class: SecondaryCaptureImageStorage}", {"sop_class": CT}, False),
    (f"{{sop_class: '{SC}'}}", {"sop_class": SC}, True),
    ("{sop_class: {glob: '*CTImage*'}}", {"sop_class": CT}, True),
    ("{sop_class: [CTImageStorage, MRImageStorage]}", {"sop_class": CT}, True),
    ("{transfer_syntax: ExplicitVRLittleEndian}", {}, True),
    ("{transfer_syntax: JPEGBaseline8Bit}", {"syntax": "1.2.840.10008.1.2.4.50"}, True),
    ("{transfer_syntax: '1.2.840.10008.1.2'}", {}, False),
    ("{calling_ae: {exists: false}}", {"calling_ae": ""}, True),
]


@pytest.mark.parametrize(("when", "fact_values", "expected"), FACT_CASES, ids=[c[0] for c in FACT_CASES])
def test_fact(tmp_path, when, fact_values, expected):
    assert matches(tmp_path, when, None, **fact_values) is expected


def test_private_tags_match_in_memory_and_from_implicit_vr_files(tmp_path):
    dataset = header(Modality="CT")
    dataset.add_new(0x00090010, "LO", "ACME_1")
    dataset.add_new(0x00091001, "LO", "ROUTE-ME")
    assert matches(tmp_path, "{'(0009,1001)': ROUTE-ME, '(0009,0010)': ACME_1}", dataset)
    raw = from_bytes(dataset)
    assert raw.get_item(0x00091001).VR is None  # implicit VR: no dictionary knows it, the rules read it as text
    assert matches(tmp_path, "{'(0009,1001)': ROUTE-ME}", raw)
    assert matches(tmp_path, "{'(0009,1001)': {regex: '^ROUTE'}}", raw)


@pytest.mark.parametrize("implicit", [True, False])
def test_values_read_from_files_match_like_values_in_memory(tmp_path, implicit):
    dataset = header(Modality="CT", ImageType=["ORIGINAL", "PRIMARY"], StudyDate="20240102", SeriesNumber="7",
                     RequestAttributesSequence=items("SPS1", "SPS2"))
    dataset.SpecificCharacterSet = "ISO_IR 192"
    dataset.PatientName = "Müller^Hans"  # not ASCII: read through pydicom's character set handling
    raw = from_bytes(dataset, ImplicitVRLittleEndian if implicit else "1.2.840.10008.1.2.1")
    when = ("{Modality: CT, ImageType: PRIMARY, StudyDate: {gt: 2024-01-01}, SeriesNumber: {between: [5, 9]}, "
            "'RequestAttributesSequence[1].ScheduledProcedureStepID': SPS2, PatientName: {regex: '^Müller'}}")
    assert matches(tmp_path, when, raw)


def test_each_subject_is_read_once_per_instance(tmp_path):
    rules = compiled(tmp_path, """
        - {name: a, when: {Modality: MR}, forward: [pacs]}
        - {name: b, when: {Modality: CT, StudyDescription: {regex: X}}, forward: [pacs]}
        - {name: c, when: {StudyDescription: {regex: CHEST}}, forward: [ai]}
    """)

    class Counting(Dataset):
        reads: list[int] = []

        def get_item(self, key, **kwargs):  # type: ignore[override]
            Counting.reads.append(int(key))
            return super().get_item(key, **kwargs)

    dataset = Counting()
    dataset.Modality, dataset.StudyDescription = "CT", "CHEST"
    assert rules.evaluate(facts(dataset)).matched == ("c",)
    assert sorted(Counting.reads) == [0x00080060, 0x00081030]
