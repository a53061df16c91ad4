"""DIMSE command elements: their tags and VRs, and the codec of one element.

This module owns the command element dictionary of PS3.7 Table E.1-1 (`CommandTag`, each with
its VR), the Implicit VR Little Endian encoding of one element per VR, and `FIELDS`, which maps
every message dataclass field name to its element. Message types live in
`router.net.dimse_messages`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from enum import IntEnum
from typing import Any, NamedTuple

from router.net.codes import OpenIntEnum

COMMAND_GROUP = 0x0000


class Priority(OpenIntEnum):
    """(0000,0700) Priority values. Advisory: an unknown received value becomes RESERVED_<n>."""

    MEDIUM = 0x0000
    HIGH = 0x0001
    LOW = 0x0002


class CommandTag(IntEnum):
    """Command elements of PS3.7 Table E.1-1 with their VR. The group is 0000, so a tag equals its
    element number; the lower-cased name is the dataclass field name."""

    vr: str

    def __new__(cls, value: int, vr: str) -> CommandTag:
        member = int.__new__(cls, value)
        member._value_ = value
        member.vr = vr
        return member

    COMMAND_GROUP_LENGTH = 0x0000, "UL"
    AFFECTED_SOP_CLASS_UID = 0x0002, "UI"
    REQUESTED_SOP_CLASS_UID = 0x0003, "UI"
    COMMAND_FIELD = 0x0100, "US"
    MESSAGE_ID = 0x0110, "US"
    MESSAGE_ID_BEING_RESPONDED_TO = 0x0120, "US"
    MOVE_DESTINATION = 0x0600, "AE"
    PRIORITY = 0x0700, "US"
    COMMAND_DATA_SET_TYPE = 0x0800, "US"
    STATUS = 0x0900, "US"
    OFFENDING_ELEMENT = 0x0901, "AT"
    ERROR_COMMENT = 0x0902, "LO"
    ERROR_ID = 0x0903, "US"
    AFFECTED_SOP_INSTANCE_UID = 0x1000, "UI"
    REQUESTED_SOP_INSTANCE_UID = 0x1001, "UI"
    EVENT_TYPE_ID = 0x1002, "US"
    ATTRIBUTE_IDENTIFIER_LIST = 0x1005, "AT"
    ACTION_TYPE_ID = 0x1008, "US"
    NUMBER_OF_REMAINING_SUBOPERATIONS = 0x1020, "US"
    NUMBER_OF_COMPLETED_SUBOPERATIONS = 0x1021, "US"
    NUMBER_OF_FAILED_SUBOPERATIONS = 0x1022, "US"
    NUMBER_OF_WARNING_SUBOPERATIONS = 0x1023, "US"
    MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE = 0x1030, "AE"
    MOVE_ORIGINATOR_MESSAGE_ID = 0x1031, "US"


# Element codecs, one per VR. Fixed-size elements are packed with one precompiled struct.
ELEMENT_HEADER = struct.Struct("<HHI")  # group, element, value length
_US_ELEMENT = struct.Struct("<HHIH")
UL_ELEMENT = struct.Struct("<HHII")
_US = struct.Struct("<H")
UL_SIZE = 4
_AT_SIZE = 4  # group and element, two uint16
_SHORT_BITS = 16
_SHORT_MASK = 0xFFFF
_PADDING = {"UI": b"\x00", "AE": b" ", "LO": b" "}
_MAX_LENGTH = {"UI": 64, "AE": 16, "LO": 64}  # PS3.5 Table 6.2-1, checked when sending only
_STRIPPED = "\x00 "  # trailing NUL or space padding, and insignificant spaces
# Command sets use the default repertoire (ASCII). Latin-1 maps every byte to one character, so
# a non-conforming value received is kept byte for byte and can be sent back unchanged (pydicom
# also falls back to it).
_TEXT_ENCODING = "latin-1"


def _encode_us(tag: int, value: int) -> bytes:
    return _US_ELEMENT.pack(COMMAND_GROUP, tag, _US.size, value)


def _encode_at(tag: int, value: tuple[int, ...]) -> bytes:
    halves = [half for t in value for half in (t >> _SHORT_BITS, t & _SHORT_MASK)]
    body = struct.pack(f"<{len(halves)}H", *halves)
    return ELEMENT_HEADER.pack(COMMAND_GROUP, tag, len(body)) + body


def _text_encoder(padding: bytes, max_length: int) -> Callable[[int, str], bytes]:
    def encode(tag: int, value: str) -> bytes:
        raw = value.encode(_TEXT_ENCODING)
        if len(raw) > max_length:
            raise ValueError(f"longer than {max_length} characters")
        if len(raw) % 2:
            raw += padding
        return ELEMENT_HEADER.pack(COMMAND_GROUP, tag, len(raw)) + raw

    return encode


def _decode_us(raw: bytes) -> int:
    if len(raw) != _US.size:
        raise ValueError(f"US value of {len(raw)} bytes")
    return _US.unpack(raw)[0]


def _decode_at(raw: bytes) -> tuple[int, ...]:
    if len(raw) % _AT_SIZE:
        raise ValueError(f"AT value of {len(raw)} bytes")
    halves = struct.unpack(f"<{len(raw) // _US.size}H", raw)
    pairs = zip(halves[::2], halves[1::2])
    return tuple((group << _SHORT_BITS) | element for group, element in pairs)


def _decode_text(raw: bytes) -> str:
    return raw.decode(_TEXT_ENCODING).strip(_STRIPPED)


def _decode_priority(raw: bytes) -> Priority:
    return Priority.of(_decode_us(raw))


_ENCODERS: dict[str, Callable[[int, Any], bytes]] = {
    "US": _encode_us,
    "AT": _encode_at,
    **{vr: _text_encoder(padding, _MAX_LENGTH[vr]) for vr, padding in _PADDING.items()},
}
_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "US": _decode_us,
    "AT": _decode_at,
    **{vr: _decode_text for vr in _PADDING},
}


class FieldSpec(NamedTuple):
    """How one dataclass field is written to and read from its command element."""

    name: str
    tag: CommandTag
    encode: Callable[[int, Any], bytes]
    decode: Callable[[bytes], Any]


FIELDS: dict[str, FieldSpec] = {
    tag.name.lower(): FieldSpec(tag.name.lower(), tag, _ENCODERS[tag.vr], _DECODERS[tag.vr])
    for tag in CommandTag
    if tag is not CommandTag.COMMAND_GROUP_LENGTH
}
FIELDS["priority"] = FIELDS["priority"]._replace(decode=_decode_priority)
