"""The engine's exception hierarchy: every error router.net raises derives from NetError."""


class NetError(Exception):
    """Base class of every error raised by the DICOM networking engine."""


class PduError(NetError):
    """A PDU could not be decoded; carries the A-ABORT reason to send and where it failed."""

    def __init__(self, message: str, reason: int = 0, offset: int = 0) -> None:
        super().__init__(f"{message} (at byte {offset})")
        self.reason = reason
        self.offset = offset


class PduTooLarge(PduError):
    """A PDU announced a length above the receiver's configured maximum."""

    def __init__(self, length: int, maximum: int) -> None:
        super().__init__(f"PDU length {length} exceeds the maximum of {maximum}", reason=6, offset=2)
        self.length = length
        self.maximum = maximum


class DimseError(NetError):
    """A DIMSE command set or message could not be decoded or is not valid."""
