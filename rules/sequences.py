"""Reading the items of a sequence pydicom has not converted yet, from its raw bytes, for rule paths.

pydicom converts a sequence on first access at a cost of about a hundred
microseconds, most of it bookkeeping a rule does not need. `scan_items`
splits the raw value of a little endian sequence (explicit or implicit VR,
items and nested sequences of defined or undefined length) into items: the
elements by tag, left raw as (VR, bytes, implicit VR) and made pydicom's
`RawDataElement` only if pydicom must convert one, so that a path like
`RequestAttributesSequence[*].ScheduledProcedureStepID` costs a few
microseconds; a path that wants one element keeps only that one. It never
guesses: anything unusual (a length past the end, an undefined length where
none may be, a tag that is not an item) raises `ScanError`, and the caller
lets pydicom convert the sequence instead.
"""

from __future__ import annotations

import struct
from functools import lru_cache

from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag

ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQUENCE_END = 0xFFFEE0DD
DELIMITER_GROUP = ITEM >> 16  # items and delimiters have no VR, even in explicit VR syntaxes
UNDEFINED_LENGTH = 0xFFFFFFFF
LONG_LENGTH_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"))
SEQUENCE_VRS = (None, "SQ")  # the VRs an element of undefined length inside an item may have here
TAG_AND_LENGTH = struct.Struct("<HHI")  # items, delimiters and implicit VR elements
EXPLICIT_SHORT = struct.Struct("<HH2sH")  # explicit VR elements with a two-byte length
LONG_LENGTH = struct.Struct("<I")  # a four-byte length: of a delimiter, or after a long VR and two reserved bytes
HEADER, LONG_HEADER = 8, 12  # bytes: tag, VR (if explicit) and length; the long form of explicit VR
VR_CODES = 64  # the distinct VR codes a scan remembers having checked
NOTHING = -1  # no element has this tag: walking items to skip them keeps none of their elements
PAST_THE_END = "a length runs past the end of its value"
Scanned = tuple[str | None, bytes, bool]  # an element as scanned: VR (None if not explicit), value, implicit VR
RawItem = dict[int, Scanned]  # an item's elements by tag, as plain ints (cheaper to hash than BaseTags)


class ScanError(ValueError):
    """Raw bytes this scanner does not read; pydicom should convert them."""


def raw_element(tag: int, scanned: Scanned) -> RawDataElement:
    """A scanned element as pydicom reads an element it has not converted (for pydicom to convert it)."""
    vr, value, implicit = scanned
    return RawDataElement(BaseTag(tag), vr, len(value), value, 0, implicit, True)


def scan_items(data: bytes, implicit: bool, wanted: int | None = None) -> list[RawItem]:
    """The items of a little endian sequence value, their elements raw (only the element `wanted`, if given);
    ScanError if it is not plain."""
    items: list[RawItem] = []
    _items(data, 0, len(data), implicit, items, wanted)
    return items


def _items(data: bytes, position: int, end: int, implicit: bool, items: list[RawItem] | None,
           wanted: int | None = NOTHING) -> tuple[int, int]:
    """Walk the items from `position` to the sequence delimiter: (where it is, the position after it).

    With `items`, the items' elements are read into it and the end of the value may stand for the
    delimiter, giving (end, end); without, the items are skipped over, and the delimiter must be there
    (a sequence of undefined length inside an item).
    """
    unpack = TAG_AND_LENGTH.unpack_from
    while True:
        if position + HEADER > end:
            if items is not None and position == end:
                return end, end
            raise ScanError(PAST_THE_END)
        group, element, length = unpack(data, position)
        tag, after = group << 16 | element, position + HEADER
        if tag == SEQUENCE_END:
            return position, after
        if tag != ITEM:
            raise ScanError(f"expected an item, found ({group:04X},{element:04X})")
        if length == UNDEFINED_LENGTH:
            elements, position = _elements(data, after, end, implicit, wanted)
        else:
            position = after + length
            if position > end:
                raise ScanError(PAST_THE_END)
            elements = _elements(data, after, position, implicit, wanted)[0] if items is not None else {}
        if items is not None:
            items.append(elements)


def _elements(data: bytes, position: int, end: int, implicit: bool, wanted: int | None) -> tuple[RawItem, int]:
    """The elements from `position` to `end` or to an item delimiter (those of them kept: all for `wanted` None,
    else the one it names), and the position after them.

    The hot loop of a sequence path: each element header is read here, without a call per field.
    """
    elements: RawItem = {}
    while position < end:
        if position + HEADER > end:
            raise ScanError(PAST_THE_END)
        start, vr = position + HEADER, None
        if implicit:
            group, element, length = TAG_AND_LENGTH.unpack_from(data, position)
        else:
            group, element, code, length = EXPLICIT_SHORT.unpack_from(data, position)
            if group == DELIMITER_GROUP:
                (length,) = LONG_LENGTH.unpack_from(data, position + 4)
            elif code in LONG_LENGTH_VRS:
                start = position + LONG_HEADER
                if start > end:
                    raise ScanError(PAST_THE_END)
                (length,) = LONG_LENGTH.unpack_from(data, position + HEADER)
                vr = code.decode("ascii")
            else:
                vr = _vr(code)
        number = group << 16 | element
        if number == ITEM_END:
            return elements, start
        if length == UNDEFINED_LENGTH:
            if vr not in SEQUENCE_VRS:
                raise ScanError(f"undefined length in a {vr} element")
            value_end, position = _items(data, start, end, implicit, None)
        else:
            value_end = position = start + length
            if position > end:
                raise ScanError(PAST_THE_END)
        if wanted is None or number == wanted:
            elements[number] = (vr, data[start:value_end], implicit)
    return elements, position


@lru_cache(maxsize=VR_CODES)
def _vr(code: bytes) -> str:
    """The VR two bytes name, checked once per code (ScanError if they name none)."""
    if not code.isalpha() or not code.isupper():
        raise ScanError(f"not a VR: {code!r}")
    return code.decode("ascii")
