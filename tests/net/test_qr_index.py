"""The qrscp's matching (PS3.4 C.2.2.2), its information models, its SQLite index of a folder,
and its configuration; and the identifiers the Q/R SCUs build from their -k keys.

Matching and the models are pure and tested with plain values and pydicom
Datasets; the index is tested over a small library of generated Part 10
files (`write_library`, which the interop tests of the Q/R apps reuse):
three patients, four studies, six series, nine instances, in Implicit,
Explicit and Deflated Explicit VR Little Endian.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian
from pydicom.uid import ImplicitVRLittleEndian, JPEGBaseline8Bit

from router.net import sop_class
from router.net.apps import movescu, qrscp
from router.net.apps.common import QueryKeyError, build_identifier
from router.net.apps.qr_config import ConfigError, Destination, load_config
from router.net.apps.qr_index import InstanceIndex, NotIndexable, read_instance
from router.net.apps.qr_match import UNIVERSAL, AnyOf, EmptyValue, Range, SingleValue, Wildcard, as_values
from router.net.apps.qr_match import compile_condition
from router.net.apps.qr_model import PATIENT_ROOT, PATIENT_STUDY_ONLY, STUDY_ROOT, IdentifierError, Level
from router.net.apps.qr_model import find_matches, find_query, find_response, retrieve_query
from router.net.datasets import encode_dataset
from tests.conftest import LOOPBACK

UID_ROOT = "1.2.826.0.1.3680043.8.498.4242"


# ---- a library of instances ------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """One generated instance: where it sits in the hierarchy and how it is encoded."""

    patient: str  # Patient ID
    name: str
    study: int
    study_date: str
    series: int
    modality: str
    instance: int
    syntax: str = ExplicitVRLittleEndian

    @property
    def study_uid(self) -> str:
        return f"{UID_ROOT}.1.{self.study}"

    @property
    def series_uid(self) -> str:
        return f"{UID_ROOT}.2.{self.study}.{self.series}"

    @property
    def sop_uid(self) -> str:
        return f"{UID_ROOT}.3.{self.study}.{self.series}.{self.instance}"

    @property
    def sop_class(self) -> str:
        return {"CT": sop_class.CTImageStorage, "MR": sop_class.MRImageStorage}.get(
            self.modality, sop_class.SecondaryCaptureImageStorage
        )


LIBRARY: tuple[Spec, ...] = (
    Spec("P1", "Doe^John", 1, "20200115", 1, "CT", 1, ImplicitVRLittleEndian),
    Spec("P1", "Doe^John", 1, "20200115", 1, "CT", 2),
    Spec("P1", "Doe^John", 1, "20200115", 2, "CT", 1),
    Spec("P1", "Doe^John", 2, "20210620", 1, "MR", 1),
    Spec("P1", "Doe^John", 2, "20210620", 1, "MR", 2, ImplicitVRLittleEndian),
    Spec("P2", "Doe^Jane", 3, "20191231", 1, "MR", 1),
    Spec("P2", "Doe^Jane", 3, "20191231", 2, "OT", 1, DeflatedExplicitVRLittleEndian),
    Spec("P3", "Smith^Anna", 4, "20220301", 1, "CT", 1),
    Spec("P3", "Smith^Anna", 4, "20220301", 1, "CT", 2),
)
PATIENTS = sorted({spec.patient for spec in LIBRARY})
STUDIES = sorted({spec.study_uid for spec in LIBRARY})
SERIES = sorted({spec.series_uid for spec in LIBRARY})


def write_instance(spec: Spec, path: Path) -> Path:
    """A small image (8x8, 16 bits) as a Part 10 file in the spec's transfer syntax."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = spec.sop_class
    ds.SOPInstanceUID = spec.sop_uid
    ds.PatientName = spec.name
    ds.PatientID = spec.patient
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = spec.study_uid
    ds.StudyDate = spec.study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = f"ACC{spec.study}"
    ds.StudyID = str(spec.study)
    ds.StudyDescription = f"Study {spec.study}"
    ds.ReferringPhysicianName = ""
    ds.SeriesInstanceUID = spec.series_uid
    ds.Modality = spec.modality
    ds.SeriesNumber = spec.series
    ds.InstanceNumber = spec.instance
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes(range(128))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = spec.sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = spec.sop_uid
    ds.file_meta.TransferSyntaxUID = spec.syntax
    ds.save_as(path, enforce_file_format=True)
    return path


def write_library(folder: Path) -> dict[str, Path]:
    """The LIBRARY's files in `folder`, one sub-folder per patient; by SOP Instance UID."""
    paths = {}
    for spec in LIBRARY:
        (folder / spec.patient).mkdir(parents=True, exist_ok=True)
        paths[spec.sop_uid] = write_instance(spec, folder / spec.patient / f"{spec.modality}{spec.series}-{spec.instance}")
    return paths


def identifier(level: str, **keys) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


@pytest.fixture
def library(tmp_path) -> Path:
    folder = tmp_path / "instances"
    write_library(folder)
    return folder


@pytest.fixture
def index(library, tmp_path):
    index = InstanceIndex(str(tmp_path / "index.sqlite"), str(library))
    index.scan()
    yield index
    index.close()


# ---- matching ----------------------------------------------------------------------------------
def matches(vr: str, query: object, *stored: str) -> bool:
    return compile_condition(vr, query).matches(stored)


def test_universal_matching_takes_every_entity_even_without_a_value():
    assert compile_condition("PN", "") is UNIVERSAL and compile_condition("LO", None) is UNIVERSAL
    assert compile_condition("DA", "*") is UNIVERSAL
    assert matches("PN", "", "Doe^John") and matches("PN", "")


def test_single_value_matching_is_case_sensitive_except_for_person_names():
    assert isinstance(compile_condition("LO", "P1"), SingleValue)
    assert matches("LO", "P1", "P1") and not matches("LO", "p1", "P1") and not matches("LO", "P1")
    assert matches("CS", "CT", "CT") and not matches("CS", "ct", "CT")
    assert matches("PN", "DOE^JOHN", "Doe^John^^^")
    assert not matches("PN", "Doe^Jo", "Doe^John")


def test_single_value_numbers_compare_as_numbers():
    assert matches("IS", "1", "01") and matches("DS", "2.50", "2.5") and not matches("IS", "2", "1")


def test_wildcards_star_and_question_mark():
    assert isinstance(compile_condition("PN", "DOE*"), Wildcard)
    assert matches("PN", "doe*", "Doe^John") and matches("PN", "*^J?hn", "Doe^John")
    assert not matches("PN", "Smith*", "Doe^John")
    assert matches("LO", "P?", "P1") and not matches("LO", "p?", "P1")  # case-sensitive outside PN
    assert matches("LO", "a.b*", "a.bc") and not matches("LO", "a.b*", "axbc")  # other characters are literal


def test_no_wildcards_in_uids():
    condition = compile_condition("UI", "1.2.*")
    assert isinstance(condition, SingleValue)
    assert not condition.matches(("1.2.3",))


def test_list_of_uid_matching():
    condition = compile_condition("UI", ["1.2.3", "1.2.4"])
    assert isinstance(condition, AnyOf)
    assert condition.matches(("1.2.4",)) and not condition.matches(("1.2.5",))
    assert condition.exact_values() == ("1.2.3", "1.2.4")


def test_date_ranges():
    assert isinstance(compile_condition("DA", "20200101-20201231"), Range)
    assert matches("DA", "20200101-20201231", "20200615") and matches("DA", "20200101-20201231", "20201231")
    assert not matches("DA", "20200101-20201231", "20210101")
    assert matches("DA", "20200101-", "20300101") and not matches("DA", "20200101-", "20191231")
    assert matches("DA", "-20200101", "19991231") and not matches("DA", "-20200101", "20200102")
    assert matches("DA", "-2020", "20201231")  # a shorter bound covers the whole year
    assert not matches("DA", "20200101-", "")  # no value: no match


def test_time_and_datetime_ranges():
    assert matches("TM", "1000-1100", "101500") and matches("TM", "1000-1100", "110059.5")
    assert not matches("TM", "1000-1100", "110100")
    assert matches("TM", "-0930", "093000") and not matches("TM", "0930-", "092959")
    assert matches("DT", "20200101-20200102", "20200102235959") and not matches("DT", "20200101-20200102", "20200103")
    assert matches("DT", "20200101120000-", "20200101130000+0100")


def test_empty_value_matching():
    assert isinstance(compile_condition("LO", '""'), EmptyValue)
    assert matches("LO", '""') and not matches("LO", '""', "ACC1")


def test_a_multi_valued_attribute_matches_if_any_value_does():
    assert matches("CS", "MR", "CT", "MR") and matches("CS", ["US", "CT"], "CT", "MR")
    assert not matches("CS", "US", "CT", "MR")


def test_values_from_pydicom():
    ds = Dataset()
    ds.PatientName = "Doe^John "
    ds.ModalitiesInStudy = ["CT", "MR"]
    ds.AccessionNumber = ""
    assert as_values(ds.PatientName) == ("Doe^John",)
    assert as_values(ds.ModalitiesInStudy) == ("CT", "MR")
    assert as_values(ds.AccessionNumber) == () and as_values(None) == ()


# ---- the information models ---------------------------------------------------------------------
def test_levels_and_keys_of_each_model():
    assert PATIENT_ROOT.level_of("PatientName") is Level.PATIENT
    assert STUDY_ROOT.level_of("PatientName") is Level.STUDY  # Study Root's studies carry the patient
    assert PATIENT_STUDY_ONLY.level_of("SeriesInstanceUID") is None
    assert PATIENT_ROOT.level_of("NumberOfPatientRelatedStudies") is Level.PATIENT
    assert STUDY_ROOT.level_of("NumberOfPatientRelatedStudies") is None
    assert PATIENT_ROOT.level_of("NoSuchKeyword") is None


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # '*' is no UID, and what SCUs send
@pytest.mark.parametrize(
    "model, level, keys, problem",
    [
        (PATIENT_ROOT, "STUDY", {"StudyDate": ""}, "PatientID"),
        (PATIENT_ROOT, "SERIES", {"PatientID": "P1"}, "StudyInstanceUID"),
        (PATIENT_ROOT, "IMAGE", {"PatientID": "P1", "StudyInstanceUID": "1.2"}, "SeriesInstanceUID"),
        (STUDY_ROOT, "SERIES", {"StudyInstanceUID": "*"}, "StudyInstanceUID"),
        (STUDY_ROOT, "IMAGE", {"StudyInstanceUID": "1.2"}, "SeriesInstanceUID"),
        (PATIENT_STUDY_ONLY, "STUDY", {"StudyDate": ""}, "PatientID"),
        (STUDY_ROOT, "PATIENT", {"PatientID": ""}, "not one of the Study Root levels"),
        (PATIENT_STUDY_ONLY, "SERIES", {"PatientID": "P1"}, "not one of the Patient/Study Only levels"),
        (PATIENT_ROOT, "PATIENT", {"StudyInstanceUID": ""}, "below the PATIENT level"),
        (STUDY_ROOT, "STUDY", {"Modality": "CT"}, "below the STUDY level"),
    ],
)
def test_hierarchical_find_identifiers_that_do_not_fit(model, level, keys, problem):
    with pytest.raises(IdentifierError, match=problem):
        find_query(identifier(level, **keys), model)


def test_an_identifier_without_a_level_is_refused():
    ds = Dataset()
    ds.PatientID = "P1"
    with pytest.raises(IdentifierError, match="no Query/Retrieve Level"):
        find_query(ds, PATIENT_ROOT)


def test_retrieve_needs_the_unique_keys_down_to_its_level_and_ignores_the_rest():
    query = retrieve_query(identifier("STUDY", PatientID="P1", StudyInstanceUID="1.2", StudyDate="20200101"), PATIENT_ROOT)
    assert set(query.conditions) == {"PatientID", "StudyInstanceUID"}
    with pytest.raises(IdentifierError, match="StudyInstanceUID"):
        retrieve_query(identifier("STUDY", PatientID="P1"), PATIENT_ROOT)
    with pytest.raises(IdentifierError, match="PatientID"):
        retrieve_query(identifier("PATIENT", PatientID=""), PATIENT_ROOT)


def records(*specs: Spec) -> list[dict]:
    return [
        {
            "PatientID": (spec.patient,), "PatientName": (spec.name,), "StudyInstanceUID": (spec.study_uid,),
            "StudyDate": (spec.study_date,), "SeriesInstanceUID": (spec.series_uid,), "Modality": (spec.modality,),
            "SOPInstanceUID": (spec.sop_uid,), "SOPClassUID": (spec.sop_class,), "SpecificCharacterSet": ("ISO_IR 100",),
        }
        for spec in specs
    ]


def test_entities_are_grouped_per_level_with_their_counts():
    query = find_query(identifier("STUDY", PatientID="P1", ModalitiesInStudy="", NumberOfStudyRelatedSeries="",
                                  NumberOfStudyRelatedInstances=""), PATIENT_ROOT)
    studies = find_matches(query, records(*LIBRARY))
    assert [study["StudyInstanceUID"] for study in studies] == [(LIBRARY[0].study_uid,), (LIBRARY[3].study_uid,)]
    assert studies[0]["NumberOfStudyRelatedSeries"] == ("2",) and studies[0]["NumberOfStudyRelatedInstances"] == ("3",)
    assert studies[1]["ModalitiesInStudy"] == ("MR",)
    patients = find_matches(find_query(identifier("PATIENT", NumberOfPatientRelatedStudies=""), PATIENT_ROOT), records(*LIBRARY))
    assert [(p["PatientID"], p["NumberOfPatientRelatedStudies"]) for p in patients] == [(("P1",), ("2",)), (("P2",), ("1",)), (("P3",), ("1",))]


def test_matching_on_an_aggregate():
    query = find_query(identifier("STUDY", ModalitiesInStudy="OT"), STUDY_ROOT)
    assert [study["StudyInstanceUID"] for study in find_matches(query, records(*LIBRARY))] == [(LIBRARY[5].study_uid,)]


def test_the_response_holds_the_requested_keys_only():
    request = identifier("STUDY", PatientName="DOE*", StudyDate="", ModalitiesInStudy="", NumberOfPatientRelatedStudies="")
    request.add_new(0x00091010, "LO", "")  # a private key we cannot answer
    query = find_query(request, STUDY_ROOT)
    entity = find_matches(query, records(*LIBRARY))[0]
    response = find_response(query, entity)
    assert [element.keyword for element in response] == [
        "SpecificCharacterSet", "StudyDate", "QueryRetrieveLevel", "ModalitiesInStudy", "", "PatientName",
        "NumberOfPatientRelatedStudies",
    ]
    assert response.QueryRetrieveLevel == "STUDY" and response.PatientName == "Doe^John"
    assert response.StudyDate == "20200115" and response.ModalitiesInStudy == "CT"
    assert response[0x00091010].value in (None, "") and response.NumberOfPatientRelatedStudies is None
    assert [key.keyword for key in query.unsupported] == [None, None]  # the private key, and a patient count in Study Root


# ---- the index ---------------------------------------------------------------------------------
def test_scan_indexes_the_folder_recursively_and_skips_what_is_not_dicom(library, tmp_path, caplog):
    (library / "notes.txt").write_text("not DICOM")
    (library / "P1" / "received-1.dcm.part").write_bytes(b"\0" * 200)
    with caplog.at_level(logging.WARNING, logger="router.net"):
        index = InstanceIndex(str(library / "index.sqlite"), str(library))  # the database inside the folder
        summary = index.scan()
    assert (summary.indexed, summary.skipped) == (len(LIBRARY), [str(library / "notes.txt")])
    assert "notes.txt: not a DICOM file" in caplog.text
    assert len(index) == len(LIBRARY)
    index.close()


def write_encapsulated(path: Path) -> Path:
    """An instance in JPEG Baseline whose one frame is encapsulated in two fragments of 50 bytes."""
    write_instance(Spec("P5", "Fragments^Fay", 5, "20240101", 1, "OT", 1), path)
    ds = dcmread(path)
    ds.PixelData = encapsulate([bytes(range(100))], fragments_per_frame=2)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(path, enforce_file_format=True)
    return path


def scan_skips(index: InstanceIndex, caplog) -> list[str]:
    """What a scan by `index` logged of each file it skipped, each one an error (shown without -v)."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="router.net"):
        summary = index.scan()
    skips = [record for record in caplog.records if record.message.startswith("Skipping ")]
    assert [record.levelname for record in skips] == ["ERROR"] * len(summary.skipped)
    return [record.message for record in skips]


def written(spec: Spec):
    return lambda path: write_instance(spec, path)


PIXELS_CUT = "truncated: Pixel Data needs 128 bytes, 78 remain"


@pytest.mark.parametrize(
    "write, keep, reason",
    [
        (written(LIBRARY[1]), lambda data: len(data) - 50, PIXELS_CUT),
        (written(LIBRARY[0]), lambda data: len(data) - 50, PIXELS_CUT),  # Implicit VR
        (written(Spec("P6", "Big^Ben", 6, "20240101", 1, "CT", 1, ExplicitVRBigEndian)), lambda data: len(data) - 50, PIXELS_CUT),
        (write_encapsulated, lambda data: len(data) - 20, "truncated: an item of Pixel Data needs 50 bytes, 38 remain"),
        (write_encapsulated, lambda data: len(data) - 8, "truncated: the header of an item of Pixel Data needs 8 bytes, 0 remain"),
        (written(LIBRARY[1]), lambda data: data.index(b"MONOCHROME2") + 4,  # every key read, the image cut short before its pixels
         "truncated: Photometric Interpretation needs 12 bytes, 4 remain"),
        (written(LIBRARY[1]), lambda data: data.rindex(b"\xe0\x7f\x10\x00") + 10,  # fewer than 8 bytes would be passed over
         "unreadable (error: unpack requires a buffer of 4 bytes)"),  # pydicom, reading up to the pixel data
        (written(LIBRARY[6]), lambda data: len(data) // 2, "truncated or corrupt: the deflated data set does not inflate"),
    ],
    ids=["explicit", "implicit", "big-endian", "in-a-fragment", "no-delimiter", "in-an-element", "in-a-header", "deflated"],
)
def test_a_file_cut_short_is_skipped_with_what_is_missing(tmp_path, caplog, write, keep, reason):
    folder = tmp_path / "instances"
    folder.mkdir()
    path = write(folder / "instance.dcm")
    index = InstanceIndex(str(tmp_path / "index.sqlite"), str(folder))
    assert (scan_skips(index, caplog), len(index)) == ([], 1)  # whole, it is indexed
    data = path.read_bytes()
    path.write_bytes(data[:keep(data)])
    skips = scan_skips(index, caplog)
    assert len(skips) == 1 and skips[0].startswith(f"Skipping {path}: {reason}")
    assert len(index) == 0  # and no longer served as it was
    index.close()


@pytest.mark.filterwarnings("ignore:Expected explicit VR, but found implicit VR")
def test_a_data_set_in_implicit_vr_under_a_file_meta_saying_explicit_is_walked_as_pydicom_reads_it(tmp_path):
    dataset = dcmread(write_instance(LIBRARY[0], tmp_path / "implicit.dcm"))
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    header = DicomBytesIO()
    header.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(header, dataset.file_meta)
    path = tmp_path / "mislabeled.dcm"
    path.write_bytes(header.getvalue() + encode_dataset(dataset, ImplicitVRLittleEndian))
    assert read_instance(str(path)).transfer_syntax == ExplicitVRLittleEndian
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(NotIndexable, match=PIXELS_CUT):
        read_instance(str(path))


@pytest.mark.timeout(10)  # reading a FIFO blocks the scan for ever
@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda path: path.symlink_to(path.parent / "nowhere"), "symbolic link to {path.parent}/nowhere: No such file or directory"),
        (lambda path: path.symlink_to(path), "symbolic link to {path}: Too many levels of symbolic links"),
        (os.mkfifo, "not a regular file (a FIFO)"),
    ],
    ids=["dangling-link", "link-loop", "fifo"],
)
def test_entries_that_are_not_regular_files_are_skipped_and_the_scan_goes_on(library, tmp_path, caplog, make, reason):
    entry = library / "P1" / "entry.dcm"
    make(entry)
    (library / "P2" / "link.dcm").symlink_to(write_instance(Spec("P7", "Linked^Lou", 7, "20240101", 1, "CT", 1), tmp_path / "elsewhere.dcm"))
    index = InstanceIndex(str(tmp_path / "index.sqlite"), str(library))
    assert scan_skips(index, caplog) == [f"Skipping {entry}: {reason.format(path=entry)}"]
    assert len(index) == len(LIBRARY) + 1  # the link to a file is followed
    index.close()


def make_deep_folder(top: Path, limit: int) -> list[Path]:
    """Folders nested under `top` until their path is `limit` characters or more, made one at a
    time through directory descriptors (by path the last could not be made); each one's path."""
    component = "d" * 200
    folders = [top / component]
    while len(str(folders[-1])) < limit:
        folders.append(folders[-1] / component)
    parent = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in folders:
            os.mkdir(component, dir_fd=parent)
            child = os.open(component, os.O_RDONLY | os.O_DIRECTORY, dir_fd=parent)
            os.close(parent)
            parent = child
    finally:
        os.close(parent)
    return folders


def test_a_folder_that_cannot_be_listed_is_skipped_with_why(library, tmp_path, caplog):
    """A folder whose path is too long for the system cannot be listed, even by root (who lists a
    folder of mode 000): the scan says which and why, as it does of files, and goes on."""
    limit = os.pathconf(library, "PC_PATH_MAX")
    deep = make_deep_folder(library / "P1", limit)
    index = InstanceIndex(str(tmp_path / "index.sqlite"), str(library))
    try:
        assert scan_skips(index, caplog) == [f"Skipping {deep[-1]}: File name too long"]
        assert len(index) == len(LIBRARY)
    finally:
        index.close()
        shutil.rmtree(deep[0])  # by descriptors, as it was made


def test_a_rescan_reads_only_changed_files_and_drops_vanished_ones(index, library):
    first = library / "P3" / "CT1-1"
    write_instance(Spec("P3", "Smith^Anne", 4, "20220301", 1, "CT", 1), first)  # renamed patient
    (library / "P3" / "CT1-2").unlink()
    summary = index.scan()
    assert (summary.indexed, summary.unchanged, summary.removed) == (1, len(LIBRARY) - 2, 1)
    names = [entity["PatientName"] for entity in index.find(find_query(identifier("PATIENT", PatientID="P3", PatientName=""), PATIENT_ROOT))]
    assert names == [("Smith^Anne",)]


def test_a_file_is_checked_again_before_it_is_sent(index, library):
    """What the index holds is read again only if its file changed since it was indexed: cut short,
    replaced by another instance or gone, it cannot be sent; rewritten as it was, it can, and is
    indexed anew (not read again next time)."""
    p1 = index.retrieve(retrieve_query(identifier("PATIENT", PatientID="P1"), PATIENT_ROOT))
    indexed = {instance.sop_instance_uid: instance for instance in p1}
    cut, replaced, gone, rewritten, untouched = (indexed[spec.sop_uid] for spec in LIBRARY[:5])
    data = Path(cut.path).read_bytes()
    Path(cut.path).write_bytes(data[:-50])
    write_instance(LIBRARY[7], Path(replaced.path))
    os.unlink(gone.path)
    Path(rewritten.path).write_bytes(Path(rewritten.path).read_bytes())
    reasons = []
    for instance in (cut, replaced, gone):
        with pytest.raises(NotIndexable) as error:
            index.check_sendable(instance)
        reasons.append(str(error.value))
    assert reasons == [
        PIXELS_CUT, f"changed since it was indexed: it now holds {LIBRARY[7].sop_uid}", "No such file or directory",
    ]
    index.check_sendable(rewritten)
    index.check_sendable(untouched)
    again = {instance.sop_instance_uid: instance for instance in index.retrieve(retrieve_query(identifier("PATIENT", PatientID="P1"), PATIENT_ROOT))}
    status = os.stat(rewritten.path)
    assert (again[rewritten.sop_instance_uid].size, again[rewritten.sop_instance_uid].mtime) == (status.st_size, status.st_mtime_ns)


def test_the_index_survives_a_restart(library, tmp_path):
    database = str(tmp_path / "index.sqlite")
    first = InstanceIndex(database, str(library))
    first.scan()
    first.close()
    second = InstanceIndex(database, str(library))
    assert second.scan().unchanged == len(LIBRARY) and len(second) == len(LIBRARY)
    second.close()


@pytest.mark.parametrize(
    "model, level, keys, expected",
    [
        (PATIENT_ROOT, "PATIENT", {"PatientName": "Doe*"}, 2),
        (PATIENT_ROOT, "PATIENT", {"PatientID": ""}, 3),
        (PATIENT_ROOT, "STUDY", {"PatientID": "P1", "StudyDate": "20210101-"}, 1),
        (PATIENT_ROOT, "SERIES", {"PatientID": "P1", "StudyInstanceUID": LIBRARY[0].study_uid}, 2),
        (PATIENT_ROOT, "IMAGE", {"PatientID": "P1", "StudyInstanceUID": LIBRARY[0].study_uid, "SeriesInstanceUID": LIBRARY[0].series_uid}, 2),
        (STUDY_ROOT, "STUDY", {"PatientName": "DOE^J*", "StudyDate": "-20201231"}, 2),
        (STUDY_ROOT, "STUDY", {"StudyInstanceUID": [LIBRARY[0].study_uid, LIBRARY[-1].study_uid]}, 2),
        (STUDY_ROOT, "SERIES", {"StudyInstanceUID": LIBRARY[5].study_uid, "Modality": "OT"}, 1),
        (STUDY_ROOT, "IMAGE", {"StudyInstanceUID": LIBRARY[0].study_uid, "SeriesInstanceUID": LIBRARY[0].series_uid, "InstanceNumber": "2"}, 1),
        (PATIENT_STUDY_ONLY, "PATIENT", {"PatientSex": "O"}, 3),
        (PATIENT_STUDY_ONLY, "STUDY", {"PatientID": "P2", "AccessionNumber": "ACC?"}, 1),
    ],
)
def test_find_at_each_level_of_each_model(index, model, level, keys, expected):
    assert len(index.find(find_query(identifier(level, **keys), model))) == expected


@pytest.mark.parametrize(
    "model, level, keys, expected",
    [
        (PATIENT_ROOT, "PATIENT", {"PatientID": "P1"}, 5),
        (PATIENT_ROOT, "STUDY", {"PatientID": "P1", "StudyInstanceUID": LIBRARY[0].study_uid}, 3),
        (STUDY_ROOT, "STUDY", {"StudyInstanceUID": [LIBRARY[0].study_uid, LIBRARY[5].study_uid]}, 5),
        (STUDY_ROOT, "SERIES", {"StudyInstanceUID": LIBRARY[0].study_uid, "SeriesInstanceUID": LIBRARY[0].series_uid}, 2),
        (STUDY_ROOT, "IMAGE", {"StudyInstanceUID": LIBRARY[0].study_uid, "SeriesInstanceUID": LIBRARY[0].series_uid,
                               "SOPInstanceUID": LIBRARY[1].sop_uid}, 1),
        (PATIENT_STUDY_ONLY, "STUDY", {"PatientID": "P3", "StudyInstanceUID": LIBRARY[-1].study_uid}, 2),
        (STUDY_ROOT, "STUDY", {"StudyInstanceUID": "1.2.3.4"}, 0),
    ],
)
def test_retrieve_takes_every_instance_under_each_matching_entity(index, model, level, keys, expected):
    instances = index.retrieve(retrieve_query(identifier(level, **keys), model))
    assert len(instances) == expected
    assert all(os.path.exists(instance.path) for instance in instances)


def test_the_index_keeps_each_files_transfer_syntax(index):
    instances = index.retrieve(retrieve_query(identifier("PATIENT", PatientID="P2"), PATIENT_ROOT))
    assert sorted(instance.transfer_syntax for instance in instances) == [ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian]


def test_added_files_are_found_and_threads_may_share_the_index(index, tmp_path):
    new = [Spec("P9", f"Parallel^{n}", 9, "20230101", 1, "CT", n) for n in range(1, 9)]
    errors = []

    def add(spec):
        try:
            index.add_file(str(write_instance(spec, tmp_path / f"new-{spec.instance}.dcm")))
            index.find(find_query(identifier("PATIENT", PatientID=""), PATIENT_ROOT))
        except Exception as exc:  # reported below: a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(spec,)) for spec in new]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors
    study = index.find(find_query(identifier("STUDY", StudyInstanceUID=new[0].study_uid, NumberOfStudyRelatedInstances=""), STUDY_ROOT))
    assert study[0]["NumberOfStudyRelatedInstances"] == ("8",)


# ---- the configuration ------------------------------------------------------------------------------
PYNETDICOM_LAYOUT = """\
# Default configuration file for qrscp.py
[DEFAULT]
    # Our AE Title
    ae_title: ARCHIVE
    port: 11112
    max_pdu: 16382
    acse_timeout: 30
    dimse_timeout: 30
    network_timeout: 30
    bind_address:
    instance_location: instances
    database_location: instances.sqlite
    log_identifier: False

## Move Destinations
[STORESCP]
    address: 127.0.0.1
    port: 11113
"""


def test_the_configuration_reads_pynetdicoms_layout(tmp_path):
    path = tmp_path / "conf" / "qrscp.ini"
    path.parent.mkdir()
    path.write_text(PYNETDICOM_LAYOUT)
    config = load_config(str(path))
    assert (config.ae_title, config.port, config.bind_address, config.log_identifier) == ("ARCHIVE", 11112, "", False)
    assert config.instance_location == str(path.parent / "instances")  # relative to the file
    assert config.database_location == str(path.parent / "instances.sqlite")
    assert config.destinations == {"STORESCP": Destination("127.0.0.1", 11113)}
    assert config.maximum_associations == 10  # ours, with its default
    assert config.destination_timeout == 10  # ours, with its default


PYNETDICOM_MOVESCU_DIMSE_TIMEOUT = 30.0  # pynetdicom's movescu waits this long for each response by default


def test_a_move_destination_is_given_up_well_before_a_requester_with_default_timeouts_gives_up():
    """A destination that never answers costs qrscp at most two waits (to connect, then for the
    association answer): the final C-MOVE response still comes in a requester's default time."""
    ours = movescu.parse_args([LOOPBACK, "104"]).dimse_timeout
    requester = min(ours, PYNETDICOM_MOVESCU_DIMSE_TIMEOUT)
    worst = 2 * load_config(None).destination_timeout
    assert worst <= requester - 10  # with seconds to spare for the rest of the sub-operation and the response


def test_the_destination_timeout_is_read_from_the_file_and_the_command_line(tmp_path):
    path = tmp_path / "qrscp.ini"
    path.write_text(PYNETDICOM_LAYOUT.replace("network_timeout: 30", "network_timeout: 30\n    destination_timeout: 2.5"))
    assert load_config(str(path)).destination_timeout == 2.5
    assert load_config(str(path), {"destination_timeout": 0.5}).destination_timeout == 0.5
    assert qrscp.parse_args(["--destination-timeout", "4"]).destination_timeout == 4.0
    path.write_text("[DEFAULT]\ndestination_timeout: soon\n")
    with pytest.raises(ConfigError, match=r"\[DEFAULT\] destination_timeout: 'soon' is not a number"):
        load_config(str(path))


def test_command_line_overrides(tmp_path, monkeypatch):
    path = tmp_path / "qrscp.ini"
    path.write_text(PYNETDICOM_LAYOUT)
    monkeypatch.chdir(tmp_path / "..")
    config = load_config(str(path), {"port": 104, "ae_title": None, "instance_location": "here", "database_location": ":memory:"})
    assert (config.port, config.ae_title) == (104, "ARCHIVE")
    assert config.instance_location == os.path.abspath("here") and config.database_location == ":memory:"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[DEFAULT]\nport: eleven\n", "[DEFAULT] port: 'eleven' is not an integer"),
        ("[DEFAULT]\nmaximum_associations: 0\n", "[DEFAULT] maximum_associations: 0 is below 1"),
        ("[DEFAULT]\nae_title: MUCH_TOO_LONG_A_TITLE\n", "[DEFAULT] ae_title: Invalid AE title"),
        ("[DEFAULT]\nlog_identifier: perhaps\n", "log_identifier: 'perhaps' is not true or false"),
        ("[STORESCP]\naddress: 127.0.0.1\n", "[STORESCP] port: missing"),  # never the DEFAULT port
        ("[A\\B]\naddress: 127.0.0.1\nport: 104\n", "a move destination is named by its AE title"),
        ("no section\n", "File contains no section headers"),
    ],
)
def test_configuration_errors_say_where(tmp_path, text, problem):
    path = tmp_path / "bad.ini"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(str(path))
    assert str(error.value).startswith(str(path)) and problem in str(error.value)


# ---- the SCUs' -k keys -------------------------------------------------------------------------------
def test_query_keys_make_an_identifier():
    ds = build_identifier(None, [
        "QueryRetrieveLevel=STUDY", "PatientName=DOE*", "(0010,0020)=", "StudyInstanceUID", "ModalitiesInStudy=CT\\MR",
        "Rows=512", "ReferencedStudySequence[0].ReferencedSOPInstanceUID=1.2.3", "ReferencedSeriesSequence=",
        "ReferencedImageSequence[1]=",
    ])
    assert ds.QueryRetrieveLevel == "STUDY" and ds.PatientName == "DOE*" and list(ds.ModalitiesInStudy) == ["CT", "MR"]
    assert ds.PatientID in (None, "") and ds.StudyInstanceUID in (None, "") and ds.Rows == 512
    assert ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID == "1.2.3"
    assert len(ds.ReferencedSeriesSequence) == 0 and len(ds.ReferencedImageSequence) == 2


def test_query_keys_override_a_query_file(tmp_path):
    query = identifier("PATIENT", PatientID="P1", PatientName="")
    path = tmp_path / "query.dcm"
    query.save_as(path, implicit_vr=True, little_endian=True)
    ds = build_identifier(str(path), ["PatientID=P2"])
    assert (ds.QueryRetrieveLevel, ds.PatientID) == ("PATIENT", "P2") and "PatientName" in ds


@pytest.mark.parametrize(
    "key, problem",
    [
        ("NoSuchKeyword=1", "unknown keyword 'NoSuchKeyword'"),
        ("(0011,0010)=x", "(0011,0010) is not in the DICOM dictionary"),
        ("Rows=many", "'many' is not a valid US value"),
        ("PatientName[0]=x", "only a sequence has items"),
        ("ReferencedStudySequence=x", "a sequence takes no value"),
        ("PatientName.PatientID=x", "is not a sequence"),
        ("PixelData=00ff", "cannot be given on the command line"),
        ("Patient-Name=x", "neither a keyword nor a (gggg,eeee) tag"),
    ],
)
def test_bad_query_keys_say_which(key, problem):
    with pytest.raises(QueryKeyError) as error:
        build_identifier(None, [key])
    assert str(error.value).startswith(f"-k '{key}': ") and problem in str(error.value)


def test_a_query_needs_keys_or_a_file(tmp_path):
    with pytest.raises(QueryKeyError, match="no query"):
        build_identifier(None, [])
    with pytest.raises(QueryKeyError, match="cannot read the query file"):
        build_identifier(str(tmp_path / "missing.dcm"), [])
