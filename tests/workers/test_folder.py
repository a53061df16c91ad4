"""Folder delivery: the study/series/instance layout, bit-identical files, links and copies, morphed copies, bad headers."""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest

from router.config import FolderDestination
from rules.decision import Morph, MorphKind
from tests.interop import store_data
from tests.workers.harness import instances
from workers.attempt import DELIVERED, OutcomeKind, Parcel
from workers.folder import FolderSender, deliver_to_folder, place

SHARED_MEMORY = Path("/dev/shm")


def folder_of(path: Path) -> FolderDestination:
    return FolderDestination("archive", path)


def test_an_instance_lands_by_study_series_and_instance(tmp_path):
    (instance,) = instances(tmp_path / "data", 1)
    archive = tmp_path / "archive"
    assert deliver_to_folder(folder_of(archive), instance.path) == DELIVERED
    header = pydicom.dcmread(instance.path, stop_before_pixels=True)
    expected = archive / header.StudyInstanceUID / header.SeriesInstanceUID / f"{header.SOPInstanceUID}.dcm"
    assert [path for path in archive.rglob("*") if path.is_file()] == [expected]
    assert expected.read_bytes() == instance.path.read_bytes()


def test_the_file_is_a_hard_link_on_the_same_file_system_and_a_second_delivery_replaces_it(tmp_path):
    (instance,) = instances(tmp_path / "data", 1)
    archive = tmp_path / "archive"
    assert deliver_to_folder(folder_of(archive), instance.path) == DELIVERED
    assert deliver_to_folder(folder_of(archive), instance.path) == DELIVERED  # a retry after a crash
    (stored,) = [path for path in archive.rglob("*") if path.is_file()]  # one file, no temporary left
    assert stored.stat().st_ino == instance.path.stat().st_ino


@pytest.mark.skipif(not SHARED_MEMORY.is_dir() or not os.access(SHARED_MEMORY, os.W_OK), reason="no /dev/shm")
def test_another_file_system_gets_a_copy(tmp_path):
    (instance,) = instances(tmp_path / "data", 1)
    if os.stat(SHARED_MEMORY).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is on the same file system as the test's directory")
    target = SHARED_MEMORY / f"router-test-{os.getpid()}" / "a" / "b" / "c.dcm"
    try:
        place(instance.path, target)
        assert target.read_bytes() == instance.path.read_bytes()
        assert target.stat().st_ino != instance.path.stat().st_ino
    finally:
        target.unlink(missing_ok=True)
        for directory in (target.parent, target.parent.parent, target.parent.parent.parent):
            directory.rmdir()


def test_a_header_without_the_uids_fails_permanently(tmp_path):
    dataset = store_data.small_ct()
    del dataset.SeriesInstanceUID
    path = tmp_path / "no-series.dcm"
    store_data.write_instance(dataset, store_data.SYNTAXES["explicit"], path, "small")
    outcome = deliver_to_folder(folder_of(tmp_path / "archive"), path)
    assert outcome.kind is OutcomeKind.PERMANENT and "SeriesInstanceUID" in outcome.reason


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_a_uid_that_would_escape_the_folder_fails_permanently(tmp_path):
    dataset = store_data.small_ct()
    dataset.StudyInstanceUID = "../../etc"
    path = tmp_path / "escape.dcm"
    store_data.write_instance(dataset, store_data.SYNTAXES["explicit"], path, "small")
    outcome = deliver_to_folder(folder_of(tmp_path / "archive"), path)
    assert outcome.kind is OutcomeKind.PERMANENT and "StudyInstanceUID" in outcome.reason
    assert not (tmp_path / "archive").exists()


def test_not_a_dicom_file_or_no_file_fails_permanently(tmp_path):
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not DICOM at all")
    assert deliver_to_folder(folder_of(tmp_path / "archive"), junk).kind is OutcomeKind.PERMANENT
    outcome = deliver_to_folder(folder_of(tmp_path / "archive"), tmp_path / "missing.dcm")
    assert outcome.kind is OutcomeKind.PERMANENT and "gone" in outcome.reason


def test_an_unwritable_folder_is_transient(tmp_path):
    (instance,) = instances(tmp_path / "data", 1)
    blocker = tmp_path / "archive"
    blocker.write_bytes(b"a file where the folder should be")
    outcome = deliver_to_folder(folder_of(blocker), instance.path)
    assert outcome.kind is OutcomeKind.TRANSIENT and "cannot write" in outcome.reason


@pytest.mark.parametrize("syntax", ["explicit", "deflated"])
def test_a_copy_with_morphs_is_written_morphed_in_its_own_syntax_and_the_spool_file_stays(tmp_path, syntax):
    (instance,) = instances(tmp_path / "data", 1, syntax)
    before = instance.path.read_bytes()
    morphs = (Morph(MorphKind.SET, "InstitutionName", "Main Hospital"), Morph(MorphKind.DELETE, "PatientName"))
    parcel = Parcel(instance.path, instance.sop_class_uid, instance.sop_instance_uid, instance.transfer_syntax, morphs)
    archive = tmp_path / "archive"
    assert FolderSender(folder_of(archive)).send(parcel) == DELIVERED
    (stored,) = [path for path in archive.rglob("*") if path.is_file()]
    copy, original = pydicom.dcmread(stored), pydicom.dcmread(instance.path)
    assert stored == archive / original.StudyInstanceUID / original.SeriesInstanceUID / f"{original.SOPInstanceUID}.dcm"
    assert copy.file_meta.TransferSyntaxUID == instance.transfer_syntax
    assert copy.InstitutionName == "Main Hospital" and "PatientName" not in copy
    assert copy.PixelData == original.PixelData
    assert instance.path.read_bytes() == before
