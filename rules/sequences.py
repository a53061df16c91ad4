"""Reading the items of a sequence pydicom has not converted yet, from its raw bytes, for rule paths.

pydicom converts a sequence on first access at a cost of about a hundred
microseconds, most of it bookkeeping a rule does not need. `scan_items`
splits the raw value of a little endian sequence (explicit or implicit VR,
items and nested sequences of defined or undefined length) into items: the
elements by tag, left raw as pydicom leaves a data set it reads, so that a path
like `RequestAttributesSequence[*].ScheduledProcedureStepID` costs a few
microseconds. It never guesses: anything unusual (a length past the end, an
undefined length where none may be, a tag that is not an item) raises
`ScanError`, and the caller lets pydicom convert the sequence instead.
"""

from __future__ import annotations

import struct

from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag

ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQUENCE_END = 0xFFFEE0DD
UNDEFINED_LENGTH = 0xFFFFFFFF
LONG_LENGTH_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"))
SEQUENCE_VRS = (None, "SQ")  # the VRs an element of undefined length inside an item may have here
TAG_AND_LENGTH = struct.Struct("<HHI")  # items, delimiters and implicit VR elements
EXPLICIT_SHORT = struct.Struct("<HH2sH")
EXPLICIT_LONG = struct.Struct("<HH2s2xI")
RawItem = dict[int, RawDataElement]  # an item's elements by tag, as plain ints: cheaper to look up than BaseTags


class ScanError(ValueError):
    """Raw bytes this scanner does not read; pydicom should convert them."""


def scan_items(data: bytes, implicit: bool) -> list[RawItem]:
    """The items of a little endian sequence value, their elements raw; ScanError if it is not plain."""
    items: list[RawItem] = []
    position, end = 0, len(data)
    while position < end:
        tag, length, position = _tag_and_length(data, position, end)
        if tag == SEQUENCE_END:
            break
        if tag != ITEM:
            raise ScanError(f"expected an item, found ({tag >> 16:04X},{tag & 0xFFFF:04X})")
        if length == UNDEFINED_LENGTH:
            elements, position = _elements(data, position, end, implicit)
        else:
            item_end = _within(position, length, end)
            elements, _ = _elements(data, position, item_end, implicit)
            position = item_end
        items.append(elements)
    return items


def _elements(data: bytes, position: int, end: int, implicit: bool) -> tuple[RawItem, int]:
    """The elements from `position` to `end` or to an item delimiter, and the position after them."""
    elements: RawItem = {}
    while position < end:
        group, element, vr, length, header = _element_header(data, position, end, implicit)
        number = group << 16 | element
        if number == ITEM_END:
            return elements, position + header
        start = position + header
        if length == UNDEFINED_LENGTH:
            if vr not in SEQUENCE_VRS:
                raise ScanError(f"undefined length in a {vr} element")
            value_end, position = _sequence_end(data, start, end, implicit)
        else:
            value_end = position = _within(start, length, end)
        value = data[start:value_end]
        elements[number] = RawDataElement(BaseTag(number), vr, len(value), value, 0, implicit, True)
    return elements, position


def _element_header(data: bytes, position: int, end: int, implicit: bool) -> tuple[int, int, str | None, int, int]:
    """(group, element, VR or None, length, header size) of the element at `position`."""
    _within(position, TAG_AND_LENGTH.size, end)
    group, element, length = TAG_AND_LENGTH.unpack_from(data, position)
    if implicit or group == ITEM >> 16:
        return group, element, None, length, TAG_AND_LENGTH.size
    group, element, vr, length = EXPLICIT_SHORT.unpack_from(data, position)
    if vr in LONG_LENGTH_VRS:
        _within(position, EXPLICIT_LONG.size, end)
        group, element, vr, length = EXPLICIT_LONG.unpack_from(data, position)
        return group, element, vr.decode("ascii"), length, EXPLICIT_LONG.size
    if not vr.isalpha() or not vr.isupper():
        raise ScanError(f"not a VR: {vr!r}")
    return group, element, vr.decode("ascii"), length, EXPLICIT_SHORT.size


def _sequence_end(data: bytes, position: int, end: int, implicit: bool) -> tuple[int, int]:
    """Where a sequence of undefined length starting at `position` ends: (its delimiter, the position after it)."""
    while True:
        tag, length, after = _tag_and_length(data, position, end)
        if tag == SEQUENCE_END:
            return position, after
        if tag != ITEM:
            raise ScanError("a sequence of undefined length without its delimiter")
        if length == UNDEFINED_LENGTH:
            _, position = _elements(data, after, end, implicit)
        else:
            position = _within(after, length, end)


def _tag_and_length(data: bytes, position: int, end: int) -> tuple[int, int, int]:
    _within(position, TAG_AND_LENGTH.size, end)
    group, element, length = TAG_AND_LENGTH.unpack_from(data, position)
    return group << 16 | element, length, position + TAG_AND_LENGTH.size


def _within(position: int, length: int, end: int) -> int:
    """position + length, if that is not past `end`."""
    if position + length > end:
        raise ScanError("a length runs past the end of its value")
    return position + length
