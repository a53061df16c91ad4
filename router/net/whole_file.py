"""Whether a DICOM file holds the whole data set its elements announce.

A file cut short (a copy interrupted, a disk full) still starts like a good
one: its Pixel Data element announces more bytes than follow it. The data set
is walked by its elements' headers, each value skipped by its length, never
read: NotWhole names the first element, item or header that runs past the end
of the file. Implicit and explicit VR (the one the first element shows, as
pydicom reads it), little and big endian, a UN element of undefined length as
the Implicit VR sequence it holds (PS3.5 6.2.2); fewer bytes than an element
header at the end are passed over, as pydicom does, and sequences nested over
MAX_DEPTH are refused as corrupt. A deflated data set is not walked (its
inflater fails on a cut stream).

Entry points:
  * `check_data_set(fd, size, start, syntax, head)`, for a sender: the data set
    from `start`, walked first in `head`, the bytes the sender has already read
    (elements lying in them are skipped by a tight loop); the rest of the file
    is read (os.pread) only where the walk goes past them. A data set that ends
    with its pixel data's value, the usual case, is checked in `head` alone,
    and first by that pixel data's header only (`_ends_with_pixel_data`).
  * `check_whole(file, syntax)`, following on from
    `dcmread(file, stop_before_pixels=True)` (pydicom does not notice a file cut
    short): the walk goes on from where pydicom stopped.
  * `check_file(fd, implicit, little_endian)`: the whole file, encoded as
    pydicom read it (`Dataset.original_encoding`), from its start.
  * `check_parts(parts, syntax)`, for a receiver: a data set received in
    memory, as the fragments it arrived in (read across them where the walk
    goes past the first 4 KiB).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import os
import struct
from collections.abc import Callable, Sequence
from typing import BinaryIO

from pydicom.datadict import dictionary_description
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

from router.net.errors import NetError

PREAMBLE_LENGTH = 128
MAGIC = b"DICM"
FILE_META_START = PREAMBLE_LENGTH + len(MAGIC)
FILE_META_GROUP = 0x0002
PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})  # where stop_before_pixels stops
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
DELIMITER_GROUP = 0xFFFE  # items and delimiters: a tag and a 4-byte length, never a VR
UNDEFINED_LENGTH = 0xFFFFFFFF
LONG_VRS = frozenset(vr.encode("ascii") for vr in EXPLICIT_VR_LENGTH_32)  # explicit VRs with a 4-byte length
KNOWN_VRS = frozenset(vr.value.encode("ascii") for vr in VR if len(vr.value) == 2)  # PS3.5 Table 6.2-1
UNKNOWN_VR = b"UN"
MAX_DEPTH = 64  # sequences nested deeper are taken for a corrupt data set (and would exhaust the stack)
TRAILING_IGNORED = 8  # fewer bytes than an element header at the end of a data set are passed over
DEFLATED_SYNTAXES = frozenset({  # the data set itself is deflated (PS3.5 A.5, PS3.5 A.6)
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.95",  # JPIP Referenced Deflate
    "1.2.840.10008.1.2.4.205",  # JPIP HTJ2K Referenced Deflate
})
PIXEL_DATA_LE = b"\xe0\x7f\x10\x00"  # the tag (7FE0,0010) in little endian
NATIVE_PIXEL_VRS = frozenset({b"OB", b"OW"})
_EXPLICIT_PIXEL_HEADER = struct.Struct("<4x2s2xI")  # tag, VR, reserved, length
_IMPLICIT_PIXEL_HEADER = struct.Struct("<4x0sI")  # tag, length (no VR: an empty one)
HEAD = 4096  # bytes of a received data set's first fragment the quick check looks at
READ_AHEAD = 8192  # bytes read at once where the walk goes past what it holds


class NotWhole(NetError, ValueError):
    """The file ends before its data set does (or its structure is broken); the message says where."""


def check_data_set(fd: int, size: int, start: int, syntax: str, head: bytes = b"") -> None:
    """NotWhole unless the data set from `start` to the end of the file open as `fd` (`size`
    bytes), encoded in transfer syntax `syntax`, is whole. `head` holds the file's first bytes:
    the walk reads the file only past them. A deflated data set is not checked."""
    _check(functools.partial(os.pread, fd), size, start, syntax, head)


def _check(read: Callable[[int, int], bytes], size: int, start: int, syntax: str, head: bytes) -> None:
    """NotWhole unless the data set from `start` to `size`, in `syntax`, is whole: first by its
    Pixel Data header alone, else walked through `head` and what `read(count, position)` gives."""
    encoding = _encoding(syntax)
    if encoding is not None and not _ends_with_pixel_data(head, start, size, *encoding):
        _Walk(_Window(read, size, head), *encoding).data_set(start)


def _ends_with_pixel_data(head: bytes, start: int, size: int, implicit: bool, little_endian: bool) -> bool:
    """The quick yes for the usual file (a sender's hot path: a walk costs ~0.2 us an element):
    the first Pixel Data header in `head` past `start` has a defined length, and its value ends
    where the file (`size` bytes) does. A cut file fails it and is walked; so is any other, e.g.
    one with elements after its pixel data, or bytes that look like the header in a value before
    it. Little endian only. Like the walk, it cannot tell a file cut exactly where an element
    ends; here that includes the end of a nested item's (an icon's) pixel data."""
    if not little_endian:
        return False
    position = head.find(PIXEL_DATA_LE, start)  # from the start: the header is nearer it than the end
    if position < 0:
        return False
    header = _IMPLICIT_PIXEL_HEADER if implicit else _EXPLICIT_PIXEL_HEADER
    if position + header.size > len(head):
        return False
    vr, length = header.unpack_from(head, position)
    return (implicit or vr in NATIVE_PIXEL_VRS) and position + header.size + length == size


def check_parts(parts: Sequence[bytes | memoryview], syntax: str) -> None:
    """NotWhole unless the data set received as `parts` (its fragments, in order), encoded in
    transfer syntax `syntax`, is whole: checked as `check_data_set` checks a file."""
    if parts:
        _check(_Parts(parts), sum(map(len, parts)), 0, syntax, bytes(parts[0][:HEAD]))


class _Parts:
    """Reads `count` bytes at `position` of the data set its `parts` hold end to end (fewer at the end)."""

    def __init__(self, parts: Sequence[bytes | memoryview]) -> None:
        self.parts = parts

    @functools.cached_property
    def starts(self) -> list[int]:
        """Where each part starts: worked out at the first read (the quick check reads none)."""
        return list(itertools.accumulate(map(len, self.parts), initial=0))[:-1]

    def __call__(self, count: int, position: int) -> bytes:
        index = bisect.bisect_right(self.starts, position) - 1
        offset, pieces = position - self.starts[index], []
        while count > 0 and index < len(self.parts):
            piece = self.parts[index][offset : offset + count]
            pieces.append(piece)
            count -= len(piece)
            index, offset = index + 1, 0
        return b"".join(pieces)


def check_whole(file: BinaryIO, syntax: str) -> None:
    """NotWhole unless the data set `dcmread(file, stop_before_pixels=True)` read ends within
    the file: what follows the pixel data's header is walked by element headers, values skipped.
    pydicom met the pixel data only if every element before it is whole; otherwise (no pixel data,
    or a file cut short before it) the data set is walked from the start."""
    encoding = _encoding(syntax)
    if encoding is None:
        return
    fd = file.fileno()
    window = _Window(functools.partial(os.pread, fd), os.fstat(fd).st_size)
    start = file.tell()
    if _Walk(window, *encoding).tag_at(start) not in PIXEL_DATA_TAGS:
        start = _data_set_start(window)
    _Walk(window, *encoding).data_set(start)


def check_file(fd: int, implicit: bool, little_endian: bool) -> None:
    """NotWhole unless the data set of the file open as `fd`, encoded in `implicit` VR and
    `little_endian` (as pydicom read it: a data set that is not deflated), is whole."""
    window = _Window(functools.partial(os.pread, fd), os.fstat(fd).st_size)
    _Walk(window, implicit, little_endian).data_set(_data_set_start(window))


def _data_set_start(window: _Window) -> int:
    """Where the file's data set starts: past its preamble and its file meta group, if it has them."""
    start = FILE_META_START if window.peek(PREAMBLE_LENGTH, len(MAGIC)) == MAGIC else 0
    return _Walk(window, implicit=False, little_endian=True).past_group(start, FILE_META_GROUP)


@functools.lru_cache(maxsize=64)
def _encoding(syntax: str) -> tuple[bool, bool] | None:
    """(implicit VR, little endian) of the data set in transfer syntax `syntax`; None if it is
    deflated. Every syntax but the first two of PS3.5 is explicit VR little endian."""
    if syntax in DEFLATED_SYNTAXES:
        return None
    return syntax == ImplicitVRLittleEndian, syntax != ExplicitVRBigEndian


class _Window:
    """The bytes of a data set's container (`size` bytes long) that a walk reads: `data`, from
    offset `start`; first the `head` a caller has read, then a block `read(count, position)` where
    the walk goes past (os.pread of a file, or `_Parts` of a data set received in memory)."""

    __slots__ = ("read", "size", "data", "start")

    def __init__(self, read: Callable[[int, int], bytes], size: int, head: bytes = b"") -> None:
        self.read, self.size = read, size
        self.data, self.start = head, 0

    def bytes_at(self, position: int, count: int, what: str) -> bytes:
        """The `count` bytes of `what` at `position`; NotWhole if the file ends before."""
        self.fits(position, count, what)
        offset = position - self.start
        if offset < 0 or offset + count > len(self.data):
            self.data, self.start, offset = self.read(max(count, READ_AHEAD), position), position, 0
            if len(self.data) < count:  # the file shrank since its size was taken
                raise NotWhole(f"truncated: {what} needs {count} bytes, {len(self.data)} remain")
        return self.data[offset : offset + count]

    def peek(self, position: int, count: int) -> bytes:
        """Up to `count` bytes at `position`: fewer near the end of the file."""
        count = min(count, self.size - position)
        if count <= 0:  # pydicom can leave a file cut short positioned past its end
            return b""
        offset = position - self.start
        if 0 <= offset and offset + count <= len(self.data):
            return self.data[offset : offset + count]
        return self.bytes_at(position, count, "")

    def past(self, position: int, count: int, what: str) -> int:
        """The position after the `count` bytes of `what` at `position`, if the file holds them."""
        self.fits(position, count, what)
        return position + count

    def fits(self, position: int, count: int, what: str) -> None:
        remain = self.size - position
        if count > remain:
            raise NotWhole(f"truncated: {what} needs {count} bytes, {remain} remain")


class _HeaderLayout:
    """Element headers in one byte order: their parts, and the structs the fast loop reads a
    whole header with (`explicit`: group, VR, both lengths; `implicit`: group, length); a VR
    read as a number is one of `long_vrs` if its length takes 4 bytes."""

    def __init__(self, order: str) -> None:
        self.tag = struct.Struct(f"{order}HH")
        self.short_length = struct.Struct(f"{order}H")
        self.long_length = struct.Struct(f"{order}I")
        self.explicit = struct.Struct(f"{order}H2xHHI")
        self.implicit = struct.Struct(f"{order}H2xI")
        self.long_vrs = frozenset(self.short_length.unpack(vr)[0] for vr in LONG_VRS)


_LAYOUTS = {True: _HeaderLayout("<"), False: _HeaderLayout(">")}


class _Walk:
    """A walk through a data set by its elements' headers, skipping their values: each step
    returns the position after what it passed; NotWhole as soon as a header or value goes past
    the end of the file."""

    __slots__ = ("window", "implicit", "little_endian", "layout")

    def __init__(self, window: _Window, implicit: bool, little_endian: bool) -> None:
        self.window, self.implicit, self.little_endian = window, implicit, little_endian
        self.layout = _LAYOUTS[little_endian]

    def data_set(self, position: int) -> None:
        """Past the elements from `position` to the end of the file. The VR encoding is the one the
        first element shows (a VR after its tag or not), whatever the syntax says, as pydicom reads it."""
        self.as_found(position).elements(position)

    def tag_at(self, position: int) -> int | None:
        """The tag of the element at `position`; None at the end."""
        head = self.window.peek(position, self.layout.tag.size)
        if len(head) < self.layout.tag.size:
            return None
        group, element = self.layout.tag.unpack(head)
        return group << 16 | element

    def as_found(self, position: int) -> _Walk:
        """This walk, or one in the other VR encoding if the element at `position` shows that one."""
        implicit = not self.vr_at(position)
        return self if implicit == self.implicit else _Walk(self.window, implicit, self.little_endian)

    def vr_at(self, position: int) -> bool:
        """Whether the element at `position` has a VR: one of PS3.5's after its tag."""
        return self.window.peek(position, 6)[4:] in KNOWN_VRS

    def past_group(self, position: int, number: int) -> int:
        """Past the elements of group `number` from `position` (the file meta's)."""
        while (tag := self.tag_at(position)) is not None and tag >> 16 == number:
            tag, length, position, vr = self._header(position, "an element")
            position = self._past_value(position, tag, length, vr, depth=0)
        return position

    def elements(self, position: int, depth: int = 0) -> int:
        """Past the elements from `position` to the end of the file, or (`depth` > 0) of the
        undefined-length item they are in. Fewer bytes than an element header at the end of the
        file are no element: they are passed over, as pydicom does."""
        in_item = depth > 0
        while (position := self._skim(position)) < self.window.size or in_item:
            if not in_item and self.window.size - position < TRAILING_IGNORED:
                return self.window.size
            tag, length, position, vr = self._header(position, "an element")
            if in_item and tag == ITEM_END:
                return position
            position = self._past_value(position, tag, length, vr, depth)
        return position

    def _skim(self, position: int) -> int:
        """Past the elements from `position` whose headers lie in the window and whose values end
        within the file, a tight loop of one unpack each: the position of the first that does not,
        nor a delimiter, nor of undefined length (2^32 - 1 runs past any file), which `elements`
        takes. In a file that ends with its pixel data's value, that is the end of the file."""
        window = self.window
        offset = position - window.start
        if offset < 0:
            return position
        end = window.size - window.start  # where the file ends, counted from the window's start
        if self.implicit:
            header = self.layout.implicit
            last = min(len(window.data), end) - header.size  # where the last header the window holds starts
            return window.start + _skim_implicit(window.data, offset, last, end, header.unpack_from)
        header = self.layout.explicit
        last = min(len(window.data), end) - header.size
        return window.start + _skim_explicit(window.data, offset, last, end, header.unpack_from, self.layout.long_vrs)

    def _past_value(self, position: int, tag: int, length: int, vr: bytes, depth: int) -> int:
        if length != UNDEFINED_LENGTH:
            return self.window.past(position, length, _name(tag))
        if depth >= MAX_DEPTH:
            raise NotWhole(f"corrupt: sequences nested more than {MAX_DEPTH} deep")
        item_of = f"an item of {_name(tag)}"
        # PS3.5 6.2.2: a UN value of undefined length is a sequence in Implicit VR Little Endian
        walk = _Walk(self.window, implicit=True, little_endian=True) if vr == UNKNOWN_VR else self
        while True:  # items (a sequence's data sets, or fragments of encapsulated pixel data)
            item, length, position, _ = walk._header(position, item_of)
            if item == SEQUENCE_END:
                return position
            if item != ITEM:
                raise NotWhole(f"corrupt: {_name(tag)} holds {Tag(item)} where an item belongs")
            if length == UNDEFINED_LENGTH:  # its elements in the VR encoding they show, as pydicom reads them
                position = walk.as_found(position).elements(position, depth + 1)
            else:
                position = self.window.past(position, length, item_of)

    def _header(self, position: int, what: str) -> tuple[int, int, int, bytes]:
        """The tag and value length of the element, item or delimiter at `position`, where its
        value starts, and its VR (b"" in Implicit VR and for items and delimiters)."""
        what = f"the header of {what}"
        head = self.window.bytes_at(position, 8, what)
        group, element = self.layout.tag.unpack_from(head)
        tag = group << 16 | element
        if self.implicit or group == DELIMITER_GROUP:
            return tag, self.layout.long_length.unpack_from(head, 4)[0], position + 8, b""
        vr = head[4:6]
        if vr in LONG_VRS:
            return tag, self.layout.long_length.unpack(self.window.bytes_at(position + 8, 4, what))[0], position + 12, vr
        return tag, self.layout.short_length.unpack_from(head, 6)[0], position + 8, vr


def _skim_implicit(data: bytes, offset: int, last: int, end: int, unpack: Callable) -> int:
    """`_Walk._skim` in Implicit VR: past the elements from `offset` whose headers start by `last`
    and whose values end by `end`, up to a delimiter."""
    while offset <= last:
        group, length = unpack(data, offset)
        following = offset + 8 + length
        if following > end or group == DELIMITER_GROUP:
            break
        offset = following
    return offset


def _skim_explicit(data: bytes, offset: int, last: int, end: int, unpack: Callable, long_vrs: frozenset[int]) -> int:
    """`_skim_implicit` in Explicit VR: a header is 12 bytes long if its VR is one of `long_vrs`, else 8."""
    while offset <= last:
        group, vr, short_length, long_length = unpack(data, offset)
        following = offset + (12 + long_length if vr in long_vrs else 8 + short_length)
        if following > end or group == DELIMITER_GROUP:
            break
        offset = following
    return offset


@functools.lru_cache(maxsize=1024)
def _name(tag: int) -> str:
    """The element's name in the DICOM dictionary ("Pixel Data"), else its tag."""
    try:
        return dictionary_description(tag)
    except KeyError:
        return str(Tag(tag))
