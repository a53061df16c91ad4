"""The engine's exception hierarchy: every error router.net raises derives from NetError."""

from router.net.codes import AbortReason

#: Offset of the PDU-length field in the PDU header; where a too-large length is reported.
_PDU_LENGTH_OFFSET = 2


class NetError(Exception):
    """Base class of every error raised by the DICOM networking engine."""


class PduError(NetError):
    """A PDU could not be decoded; carries the A-ABORT reason to send and where it failed.

    The PDU codec *returns* these (it never raises them out of ``router.net.pdu``); ``offset``
    counts from the first byte of the PDU header.
    """

    def __init__(
        self, message: str, reason: int = AbortReason.NOT_SPECIFIED, offset: int = 0
    ) -> None:
        super().__init__(f"{message} (at byte {offset})")
        self.message = message
        self.reason = AbortReason(reason)
        self.offset = offset

    def __reduce__(self) -> tuple:
        return type(self), (self.message, self.reason, self.offset)


class PduTooLarge(PduError):
    """A PDU announced a length above the receiver's configured maximum."""

    def __init__(self, length: int, maximum: int) -> None:
        super().__init__(
            f"PDU length {length} exceeds the maximum of {maximum}",
            reason=AbortReason.INVALID_PDU_PARAMETER_VALUE,
            offset=_PDU_LENGTH_OFFSET,
        )
        self.length = length
        self.maximum = maximum

    def __reduce__(self) -> tuple:
        return type(self), (self.length, self.maximum)


class DimseError(NetError):
    """A DIMSE command set or message could not be decoded or is not valid."""
