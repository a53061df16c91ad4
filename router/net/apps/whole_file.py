"""Whether a DICOM file holds the whole data set its elements announce.

`check_whole(file, syntax)` follows on from `dcmread(file, stop_before_pixels=True)`:
pydicom does not notice a file cut short, so the rest of the data set is walked
by its elements' headers, values skipped by seeking (the pixel data is never
loaded): NotWhole names the first element, item or header that runs past the
end of the file. Implicit and explicit VR, little and big endian; deflated data
sets are left to the inflater, which fails on a cut stream.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from pydicom.datadict import dictionary_description
from pydicom.tag import Tag
from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

FILE_META_START = 132  # after the preamble and "DICM"
FILE_META_GROUP = 0x0002
PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})  # where stop_before_pixels stops
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
DELIMITER_GROUP = 0xFFFE  # items and delimiters: a tag and a 4-byte length, never a VR
UNDEFINED_LENGTH = 0xFFFFFFFF


class NotWhole(Exception):
    """The file ends before its data set does (or its structure is broken); the message says where."""


def check_whole(file: BinaryIO, syntax: UID) -> None:
    """NotWhole unless the data set `dcmread(file, stop_before_pixels=True)` read ends within
    the file: what follows the pixel data's header is walked by element headers, values skipped.
    pydicom met the pixel data only if every element before it is whole; otherwise (no pixel data,
    or a file cut short before it) the data set is walked from the start."""
    size = os.fstat(file.fileno()).st_size
    walk = _Walk(file, size, syntax.is_implicit_VR, syntax.is_little_endian)
    if walk.next_tag() not in PIXEL_DATA_TAGS:
        file.seek(FILE_META_START)
        _Walk(file, size, implicit=False, little_endian=True).group(FILE_META_GROUP)
    walk.implicit = walk.implicit or not walk.vr_ahead()  # as pydicom reads a file that says Explicit VR but is not
    walk.elements()


@dataclass
class _Walk:
    """A walk through a data set in `file` by its elements' headers, seeking past their values:
    NotWhole as soon as a header or value goes past the file's `size`."""

    file: BinaryIO
    size: int
    implicit: bool
    little_endian: bool

    def __post_init__(self) -> None:
        order = "<" if self.little_endian else ">"
        self._tag = struct.Struct(f"{order}HH")
        self._short_length = struct.Struct(f"{order}H")
        self._long_length = struct.Struct(f"{order}I")

    def next_tag(self) -> int | None:
        """The tag of the element at the file's position; None at the end."""
        head = self._peek(self._tag.size)
        if len(head) < self._tag.size:
            return None
        group, element = self._tag.unpack(head)
        return group << 16 | element

    def vr_ahead(self) -> bool:
        """Whether the element at the file's position has a VR: two capital letters after its tag."""
        vr = self._peek(6)[4:]
        return len(vr) == 2 and vr.isalpha() and vr.isupper()

    def _peek(self, count: int) -> bytes:
        """Up to `count` bytes from the file's position, which stays where it is."""
        head = self.file.read(count)
        self.file.seek(-len(head), os.SEEK_CUR)
        return head

    def group(self, number: int) -> None:
        """Past the elements of group `number` at the file's position (the file meta's)."""
        while (tag := self.next_tag()) is not None and tag >> 16 == number:
            self._skip_value(*self._header("an element"))

    def elements(self, in_item: bool = False) -> None:
        """Past the elements up to the end of the file, or of the undefined-length item they are in."""
        while in_item or self.file.tell() < self.size:
            tag, length = self._header("an element")
            if in_item and tag == ITEM_END:
                return
            self._skip_value(tag, length)

    def _skip_value(self, tag: int, length: int) -> None:
        if length != UNDEFINED_LENGTH:
            self._skip(length, _name(tag))
            return
        while True:  # items (a sequence's data sets, or fragments of encapsulated pixel data)
            item, length = self._header(f"an item of {_name(tag)}")
            if item == SEQUENCE_END:
                return
            if item != ITEM:
                raise NotWhole(f"corrupt: {_name(tag)} holds {Tag(item)} where an item belongs")
            if length == UNDEFINED_LENGTH:
                self.elements(in_item=True)
            else:
                self._skip(length, f"an item of {_name(tag)}")

    def _header(self, what: str) -> tuple[int, int]:
        """The tag and value length of the element, item or delimiter at the file's position."""
        what = f"the header of {what}"
        head = self._read(8, what)
        group, element = self._tag.unpack_from(head)
        tag = group << 16 | element
        if self.implicit or group == DELIMITER_GROUP:
            return tag, self._long_length.unpack_from(head, 4)[0]
        if head[4:6].decode("latin-1") in EXPLICIT_VR_LENGTH_32:
            return tag, self._long_length.unpack(self._read(4, what))[0]
        return tag, self._short_length.unpack_from(head, 6)[0]

    def _read(self, count: int, what: str) -> bytes:
        self._fits(count, what)
        return self.file.read(count)

    def _skip(self, count: int, what: str) -> None:
        self._fits(count, what)
        self.file.seek(count, os.SEEK_CUR)

    def _fits(self, count: int, what: str) -> None:
        remain = self.size - self.file.tell()
        if count > remain:
            raise NotWhole(f"truncated: {what} needs {count} bytes, {remain} remain")


def _name(tag: int) -> str:
    """The element's name in the DICOM dictionary ("Pixel Data"), else its tag."""
    try:
        return dictionary_description(tag)
    except KeyError:
        return str(Tag(tag))
