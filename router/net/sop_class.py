"""Named SOP class UIDs, as `pydicom.uid.UID` values (e.g. `sop_class.CTImageStorage`).

Each name is the PS3.6 keyword, which is also pynetdicom's name for it; where
pynetdicom spells a class differently, its spelling is an alias for the same
UID (listed at the end). The Storage SOP classes are a long table of their own
in `router.net._storage_classes`, re-exported here.

Collections: `STORAGE_SOP_CLASSES` (with `RETIRED_STORAGE_SOP_CLASSES`, its
retired part) and `QR_SOP_CLASSES` (split by service into `QR_FIND_SOP_CLASSES`,
`QR_MOVE_SOP_CLASSES`, `QR_GET_SOP_CLASSES`). Lookups: `uid_to_keyword`,
`keyword_to_uid`, `is_storage`, `may_be_storage`.
"""

from __future__ import annotations

from pydicom.uid import UID

# Every Storage SOP class by its keyword, and STORAGE_SOP_CLASSES / RETIRED_STORAGE_SOP_CLASSES.
from router.net._storage_classes import *
from router.net._storage_classes import (
    STORAGE_SOP_CLASSES,
    OphthalmicOpticalCoherenceTomographyBscanVolumeAnalysisStorage,
    PseudoColorSoftcopyPresentationStateStorage,
    RoboticRadiationRecordStorage,
    RTBrachyApplicationSetupDeliveryInstructionStorage,
    VariableModalityLUTSoftcopyPresentationStateStorage,
)

# PS3.4 A: Verification.
Verification = UID("1.2.840.10008.1.1")

# PS3.4 J: Storage Commitment.
StorageCommitmentPushModel = UID("1.2.840.10008.1.20.1")
StorageCommitmentPushModelInstance = UID("1.2.840.10008.1.20.1.1")
"""The well-known SOP instance that every Storage Commitment N-ACTION and N-EVENT-REPORT addresses."""

# PS3.4 C: Query/Retrieve.
PatientRootQueryRetrieveInformationModelFind = UID("1.2.840.10008.5.1.4.1.2.1.1")
PatientRootQueryRetrieveInformationModelMove = UID("1.2.840.10008.5.1.4.1.2.1.2")
PatientRootQueryRetrieveInformationModelGet = UID("1.2.840.10008.5.1.4.1.2.1.3")
StudyRootQueryRetrieveInformationModelFind = UID("1.2.840.10008.5.1.4.1.2.2.1")
StudyRootQueryRetrieveInformationModelMove = UID("1.2.840.10008.5.1.4.1.2.2.2")
StudyRootQueryRetrieveInformationModelGet = UID("1.2.840.10008.5.1.4.1.2.2.3")
PatientStudyOnlyQueryRetrieveInformationModelFind = UID("1.2.840.10008.5.1.4.1.2.3.1")  # retired
PatientStudyOnlyQueryRetrieveInformationModelMove = UID("1.2.840.10008.5.1.4.1.2.3.2")  # retired
PatientStudyOnlyQueryRetrieveInformationModelGet = UID("1.2.840.10008.5.1.4.1.2.3.3")  # retired
CompositeInstanceRootRetrieveMove = UID("1.2.840.10008.5.1.4.1.2.4.2")
CompositeInstanceRootRetrieveGet = UID("1.2.840.10008.5.1.4.1.2.4.3")
CompositeInstanceRetrieveWithoutBulkDataGet = UID("1.2.840.10008.5.1.4.1.2.5.3")

# Repository Query: a C-FIND over an inventory; pynetdicom proposes it with the Q/R contexts.
RepositoryQuery = UID("1.2.840.10008.5.1.4.1.1.201.6")

# PS3.4 K: Basic Worklist Management.
ModalityWorklistInformationModelFind = UID("1.2.840.10008.5.1.4.31")

# PS3.4 F: Modality Performed Procedure Step.
ModalityPerformedProcedureStep = UID("1.2.840.10008.3.1.2.3.3")
ModalityPerformedProcedureStepRetrieve = UID("1.2.840.10008.3.1.2.3.4")
ModalityPerformedProcedureStepNotification = UID("1.2.840.10008.3.1.2.3.5")

# pynetdicom's spellings where they differ from the PS3.6 keyword: aliases, same UID.
ModalityWorklistInformationFind = ModalityWorklistInformationModelFind
PseudoColorSoftcopyPresentationStageStorage = PseudoColorSoftcopyPresentationStateStorage
VariableModalityLUTSoftcopyPresentationStageStorage = VariableModalityLUTSoftcopyPresentationStateStorage
OphthlamicOpticalCoherenceTomographyBscanVolumeAnalysisStorage = (
    OphthalmicOpticalCoherenceTomographyBscanVolumeAnalysisStorage
)
RoboticArmRadiationRecordStorage = RoboticRadiationRecordStorage
RTBrachyApplicationSetupDeliveryInstructionsStorage = RTBrachyApplicationSetupDeliveryInstructionStorage

QR_FIND_SOP_CLASSES: tuple[UID, ...] = (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    PatientStudyOnlyQueryRetrieveInformationModelFind,
)
QR_MOVE_SOP_CLASSES: tuple[UID, ...] = (
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelMove,
    PatientStudyOnlyQueryRetrieveInformationModelMove,
    CompositeInstanceRootRetrieveMove,
)
QR_GET_SOP_CLASSES: tuple[UID, ...] = (
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelGet,
    PatientStudyOnlyQueryRetrieveInformationModelGet,
    CompositeInstanceRootRetrieveGet,
    CompositeInstanceRetrieveWithoutBulkDataGet,
)
QR_SOP_CLASSES: tuple[UID, ...] = QR_FIND_SOP_CLASSES + QR_MOVE_SOP_CLASSES + QR_GET_SOP_CLASSES
"""The Query/Retrieve SOP classes of PS3.4 Annex C (FIND, then MOVE, then GET)."""

_UID_BY_KEYWORD: dict[str, UID] = {name: value for name, value in globals().items() if isinstance(value, UID)}
# Walking the names backwards lets the first name given to a UID win: the keyword, not an alias.
_KEYWORD_BY_UID: dict[str, str] = {value: name for name, value in reversed(_UID_BY_KEYWORD.items())}
_STORAGE: frozenset[str] = frozenset(STORAGE_SOP_CLASSES)


def uid_to_keyword(uid: str) -> str | None:
    """The PS3.6 keyword of a UID named here ('1.2.840.10008.5.1.4.1.1.2' -> 'CTImageStorage'), else None."""
    return _KEYWORD_BY_UID.get(uid)


def keyword_to_uid(keyword: str) -> UID | None:
    """The UID of a keyword or pynetdicom alias named here ('CTImageStorage' -> its UID), else None."""
    return _UID_BY_KEYWORD.get(keyword)


def is_storage(uid: str) -> bool:
    """True if `uid` is a Storage SOP class (current or retired)."""
    return uid in _STORAGE


_DICOM_ROOT = "1.2.840.10008."
_STORAGE_ARC = "1.2.840.10008.5.1.4.1.1."  # where the standard puts (nearly) all its Storage SOP classes


def may_be_storage(uid: str) -> bool:
    """True if `uid` may be a Storage SOP class this table does not name: any class outside the
    DICOM root (a private one: which service it belongs to cannot be told from its UID), or one of
    a later edition of the standard under its storage arc. Leading zeros, which some peers write,
    do not hide a standard UID."""
    uid = ".".join(component.lstrip("0") or "0" for component in uid.split("."))
    return not uid.startswith(_DICOM_ROOT) or uid.startswith(_STORAGE_ARC)
