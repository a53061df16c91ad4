"""DIMSE status codes: their names and their class (Success, Warning, Failure, Cancel, Pending).

`classify` places any code, unknown ones included, by the ranges of PS3.7
Annex C. `describe` gives the text logs print ("0x0000 - Success"). Codes in
0xAxxx, 0xBxxx and 0xCxxx mean different things in different services, so
`describe(code, service)` names them by the PS3.4 table of the `Service` that
answered, whole ranges included (a Storage 0xC211 is "Error: cannot
understand"). The N-services (N-GET, N-SET, N-ACTION, N-CREATE, N-DELETE,
N-EVENT-REPORT) answer with the general codes of PS3.7 Annex C.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from pydicom.dataset import Dataset

from router.net import sop_class


class StatusClass(Enum):
    """The category a status code belongs to."""

    SUCCESS = "Success"
    WARNING = "Warning"
    FAILURE = "Failure"
    CANCEL = "Cancel"
    PENDING = "Pending"


class Service(Enum):
    """The service class whose PS3.4 status table names a code."""

    VERIFICATION = "Verification"
    STORAGE = "Storage"
    QR_FIND = "Query/Retrieve FIND"
    QR_MOVE = "Query/Retrieve MOVE"
    QR_GET = "Query/Retrieve GET"
    MODALITY_WORKLIST = "Modality Worklist FIND"
    STORAGE_COMMITMENT = "Storage Commitment"
    PROCEDURE_STEP = "Modality Performed Procedure Step"


# General codes (PS3.7 Annex C).
SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
NO_SUCH_SOP_INSTANCE = 0x0112
NO_SUCH_SOP_CLASS = 0x0118
CLASS_INSTANCE_CONFLICT = 0x0119
SOP_CLASS_NOT_SUPPORTED = 0x0122
NOT_AUTHORIZED = 0x0124
DUPLICATE_INVOCATION = 0x0210
UNRECOGNIZED_OPERATION = 0x0211
MISTYPED_ARGUMENT = 0x0212
RESOURCE_LIMITATION = 0x0213
CANCEL = 0xFE00
PENDING = 0xFF00
PENDING_WARNING = 0xFF01

# Service-specific codes (PS3.4); a range is named by its first code.
OUT_OF_RESOURCES = 0xA700  # Storage 0xA7xx; C-FIND
OUT_OF_RESOURCES_NUMBER_OF_MATCHES = 0xA701  # C-MOVE, C-GET
OUT_OF_RESOURCES_SUB_OPERATIONS = 0xA702  # C-MOVE, C-GET
MOVE_DESTINATION_UNKNOWN = 0xA801  # C-MOVE
DOES_NOT_MATCH_SOP_CLASS = 0xA900  # the data set (Storage 0xA9xx) or the identifier (Q/R)
CANNOT_UNDERSTAND = 0xC000  # Storage 0xCxxx
UNABLE_TO_PROCESS = 0xC000  # Q/R 0xCxxx
COERCION_OF_DATA_ELEMENTS = 0xB000  # Storage
SUB_OPERATIONS_WITH_FAILURES = 0xB000  # C-MOVE, C-GET
ELEMENTS_DISCARDED = 0xB006  # Storage
DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING = 0xB007  # Storage
DUPLICATE_TRANSACTION_UID = 0x0131  # Storage Commitment failure reason (PS3.3 C.14.1.1)

_WARNING_CODES = frozenset({0x0001, 0x0107, 0x0116})
_WARNING_RANGE = 0xB000
_RANGE_MASK = 0xF000

GENERAL_STATUS_NAMES: dict[int, str] = {
    0x0000: "Success",
    0x0001: "Warning: requested optional attributes are not supported",
    0x0105: "No such attribute",
    0x0106: "Invalid attribute value",
    0x0107: "Attribute list error",
    0x0110: "Processing failure",
    0x0111: "Duplicate SOP instance",
    0x0112: "No such SOP instance",
    0x0113: "No such event type",
    0x0114: "No such argument",
    0x0115: "Invalid argument value",
    0x0116: "Attribute value out of range",
    0x0117: "Invalid object instance",
    0x0118: "No such SOP class",
    0x0119: "Class-instance conflict",
    0x0120: "Missing attribute",
    0x0121: "Missing attribute value",
    0x0122: "Refused: SOP class not supported",
    0x0123: "No such action",
    0x0124: "Refused: not authorized",
    0x0210: "Duplicate invocation",
    0x0211: "Unrecognized operation",
    0x0212: "Mistyped argument",
    0x0213: "Resource limitation",
    0xFE00: "Cancel",
    0xFF00: "Pending",
    0xFF01: "Pending: one or more optional keys not supported",
}


@dataclass(frozen=True)
class StatusRange:
    """A block of codes a service names as one (e.g. Storage 0xA700-0xA7FF)."""

    first: int
    last: int
    name: str

    def __contains__(self, code: int) -> bool:
        return self.first <= code <= self.last


@dataclass(frozen=True)
class ServiceStatuses:
    """A service's own names: single codes first, then ranges; other codes keep their general name."""

    codes: Mapping[int, str] = field(default_factory=dict)
    ranges: tuple[StatusRange, ...] = ()

    def name(self, code: int) -> str | None:
        """This service's name for `code`, or None when the service gives it none."""
        if code in self.codes:
            return self.codes[code]
        return next((block.name for block in self.ranges if code in block), None)


_STORAGE = ServiceStatuses(  # PS3.4 B.2.3, Table B.2-1
    codes={
        COERCION_OF_DATA_ELEMENTS: "Warning: coercion of data elements",
        ELEMENTS_DISCARDED: "Warning: elements discarded",
        DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING: "Warning: data set does not match SOP class",
    },
    ranges=(
        StatusRange(0xA700, 0xA7FF, "Refused: out of resources"),
        StatusRange(0xA900, 0xA9FF, "Error: data set does not match SOP class"),
        StatusRange(0xC000, 0xCFFF, "Error: cannot understand"),
    ),
)

_UNABLE_TO_PROCESS = StatusRange(0xC000, 0xCFFF, "Failed: unable to process")
_IDENTIFIER_MISMATCH = "Failed: identifier does not match SOP class"

_FIND = ServiceStatuses(  # PS3.4 C.4.1.1.4; Modality Worklist K.4.1.1.4 is the same table
    codes={
        SUCCESS: "Success: matching complete",
        OUT_OF_RESOURCES: "Refused: out of resources",
        DOES_NOT_MATCH_SOP_CLASS: _IDENTIFIER_MISMATCH,
        CANCEL: "Cancel: matching terminated",
        PENDING: "Pending: match supplied, optional keys supported like required keys",
        PENDING_WARNING: "Pending: match supplied, one or more optional keys not supported",
    },
    ranges=(_UNABLE_TO_PROCESS,),
)

# Both retrieve services (PS3.4 C.4.2.1.5 and C.4.3.1.4), with the frame-level codes of PS3.4 Y.
_RETRIEVE_CODES: dict[int, str] = {
    SUCCESS: "Success: sub-operations complete, no failures",
    OUT_OF_RESOURCES_NUMBER_OF_MATCHES: "Refused: out of resources, unable to calculate number of matches",
    OUT_OF_RESOURCES_SUB_OPERATIONS: "Refused: out of resources, unable to perform sub-operations",
    DOES_NOT_MATCH_SOP_CLASS: _IDENTIFIER_MISMATCH,
    0xAA00: "Failed: none of the frames requested were found in the SOP instance",
    0xAA01: "Failed: unable to create new object for this SOP class",
    0xAA02: "Failed: unable to extract frames",
    0xAA03: "Failed: time-based request received for a non-time-based original SOP instance",
    0xAA04: "Failed: invalid request",
    CANCEL: "Cancel: sub-operations terminated",
    PENDING: "Pending: sub-operations are continuing",
}

_MOVE = ServiceStatuses(
    codes={
        **_RETRIEVE_CODES,
        MOVE_DESTINATION_UNKNOWN: "Refused: move destination unknown",
        SUB_OPERATIONS_WITH_FAILURES: "Warning: sub-operations complete, one or more failures",
    },
    ranges=(_UNABLE_TO_PROCESS,),
)

_GET = ServiceStatuses(
    codes={
        **_RETRIEVE_CODES,
        SUB_OPERATIONS_WITH_FAILURES: "Warning: sub-operations complete, one or more failures or warnings",
    },
    ranges=(_UNABLE_TO_PROCESS,),
)

_STORAGE_COMMITMENT = ServiceStatuses(  # N-ACTION statuses and the Failure Reason values (PS3.3 C.14.1.1)
    codes={
        NO_SUCH_SOP_INSTANCE: "No such object instance",
        SOP_CLASS_NOT_SUPPORTED: "Referenced SOP class not supported",
        DUPLICATE_TRANSACTION_UID: "Duplicate transaction UID",
    },
)

_PROCEDURE_STEP = ServiceStatuses(  # PS3.4 F.7.2 (N-SET on a completed or discontinued step)
    codes={PROCESSING_FAILURE: "Processing failure: performed procedure step object may no longer be updated"},
)

SERVICE_STATUS_NAMES: dict[Service, ServiceStatuses] = {
    Service.VERIFICATION: ServiceStatuses(),  # PS3.4 A: the general codes only
    Service.STORAGE: _STORAGE,
    Service.QR_FIND: _FIND,
    Service.QR_MOVE: _MOVE,
    Service.QR_GET: _GET,
    Service.MODALITY_WORKLIST: _FIND,
    Service.STORAGE_COMMITMENT: _STORAGE_COMMITMENT,
    Service.PROCEDURE_STEP: _PROCEDURE_STEP,
}

_SERVICE_OF_SOP_CLASS: dict[str, Service] = {
    sop_class.Verification: Service.VERIFICATION,
    **{uid: Service.STORAGE for uid in sop_class.STORAGE_SOP_CLASSES},
    **{uid: Service.QR_FIND for uid in sop_class.QR_FIND_SOP_CLASSES},
    **{uid: Service.QR_MOVE for uid in sop_class.QR_MOVE_SOP_CLASSES},
    **{uid: Service.QR_GET for uid in sop_class.QR_GET_SOP_CLASSES},
    sop_class.ModalityWorklistInformationModelFind: Service.MODALITY_WORKLIST,
    sop_class.StorageCommitmentPushModel: Service.STORAGE_COMMITMENT,
    sop_class.ModalityPerformedProcedureStep: Service.PROCEDURE_STEP,
}


def classify(code: int) -> StatusClass:
    """The class of any status code; codes outside every defined range count as failures."""
    if code == SUCCESS:
        return StatusClass.SUCCESS
    if code in (PENDING, PENDING_WARNING):
        return StatusClass.PENDING
    if code == CANCEL:
        return StatusClass.CANCEL
    if code in _WARNING_CODES or code & _RANGE_MASK == _WARNING_RANGE:
        return StatusClass.WARNING
    return StatusClass.FAILURE


def is_final(code: int) -> bool:
    """True if a response with this status ends its request (anything but Pending)."""
    return code not in (PENDING, PENDING_WARNING)


def service_of(sop_class_uid: str) -> Service | None:
    """The service whose status table applies to a SOP class ('CT Image Storage' -> STORAGE), else None."""
    return _SERVICE_OF_SOP_CLASS.get(sop_class_uid)


def status_name(code: int, service: Service | str | None = None) -> str:
    """The name of `code`: the service's own if it has one, else the general name, else the class."""
    if service is not None:
        name = SERVICE_STATUS_NAMES[_as_service(service)].name(code)
        if name is not None:
            return name
    return GENERAL_STATUS_NAMES.get(code, classify(code).value)


def describe(code: int, service: Service | str | None = None) -> str:
    """'0x0000 - Success', '0xC123 - Failure'; with a service, '0xC211 - Error: cannot understand'."""
    return f"0x{code:04X} - {status_name(code, service)}"


def _as_service(service: Service | str) -> Service:
    """A Service from itself, its member name ('storage', 'QR_FIND') or its value ('Storage')."""
    if isinstance(service, Service):
        return service
    for member in Service:
        if service.upper() in (member.name, member.value.upper()):
            return member
    known = ", ".join(member.name.lower() for member in Service)
    raise ValueError(f"Unknown service {service!r}: expected one of {known}")


MAX_ERROR_COMMENT = 64  # characters of Error Comment (0000,0902), an LO


def status_of(answer: object, missing: int) -> int:
    """The status a handler answered: an int, or a Dataset whose Status is used (`missing` if absent)."""
    if isinstance(answer, Dataset):
        return int(answer.get("Status", missing))
    return int(answer)  # type: ignore[call-overload]


def comment_of(answer: object) -> str:
    """The Error Comment a handler answered with its status Dataset ("" with an int), cut to the
    64 characters the element holds."""
    if not isinstance(answer, Dataset):
        return ""
    return str(answer.get("ErrorComment", ""))[:MAX_ERROR_COMMENT]
