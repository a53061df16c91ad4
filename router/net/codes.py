"""Wire-level codes of the DICOM Upper Layer (PS3.8 9.3, PS3.7 Annex D.3.3).

This module owns every number that appears on the wire as a code: PDU and item types, reject and
abort sources and reasons, presentation-context results, user identity types, and the few fixed
sizes and bits of the PDU framing. It imports nothing from the rest of ``router.net``.

Every enum here is an :class:`OpenIntEnum`: a value the standard reserves (or a future edition
adds) never makes decoding fail; it becomes a pseudo-member named ``RESERVED_<n>`` that still
compares equal to its integer.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "APPLICATION_CONTEXT_NAME",
    "HEADER_LENGTH",
    "ITEM_HEADER_LENGTH",
    "MCH_COMMAND",
    "MCH_LAST",
    "PDV_HEADER_LENGTH",
    "PROTOCOL_VERSION",
    "AbortReason",
    "AbortSource",
    "AcseRejectReason",
    "ContextResult",
    "ItemType",
    "OpenIntEnum",
    "PduType",
    "PresentationRejectReason",
    "RejectReason",
    "RejectResult",
    "RejectSource",
    "UserIdentityType",
    "UserRejectReason",
    "reject_reason_enum",
    "reject_reason_text",
]

#: The DICOM application context name (PS3.7 A.2.1), the only one defined.
APPLICATION_CONTEXT_NAME = "1.2.840.10008.3.1.1.1"
#: Protocol-version field of A-ASSOCIATE-RQ/AC: bit 0 set.
PROTOCOL_VERSION = 1
#: Every PDU starts with type(1) reserved(1) length(4).
HEADER_LENGTH = 6
#: Every variable item and sub-item starts with type(1) reserved(1) length(2).
ITEM_HEADER_LENGTH = 4
#: A PDV item starts with item-length(4) context-id(1) message-control-header(1).
PDV_HEADER_LENGTH = 6
#: Message control header bit 0: the fragment is a command (else a data set).
MCH_COMMAND = 0x01
#: Message control header bit 1: the fragment is the last of its command or data set.
MCH_LAST = 0x02


class OpenIntEnum(IntEnum):
    """An ``IntEnum`` that keeps unknown values as ``RESERVED_<n>`` pseudo-members."""

    @classmethod
    def _missing_(cls, value: object) -> OpenIntEnum | None:
        if not isinstance(value, int):
            return None
        pseudo = int.__new__(cls, value)
        pseudo._name_ = f"RESERVED_{value}"
        pseudo._value_ = value
        # Cache it like enum.Flag does; wire codes are bytes, so this stays small.
        return cls._value2member_map_.setdefault(value, pseudo)

    @classmethod
    def of(cls, value: int) -> OpenIntEnum:
        """The member for `value`, as `cls(value)` but without the enum call on known values
        (it costs nearly a microsecond, and some are decoded for every message)."""
        member = cls._value2member_map_.get(value)
        return cls(value) if member is None else member  # type: ignore[return-value]


class PduType(OpenIntEnum):
    """PDU-type byte (PS3.8 9.3.1)."""

    ASSOCIATE_RQ = 0x01
    ASSOCIATE_AC = 0x02
    ASSOCIATE_RJ = 0x03
    P_DATA_TF = 0x04
    RELEASE_RQ = 0x05
    RELEASE_RP = 0x06
    ABORT = 0x07


class ItemType(OpenIntEnum):
    """Item-type byte of variable items and user-information sub-items."""

    APPLICATION_CONTEXT = 0x10
    PRESENTATION_CONTEXT_RQ = 0x20
    PRESENTATION_CONTEXT_AC = 0x21
    ABSTRACT_SYNTAX = 0x30
    TRANSFER_SYNTAX = 0x40
    USER_INFORMATION = 0x50
    MAXIMUM_LENGTH = 0x51
    IMPLEMENTATION_CLASS_UID = 0x52
    ASYNC_OPERATIONS_WINDOW = 0x53
    ROLE_SELECTION = 0x54
    IMPLEMENTATION_VERSION_NAME = 0x55
    SOP_CLASS_EXTENDED = 0x56
    SOP_CLASS_COMMON_EXTENDED = 0x57
    USER_IDENTITY_RQ = 0x58
    USER_IDENTITY_AC = 0x59


class RejectResult(OpenIntEnum):
    """A-ASSOCIATE-RJ result (PS3.8 Table 9-21)."""

    PERMANENT = 1
    TRANSIENT = 2


class RejectSource(OpenIntEnum):
    """A-ASSOCIATE-RJ source (PS3.8 Table 9-21)."""

    SERVICE_USER = 1
    SERVICE_PROVIDER_ACSE = 2
    SERVICE_PROVIDER_PRESENTATION = 3


class RejectReason(OpenIntEnum):
    """A-ASSOCIATE-RJ reasons when the source is the service-user (source 1)."""

    USER_NO_REASON = 1
    APPLICATION_CONTEXT_NOT_SUPPORTED = 2
    CALLING_AE_NOT_RECOGNIZED = 3
    CALLED_AE_NOT_RECOGNIZED = 7


#: The same enum under a name that says which source it belongs to.
UserRejectReason = RejectReason


class AcseRejectReason(OpenIntEnum):
    """A-ASSOCIATE-RJ reasons when the source is the ACSE service-provider (source 2)."""

    PROVIDER_NO_REASON = 1
    PROTOCOL_VERSION_NOT_SUPPORTED = 2


class PresentationRejectReason(OpenIntEnum):
    """A-ASSOCIATE-RJ reasons when the source is the presentation service-provider (source 3)."""

    TEMPORARY_CONGESTION = 1
    LOCAL_LIMIT_EXCEEDED = 2


_REASON_ENUMS: dict[int, type[OpenIntEnum]] = {
    RejectSource.SERVICE_USER: RejectReason,
    RejectSource.SERVICE_PROVIDER_ACSE: AcseRejectReason,
    RejectSource.SERVICE_PROVIDER_PRESENTATION: PresentationRejectReason,
}

_REJECT_REASON_TEXT: dict[tuple[int, int], str] = {
    (RejectSource.SERVICE_USER, RejectReason.USER_NO_REASON): "no-reason-given",
    (RejectSource.SERVICE_USER, RejectReason.APPLICATION_CONTEXT_NOT_SUPPORTED): (
        "application-context-name-not-supported"
    ),
    (RejectSource.SERVICE_USER, RejectReason.CALLING_AE_NOT_RECOGNIZED): (
        "calling-AE-title-not-recognized"
    ),
    (RejectSource.SERVICE_USER, RejectReason.CALLED_AE_NOT_RECOGNIZED): (
        "called-AE-title-not-recognized"
    ),
    (RejectSource.SERVICE_PROVIDER_ACSE, AcseRejectReason.PROVIDER_NO_REASON): "no-reason-given",
    (RejectSource.SERVICE_PROVIDER_ACSE, AcseRejectReason.PROTOCOL_VERSION_NOT_SUPPORTED): (
        "protocol-version-not-supported"
    ),
    (RejectSource.SERVICE_PROVIDER_PRESENTATION, PresentationRejectReason.TEMPORARY_CONGESTION): (
        "temporary-congestion"
    ),
    (RejectSource.SERVICE_PROVIDER_PRESENTATION, PresentationRejectReason.LOCAL_LIMIT_EXCEEDED): (
        "local-limit-exceeded"
    ),
}


def reject_reason_enum(source: int, reason: int) -> int:
    """Return ``reason`` typed by the enum of ``source``; a plain int for an unknown source."""
    enum_type = _REASON_ENUMS.get(source)
    return int(reason) if enum_type is None else enum_type(reason)


def reject_reason_text(source: int, reason: int) -> str:
    """Return the standard wording of an A-ASSOCIATE-RJ reason, or ``"reserved (n)"``."""
    return _REJECT_REASON_TEXT.get((source, reason), f"reserved ({int(reason)})")


class AbortSource(OpenIntEnum):
    """A-ABORT source (PS3.8 Table 9-26)."""

    SERVICE_USER = 0
    RESERVED = 1
    SERVICE_PROVIDER = 2


class AbortReason(OpenIntEnum):
    """A-ABORT reason/diagnostic, meaningful when the source is the service-provider."""

    NOT_SPECIFIED = 0
    UNRECOGNIZED_PDU = 1
    UNEXPECTED_PDU = 2
    RESERVED = 3
    UNRECOGNIZED_PDU_PARAMETER = 4
    UNEXPECTED_PDU_PARAMETER = 5
    INVALID_PDU_PARAMETER_VALUE = 6


class ContextResult(OpenIntEnum):
    """Result/reason of a presentation context in the A-ASSOCIATE-AC (PS3.8 9.3.3.2)."""

    ACCEPTANCE = 0
    USER_REJECTION = 1
    NO_REASON = 2
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
    TRANSFER_SYNTAXES_NOT_SUPPORTED = 4


class UserIdentityType(OpenIntEnum):
    """User-identity-type of the user identity negotiation sub-item (PS3.7 D.3.3.7)."""

    USERNAME = 1
    USERNAME_PASSCODE = 2
    KERBEROS = 3
    SAML = 4
    JWT = 5
