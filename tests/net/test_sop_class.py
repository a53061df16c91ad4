"""Named SOP class UIDs (router.net.sop_class): counts, UIDs, keywords, pynetdicom's names."""

from __future__ import annotations

import pytest
from pydicom.uid import UID, UID_dictionary

from router.net import sop_class
from router.net.sop_class import (
    QR_FIND_SOP_CLASSES,
    QR_GET_SOP_CLASSES,
    QR_MOVE_SOP_CLASSES,
    QR_SOP_CLASSES,
    RETIRED_STORAGE_SOP_CLASSES,
    STORAGE_SOP_CLASSES,
    CTImageStorage,
    is_storage,
    keyword_to_uid,
    uid_to_keyword,
)

CURRENT_STORAGE_COUNT = 188
RETIRED_STORAGE_COUNT = 20
# PS3.6 Storage SOP classes newer than pydicom 3.0's dictionary (pynetdicom 3.0 lists them).
NEWER_THAN_PYDICOM = {
    "1.2.840.10008.5.1.4.1.1.9.100.1": "WaveformPresentationStateStorage",
    "1.2.840.10008.5.1.4.1.1.9.100.2": "WaveformAcquisitionPresentationStateStorage",
    "1.2.840.10008.5.1.4.1.1.66.7": "LabelMapSegmentationStorage",
    "1.2.840.10008.5.1.4.1.1.66.8": "HeightMapSegmentationStorage",
}
# SOP classes whose name says "Storage" but which are not stored with C-STORE over a network.
NOT_STORAGE = {
    "1.2.840.10008.1.20.1": "Storage Commitment Push Model",
    "1.2.840.10008.1.20.2": "Storage Commitment Pull Model (retired)",
    "1.2.840.10008.1.3.10": "Media Storage Directory Storage (DICOMDIR, media only)",
}
# pynetdicom's spelling -> PS3.6 keyword, for the names that differ.
PYNETDICOM_ALIASES = {
    "ModalityWorklistInformationFind": "ModalityWorklistInformationModelFind",
    "PseudoColorSoftcopyPresentationStageStorage": "PseudoColorSoftcopyPresentationStateStorage",
    "VariableModalityLUTSoftcopyPresentationStageStorage": "VariableModalityLUTSoftcopyPresentationStateStorage",
    "OphthlamicOpticalCoherenceTomographyBscanVolumeAnalysisStorage": (
        "OphthalmicOpticalCoherenceTomographyBscanVolumeAnalysisStorage"
    ),
    "RoboticArmRadiationRecordStorage": "RoboticRadiationRecordStorage",
    "RTBrachyApplicationSetupDeliveryInstructionsStorage": "RTBrachyApplicationSetupDeliveryInstructionStorage",
}

# Reference document, section 5.1 (context and service UIDs).
REFERENCE_SERVICE_UIDS = [
    ("Verification", "1.2.840.10008.1.1"),
    ("StorageCommitmentPushModel", "1.2.840.10008.1.20.1"),
    ("StorageCommitmentPushModelInstance", "1.2.840.10008.1.20.1.1"),
    ("ModalityPerformedProcedureStep", "1.2.840.10008.3.1.2.3.3"),
    ("ModalityWorklistInformationFind", "1.2.840.10008.5.1.4.31"),
    ("PatientRootQueryRetrieveInformationModelFind", "1.2.840.10008.5.1.4.1.2.1.1"),
    ("PatientRootQueryRetrieveInformationModelMove", "1.2.840.10008.5.1.4.1.2.1.2"),
    ("PatientRootQueryRetrieveInformationModelGet", "1.2.840.10008.5.1.4.1.2.1.3"),
    ("StudyRootQueryRetrieveInformationModelFind", "1.2.840.10008.5.1.4.1.2.2.1"),
    ("StudyRootQueryRetrieveInformationModelMove", "1.2.840.10008.5.1.4.1.2.2.2"),
    ("StudyRootQueryRetrieveInformationModelGet", "1.2.840.10008.5.1.4.1.2.2.3"),
    ("PatientStudyOnlyQueryRetrieveInformationModelFind", "1.2.840.10008.5.1.4.1.2.3.1"),
    ("PatientStudyOnlyQueryRetrieveInformationModelMove", "1.2.840.10008.5.1.4.1.2.3.2"),
    ("PatientStudyOnlyQueryRetrieveInformationModelGet", "1.2.840.10008.5.1.4.1.2.3.3"),
    ("CompositeInstanceRootRetrieveMove", "1.2.840.10008.5.1.4.1.2.4.2"),
    ("CompositeInstanceRootRetrieveGet", "1.2.840.10008.5.1.4.1.2.4.3"),
    ("CompositeInstanceRetrieveWithoutBulkDataGet", "1.2.840.10008.5.1.4.1.2.5.3"),
]

# Reference document, section 5.3 (a sample of the Storage SOP classes), plus its retired example.
REFERENCE_STORAGE_UIDS = [
    ("ComputedRadiographyImageStorage", "1.2.840.10008.5.1.4.1.1.1"),
    ("DigitalXRayImageStorageForPresentation", "1.2.840.10008.5.1.4.1.1.1.1"),
    ("DigitalMammographyXRayImageStorageForProcessing", "1.2.840.10008.5.1.4.1.1.1.2.1"),
    ("CTImageStorage", "1.2.840.10008.5.1.4.1.1.2"),
    ("EnhancedCTImageStorage", "1.2.840.10008.5.1.4.1.1.2.1"),
    ("LegacyConvertedEnhancedCTImageStorage", "1.2.840.10008.5.1.4.1.1.2.2"),
    ("UltrasoundMultiFrameImageStorage", "1.2.840.10008.5.1.4.1.1.3.1"),
    ("MRImageStorage", "1.2.840.10008.5.1.4.1.1.4"),
    ("UltrasoundImageStorage", "1.2.840.10008.5.1.4.1.1.6.1"),
    ("SecondaryCaptureImageStorage", "1.2.840.10008.5.1.4.1.1.7"),
    ("MultiFrameTrueColorSecondaryCaptureImageStorage", "1.2.840.10008.5.1.4.1.1.7.4"),
    ("TwelveLeadECGWaveformStorage", "1.2.840.10008.5.1.4.1.1.9.1.1"),
    ("GrayscaleSoftcopyPresentationStateStorage", "1.2.840.10008.5.1.4.1.1.11.1"),
    ("XRayAngiographicImageStorage", "1.2.840.10008.5.1.4.1.1.12.1"),
    ("BreastTomosynthesisImageStorage", "1.2.840.10008.5.1.4.1.1.13.1.3"),
    ("NuclearMedicineImageStorage", "1.2.840.10008.5.1.4.1.1.20"),
    ("SegmentationStorage", "1.2.840.10008.5.1.4.1.1.66.4"),
    ("VLWholeSlideMicroscopyImageStorage", "1.2.840.10008.5.1.4.1.1.77.1.6"),
    ("BasicTextSRStorage", "1.2.840.10008.5.1.4.1.1.88.11"),
    ("KeyObjectSelectionDocumentStorage", "1.2.840.10008.5.1.4.1.1.88.59"),
    ("XRayRadiationDoseSRStorage", "1.2.840.10008.5.1.4.1.1.88.67"),
    ("EncapsulatedPDFStorage", "1.2.840.10008.5.1.4.1.1.104.1"),
    ("PositronEmissionTomographyImageStorage", "1.2.840.10008.5.1.4.1.1.128"),
    ("EnhancedPETImageStorage", "1.2.840.10008.5.1.4.1.1.130"),
    ("RTImageStorage", "1.2.840.10008.5.1.4.1.1.481.1"),
    ("RTDoseStorage", "1.2.840.10008.5.1.4.1.1.481.2"),
    ("RTStructureSetStorage", "1.2.840.10008.5.1.4.1.1.481.3"),
    ("RTPlanStorage", "1.2.840.10008.5.1.4.1.1.481.5"),
    ("RTIonBeamsTreatmentRecordStorage", "1.2.840.10008.5.1.4.1.1.481.9"),
    ("RTBeamsDeliveryInstructionStorage", "1.2.840.10008.5.1.4.34.7"),
    ("HangingProtocolStorage", "1.2.840.10008.5.1.4.38.1"),
    ("UltrasoundMultiFrameImageStorageRetired", "1.2.840.10008.5.1.4.1.1.3"),
]


def pydicom_storage_classes() -> dict[str, tuple]:
    """Storage SOP classes by the rule the table was generated with, from pydicom's dictionary."""
    return {
        uid: entry
        for uid, entry in UID_dictionary.items()
        if entry[1] == "SOP Class" and "Storage" in entry[0] and uid not in NOT_STORAGE
    }


def test_storage_counts_are_sensible():
    assert len(STORAGE_SOP_CLASSES) == CURRENT_STORAGE_COUNT + RETIRED_STORAGE_COUNT
    assert len(RETIRED_STORAGE_SOP_CLASSES) == RETIRED_STORAGE_COUNT
    assert len(STORAGE_SOP_CLASSES) > 150


def test_storage_classes_are_unique_uids_current_first():
    assert len(set(STORAGE_SOP_CLASSES)) == len(STORAGE_SOP_CLASSES)
    assert all(isinstance(uid, UID) and uid.is_valid for uid in STORAGE_SOP_CLASSES)
    assert STORAGE_SOP_CLASSES[-RETIRED_STORAGE_COUNT:] == RETIRED_STORAGE_SOP_CLASSES


def test_every_storage_class_in_pydicom_is_here_and_only_newer_ones_are_extra():
    known = pydicom_storage_classes()
    assert set(known) <= set(STORAGE_SOP_CLASSES)
    assert set(STORAGE_SOP_CLASSES) - set(known) == set(NEWER_THAN_PYDICOM)


def test_retired_marking_follows_pydicom():
    known = pydicom_storage_classes()
    retired = {uid for uid, entry in known.items() if entry[3]}
    assert set(RETIRED_STORAGE_SOP_CLASSES) == retired


def test_every_storage_class_has_a_keyword_that_says_storage():
    for uid in STORAGE_SOP_CLASSES:
        keyword = uid_to_keyword(uid)
        assert keyword is not None and "Storage" in keyword, uid
        assert keyword_to_uid(keyword) == uid
        assert getattr(sop_class, keyword) == uid


def test_keywords_are_pydicoms_and_names_exist_for_all_but_the_newer_ones():
    for uid in STORAGE_SOP_CLASSES:
        if uid in NEWER_THAN_PYDICOM:
            assert uid_to_keyword(uid) == NEWER_THAN_PYDICOM[uid]
        else:
            assert uid_to_keyword(uid) == UID(uid).keyword
            assert UID(uid).name


def test_no_uid_has_two_names_except_the_pynetdicom_aliases():
    names_by_uid: dict[str, list[str]] = {}
    for name, value in vars(sop_class).items():
        if isinstance(value, UID):
            names_by_uid.setdefault(value, []).append(name)
    shared = {uid: names for uid, names in names_by_uid.items() if len(names) > 1}
    assert sorted(sorted(names) for names in shared.values()) == sorted(
        sorted([alias, keyword]) for alias, keyword in PYNETDICOM_ALIASES.items()
    )


@pytest.mark.parametrize("alias, keyword", PYNETDICOM_ALIASES.items())
def test_pynetdicom_aliases_resolve_to_the_ps36_keyword(alias, keyword):
    assert getattr(sop_class, alias) == getattr(sop_class, keyword)
    assert keyword_to_uid(alias) == keyword_to_uid(keyword)
    assert uid_to_keyword(getattr(sop_class, alias)) == keyword


@pytest.mark.parametrize("keyword, uid", REFERENCE_SERVICE_UIDS + REFERENCE_STORAGE_UIDS)
def test_uids_match_the_reference_document(keyword, uid):
    assert getattr(sop_class, keyword) == uid
    assert isinstance(getattr(sop_class, keyword), UID)


@pytest.mark.parametrize("keyword, uid", REFERENCE_STORAGE_UIDS)
def test_reference_storage_classes_are_storage(keyword, uid):
    assert is_storage(uid)
    assert uid in STORAGE_SOP_CLASSES


def test_the_import_named_in_the_docs_works():
    assert CTImageStorage == "1.2.840.10008.5.1.4.1.1.2"
    assert CTImageStorage.name == "CT Image Storage"


@pytest.mark.parametrize("uid", [sop_class.Verification, sop_class.StorageCommitmentPushModel, *NOT_STORAGE])
def test_not_storage(uid):
    assert not is_storage(uid)


def test_retired_examples_are_marked():
    assert sop_class.UltrasoundMultiFrameImageStorageRetired in RETIRED_STORAGE_SOP_CLASSES
    assert sop_class.HardcopyColorImageStorage in RETIRED_STORAGE_SOP_CLASSES
    assert CTImageStorage not in RETIRED_STORAGE_SOP_CLASSES


def test_query_retrieve_classes():
    assert len(QR_FIND_SOP_CLASSES) == 3
    assert len(QR_MOVE_SOP_CLASSES) == 4
    assert len(QR_GET_SOP_CLASSES) == 5
    assert QR_SOP_CLASSES == QR_FIND_SOP_CLASSES + QR_MOVE_SOP_CLASSES + QR_GET_SOP_CLASSES
    assert len(set(QR_SOP_CLASSES)) == len(QR_SOP_CLASSES)
    assert all(UID(uid).keyword.endswith("Find") for uid in QR_FIND_SOP_CLASSES)
    assert all(UID(uid).keyword.endswith("Move") for uid in QR_MOVE_SOP_CLASSES)
    assert all(UID(uid).keyword.endswith("Get") for uid in QR_GET_SOP_CLASSES)
    assert not set(QR_SOP_CLASSES) & set(STORAGE_SOP_CLASSES)


def test_well_known_instance_is_not_a_sop_class_but_is_named():
    instance = sop_class.StorageCommitmentPushModelInstance
    assert UID(instance).name == "Storage Commitment Push Model SOP Instance"
    assert uid_to_keyword(instance) == "StorageCommitmentPushModelInstance"


def test_lookups_of_unknown_values():
    assert uid_to_keyword("1.2.3.4") is None
    assert keyword_to_uid("NoSuchStorage") is None
    assert keyword_to_uid("STORAGE_SOP_CLASSES") is None


def test_every_pynetdicom_name_for_our_classes_is_importable_with_the_same_uid():
    pynetdicom_sop_class = pytest.importorskip("pynetdicom.sop_class")
    ours = set(STORAGE_SOP_CLASSES) | set(QR_SOP_CLASSES) | {
        sop_class.Verification,
        sop_class.StorageCommitmentPushModel,
        sop_class.ModalityWorklistInformationModelFind,
        sop_class.RepositoryQuery,
    }
    checked = 0
    for name, value in vars(pynetdicom_sop_class).items():
        if isinstance(value, pynetdicom_sop_class.SOPClass) and value in ours:
            assert getattr(sop_class, name) == value, name
            checked += 1
    assert checked > 150


def test_every_pynetdicom_storage_class_is_a_storage_class_here():
    pynetdicom_sop_class = pytest.importorskip("pynetdicom.sop_class")
    storage_service = pytest.importorskip("pynetdicom.service_class").StorageServiceClass
    for name, value in vars(pynetdicom_sop_class).items():
        if isinstance(value, pynetdicom_sop_class.SOPClass) and value.service_class is storage_service:
            assert is_storage(value), name


@pytest.mark.parametrize(
    "uid, expected",
    [
        ("1.2.840.113619.4.030", True),  # a vendor's: outside the DICOM root, with a leading zero
        ("1.3.12.2.1107.5.9.1", True),  # another vendor's
        ("1.2.840.10008.5.1.4.1.1.999", True),  # under the storage arc, newer than the table
        ("1.2.840.10008.5.1.4.1.2.1.1", False),  # Q/R: the standard's, outside the storage arc
        ("1.02.840.10008.1.1", False),  # Verification written with a leading zero: still the standard's
        ("1.2.840.10008.1.1", False),
    ],
)
def test_may_be_storage(uid, expected):
    assert sop_class.may_be_storage(uid) is expected
