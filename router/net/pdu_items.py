"""Variable items and user-information sub-items of A-ASSOCIATE-RQ/AC.

This module owns the presentation context items (PS3.8 9.3.2.2, 9.3.3.2), the User Information
item and its sub-items (PS3.8 Annex D, PS3.7 D.3.3), the ``UnknownItem`` that keeps any item type
we do not know, and the item-level codec helpers that ``router.net.pdu`` shares.

Each item class has ``item_type``, ``encode_value()`` (the bytes after the 4-byte item header) and
``decode_value(buf, start, stop)`` (parse ``buf[start:stop]``). Decoding helpers raise
:class:`PduError` whose offset counts from the first byte of the PDU; ``router.net.pdu`` catches it
and *returns* it, so no exception ever leaves the codec.

Text fields (UIDs, names) are ISO 646 on the wire. They are read and written as Latin-1 so that any
received byte survives a decode/encode round trip (an A-ASSOCIATE-AC echoes what it received).
UIDs are sent unpadded; on receipt trailing NULs and spaces are stripped defensively.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, NoReturn, Union, get_args

from router.net.codes import HEADER_LENGTH, ITEM_HEADER_LENGTH, AbortReason, ContextResult
from router.net.codes import ItemType, UserIdentityType
from router.net.errors import PduError

__all__ = [
    "AsyncOperationsWindow", "ImplementationClassUID", "ImplementationVersionName", "MaximumLength",
    "PresentationContextAC", "PresentationContextRQ", "RoleSelection", "SOPClassCommonExtended",
    "SOPClassExtended", "SubItem", "UnknownItem", "UserIdentityAC", "UserIdentityRQ",
    "UserInformation",
]  # fmt: skip

_ITEM_HEADER = struct.Struct(">BxH")  # item-type, reserved, item-length
_CONTEXT_HEADER = struct.Struct(">BxBx")  # context-id, reserved, result (AC only), reserved
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_TWO_U16 = struct.Struct(">HH")
_TWO_FLAGS = struct.Struct(">BB")
_MAX_U16 = 0xFFFF
_TEXT_ENCODING = "latin-1"
_TEXT_PADDING = " \0"
_INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE


# Codec helpers, shared with router.net.pdu.


def fail(message: str, pos: int, reason: AbortReason = _INVALID) -> NoReturn:
    """Raise the codec's internal failure; ``pos`` is an offset into the PDU body."""
    raise PduError(message, reason, HEADER_LENGTH + pos)


def encode_text(text: str) -> bytes:
    """Encode a UID or name for the wire (no padding)."""
    return text.encode(_TEXT_ENCODING)


def decode_text(buf: memoryview, start: int, stop: int) -> str:
    """Decode a UID or name, dropping trailing NUL and space padding."""
    return str(buf[start:stop], _TEXT_ENCODING).rstrip(_TEXT_PADDING)


def length_prefixed(data: bytes) -> bytes:
    """``data`` preceded by its 2-byte big-endian length (raises ValueError if too long)."""
    return _U16.pack(_u16_length(data)) + data


def _prefixed_text(text: str) -> bytes:
    return length_prefixed(encode_text(text))


def encode_item(item_type: int, value: bytes) -> bytes:
    """One item: type(1) reserved(1) length(2) then ``value`` (raises ValueError if too long)."""
    return _ITEM_HEADER.pack(item_type, _u16_length(value)) + value


def _u16_length(data: bytes) -> int:
    if len(data) > _MAX_U16:
        raise ValueError(f"{len(data)} bytes do not fit a 16-bit length field")
    return len(data)


def encode_any(item: Item) -> bytes:
    """Encode any item object of this module, header included."""
    return encode_item(item.item_type, item.encode_value())


def iter_items(buf: memoryview, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
    """Yield ``(item_type, value_start, value_stop)`` for the items filling ``buf[start:stop]``."""
    pos = start
    while pos < stop:
        if stop - pos < ITEM_HEADER_LENGTH:
            fail("truncated item header", pos)
        item_type, length = _ITEM_HEADER.unpack_from(buf, pos)
        value_start = pos + ITEM_HEADER_LENGTH
        pos = value_start + length
        if pos > stop:
            message = f"item 0x{item_type:02X} length {length} overruns its parent"
            fail(message, value_start - _U16.size)
        yield item_type, value_start, pos


def check_context_id(context_id: int, pos: int) -> None:
    """A presentation context ID is odd, 1..255 (PS3.8 9.3.2.2)."""
    if not context_id & 1:
        fail(f"presentation context ID {context_id} is not odd", pos)


class _Reader:
    """Reads the fields of one item value in sequence; every overrun fails with its offset."""

    __slots__ = ("buf", "pos", "stop")

    def __init__(self, buf: memoryview, start: int, stop: int) -> None:
        self.buf, self.pos, self.stop = buf, start, stop

    def at_end(self) -> bool:
        return self.pos >= self.stop

    def unpack(self, fmt: struct.Struct) -> tuple:
        if self.stop - self.pos < fmt.size:
            fail("item value too short", self.pos)
        values = fmt.unpack_from(self.buf, self.pos)
        self.pos += fmt.size
        return values

    def field(self) -> tuple[int, int]:
        """A 2-byte length and that many bytes; returns their ``(start, stop)``."""
        (length,) = self.unpack(_U16)
        start, self.pos = self.pos, self.pos + length
        if self.pos > self.stop:
            fail(f"field length {length} overruns its item", start - _U16.size)
        return start, self.pos

    def text(self) -> str:
        return decode_text(self.buf, *self.field())

    def data(self) -> bytes:
        start, stop = self.field()
        return bytes(self.buf[start:stop])

    def rest(self) -> bytes:
        data = bytes(self.buf[self.pos : self.stop])
        self.pos = self.stop
        return data


@dataclass(frozen=True, slots=True)
class UnknownItem:
    """An item or sub-item of a type we do not know: kept with its raw value, never dropped."""

    item_type: int
    data: bytes

    def encode_value(self) -> bytes:
        return self.data


@dataclass(frozen=True, slots=True)
class PresentationContextRQ:
    """Item 0x20: one abstract syntax proposed with one or more transfer syntaxes."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]
    item_type: ClassVar[ItemType] = ItemType.PRESENTATION_CONTEXT_RQ

    def encode_value(self) -> bytes:
        header = _CONTEXT_HEADER.pack(self.context_id, 0)
        abstract = encode_item(ItemType.ABSTRACT_SYNTAX, encode_text(self.abstract_syntax))
        transfer = (_transfer_syntax_item(uid) for uid in self.transfer_syntaxes)
        return b"".join((header, abstract, *transfer))

    @classmethod
    def decode_value(cls, buf: memoryview, start: int, stop: int) -> PresentationContextRQ:
        context_id, _, abstract_syntaxes, transfer_syntaxes = _decode_context(buf, start, stop)
        if len(abstract_syntaxes) != 1:
            fail(f"context {context_id} has {len(abstract_syntaxes)} abstract syntaxes", start)
        return cls(context_id, abstract_syntaxes[0], tuple(transfer_syntaxes))


@dataclass(frozen=True, slots=True)
class PresentationContextAC:
    """Item 0x21: the result for one proposed context; ``transfer_syntax`` is meaningless unless
    the result is ACCEPTANCE (a missing one then decodes as ``""``)."""

    context_id: int
    result: ContextResult
    transfer_syntax: str
    item_type: ClassVar[ItemType] = ItemType.PRESENTATION_CONTEXT_AC

    def encode_value(self) -> bytes:
        header = _CONTEXT_HEADER.pack(self.context_id, self.result)
        return header + _transfer_syntax_item(self.transfer_syntax)

    @classmethod
    def decode_value(cls, buf: memoryview, start: int, stop: int) -> PresentationContextAC:
        context_id, result, _, transfer_syntaxes = _decode_context(buf, start, stop)
        accepted = result == ContextResult.ACCEPTANCE
        if len(transfer_syntaxes) > 1 or (accepted and not transfer_syntaxes):
            fail(f"context {context_id} has {len(transfer_syntaxes)} transfer syntaxes", start)
        transfer_syntax = transfer_syntaxes[0] if transfer_syntaxes else ""
        return cls(context_id, ContextResult(result), transfer_syntax)


def _transfer_syntax_item(uid: str) -> bytes:
    return encode_item(ItemType.TRANSFER_SYNTAX, encode_text(uid))


_ABSTRACT_SYNTAX, _TRANSFER_SYNTAX = int(ItemType.ABSTRACT_SYNTAX), int(ItemType.TRANSFER_SYNTAX)


def _decode_context(buf: memoryview, start: int, stop: int) -> tuple[int, int, list, list]:
    """Context ID, result, abstract and transfer syntaxes; other sub-item types are skipped.

    Run for each of the up to 128 contexts an association proposes, so written for speed: item
    types compared as plain ints, no dict of lists per context."""
    context_id, result = _Reader(buf, start, stop).unpack(_CONTEXT_HEADER)
    check_context_id(context_id, start)
    abstract: list[str] = []
    transfer: list[str] = []
    for item_type, value_start, value_stop in iter_items(buf, start + _CONTEXT_HEADER.size, stop):
        if item_type == _TRANSFER_SYNTAX:
            transfer.append(decode_text(buf, value_start, value_stop))
        elif item_type == _ABSTRACT_SYNTAX:
            abstract.append(decode_text(buf, value_start, value_stop))
    return context_id, result, abstract, transfer


@dataclass(frozen=True, slots=True)
class MaximumLength:
    """0x51: largest P-DATA-TF PDU-length the sender accepts; 0 = no limit (PS3.8 D.1)."""

    maximum_length: int
    item_type: ClassVar[ItemType] = ItemType.MAXIMUM_LENGTH

    def encode_value(self) -> bytes:
        return _U32.pack(self.maximum_length)

    @classmethod
    def decode_value(cls, buf: memoryview, start: int, stop: int) -> MaximumLength:
        return cls(*_Reader(buf, start, stop).unpack(_U32))


@dataclass(frozen=True, slots=True)
class ImplementationClassUID:
    """0x52: the sender's implementation class UID (PS3.7 D.3.3.2)."""

    uid: str
    item_type: ClassVar[ItemType] = ItemType.IMPLEMENTATION_CLASS_UID

    def encode_value(self) -> bytes:
        return encode_text(self.uid)

    @classmethod
    def decode_value(cls, buf: memoryview, start: int, stop: int) -> ImplementationClassUID:
        return cls(decode_text(buf, start, stop))


@dataclass(frozen=True, slots=True)
class AsyncOperationsWindow:
    """0x53: outstanding operations invoked / performed; 0 = unlimited (PS3.7 D.3.3.3)."""

    maximum_invoked: int
    maximum_performed: int
    item_type: ClassVar[ItemType] = ItemType.ASYNC_OPERATIONS_WINDOW

    def encode_value(self) -> bytes:
        return _TWO_U16.pack(self.maximum_invoked, self.maximum_performed)

    @classmethod
    def decode_value(cls, buf: memoryview, start: int, stop: int) -> AsyncOperationsWindow:
        return cls(*_Reader(buf, start, stop).unpack(_TWO_U16))


@dataclass(frozen=True, slots=True)
class RoleSelection:
    """0x54: SCP/SCU role selection for one SOP class; on the wire SCU-role precedes SCP-role."""

    sop_class_uid: str
    scu_role: bool
    scp_role: bool
    item_type: ClassVar[ItemType] = ItemType.ROLE_SELECTION

    def encode_value(self) -> bytes:
        flags = _TWO_FLAGS.pack(self.scu_role, self.scp_role)
        return _prefixed_text(self.sop_class_uid) + flags

    @classmethod
    def decode_value(cls, buf: memoryview, start: int, stop: int) -> RoleSelection:
        reader = _Reader(buf, start, stop)
        uid = reader.text()
        scu, scp = reader.unpack(_TWO_FLAGS)
        return cls(uid, scu != 0, scp != 0)


@dataclass(frozen=True, slots=True)
class ImplementationVersionName:
    """0x55: the sender's implementation version name, 1-16 characters (PS3.7 D.3.3.2)."""

    name: str
    item_type: ClassVar[ItemType] = ItemType.IMPLEMENTATION_VERSION_NAME

    def encode_value(self) -> bytes:
        return encode_text(self.name)

    @classmethod
    def decode_value(cls, buf: memoryview, start: int, stop: int) -> ImplementationVersionName:
        return cls(decode_text(buf, start, stop))


@dataclass(frozen=True, slots=True)
class SOPClassExtended:
    """0x56: service-class application information for one SOP class (PS3.7 D.3.3.5)."""

    sop_class_uid: str
    service_class_application_information: bytes
    item_type: ClassVar[ItemType] = ItemType.SOP_CLASS_EXTENDED

    def encode_value(self) -> bytes:
        information = bytes(self.service_class_application_information)
        return _prefixed_text(self.sop_class_uid) + information

    @classmethod
    def decode_value(cls, buf: memoryview, start: int, stop: int) -> SOPClassExtended:
        reader = _Reader(buf, start, stop)
        uid = reader.text()
        return cls(uid, reader.rest())


@dataclass(frozen=True, slots=True)
class SOPClassCommonExtended:
    """0x57: service class and related general SOP classes of one SOP class (PS3.7 D.3.3.6).

    The sub-item-version (byte 1, where other items have a reserved byte) is sent as 0.
    """

    sop_class_uid: str
    service_class_uid: str
    related_general_sop_classes: tuple[str, ...] = ()
    item_type: ClassVar[ItemType] = ItemType.SOP_CLASS_COMMON_EXTENDED

    def encode_value(self) -> bytes:
        related = b"".join(_prefixed_text(uid) for uid in self.related_general_sop_classes)
        classes = _prefixed_text(self.sop_class_uid) + _prefixed_text(self.service_class_uid)
        return classes + length_prefixed(related)

    @classmethod
    def decode_value(cls, buf: memoryview, start: int, stop: int) -> SOPClassCommonExtended:
        reader = _Reader(buf, start, stop)
        sop_class, service_class = reader.text(), reader.text()
        if reader.at_end():  # tolerate a sender that omits the empty related-classes field
            return cls(sop_class, service_class)
        related = _Reader(buf, *reader.field())
        uids = []
        while not related.at_end():
            uids.append(related.text())
        return cls(sop_class, service_class, tuple(uids))


@dataclass(frozen=True, slots=True)
class UserIdentityRQ:
    """0x58: the requestor's user identity (PS3.7 D.3.3.7.1); secondary field = passcode."""

    user_identity_type: UserIdentityType
    positive_response_requested: bool
    primary_field: bytes
    secondary_field: bytes = b""
    item_type: ClassVar[ItemType] = ItemType.USER_IDENTITY_RQ

    def encode_value(self) -> bytes:
        flags = _TWO_FLAGS.pack(self.user_identity_type, self.positive_response_requested)
        return flags + length_prefixed(self.primary_field) + length_prefixed(self.secondary_field)

    @classmethod
    def decode_value(cls, buf: memoryview, start: int, stop: int) -> UserIdentityRQ:
        reader = _Reader(buf, start, stop)
        identity_type, positive = reader.unpack(_TWO_FLAGS)
        primary = reader.data()
        secondary = b"" if reader.at_end() else reader.data()
        return cls(UserIdentityType(identity_type), positive != 0, primary, secondary)


@dataclass(frozen=True, slots=True)
class UserIdentityAC:
    """0x59: the acceptor's server response (PS3.7 D.3.3.7.2); empty for types 1 and 2."""

    server_response: bytes
    item_type: ClassVar[ItemType] = ItemType.USER_IDENTITY_AC

    def encode_value(self) -> bytes:
        return length_prefixed(self.server_response)

    @classmethod
    def decode_value(cls, buf: memoryview, start: int, stop: int) -> UserIdentityAC:
        return cls(_Reader(buf, start, stop).data())


SubItem = Union[
    MaximumLength, ImplementationClassUID, AsyncOperationsWindow, RoleSelection,
    ImplementationVersionName, SOPClassExtended, SOPClassCommonExtended, UserIdentityRQ,
    UserIdentityAC, UnknownItem,
]  # fmt: skip
_SUB_ITEM_CLASSES = {cls.item_type: cls for cls in get_args(SubItem) if cls is not UnknownItem}


def _item_type_of(item: SubItem) -> int:
    return item.item_type


@dataclass(frozen=True, slots=True)
class UserInformation:
    """Item 0x50: the user-information sub-items, in the order received.

    Encoding writes them in increasing item-type order (stable within a type).
    """

    items: tuple[SubItem, ...] = ()
    item_type: ClassVar[ItemType] = ItemType.USER_INFORMATION

    def encode_value(self) -> bytes:
        return b"".join(encode_any(item) for item in sorted(self.items, key=_item_type_of))

    @classmethod
    def decode_value(cls, buf: memoryview, start: int, stop: int) -> UserInformation:
        items: list[SubItem] = []
        for item_type, value_start, value_stop in iter_items(buf, start, stop):
            sub_item_class = _SUB_ITEM_CLASSES.get(item_type)
            if sub_item_class is None:
                items.append(UnknownItem(item_type, bytes(buf[value_start:value_stop])))
            else:
                items.append(sub_item_class.decode_value(buf, value_start, value_stop))
        return cls(tuple(items))

    def _first(self, kind: type) -> SubItem | None:
        return next((item for item in self.items if isinstance(item, kind)), None)

    def _all(self, kind: type) -> tuple:
        return tuple(item for item in self.items if isinstance(item, kind))

    @property
    def maximum_length(self) -> int | None:
        return getattr(self._first(MaximumLength), "maximum_length", None)

    @property
    def implementation_class_uid(self) -> str | None:
        return getattr(self._first(ImplementationClassUID), "uid", None)

    @property
    def implementation_version_name(self) -> str | None:
        return getattr(self._first(ImplementationVersionName), "name", None)

    @property
    def async_ops_window(self) -> AsyncOperationsWindow | None:
        return self._first(AsyncOperationsWindow)

    @property
    def role_selections(self) -> tuple[RoleSelection, ...]:
        return self._all(RoleSelection)

    @property
    def sop_class_extended(self) -> tuple[SOPClassExtended, ...]:
        return self._all(SOPClassExtended)

    @property
    def sop_class_common_extended(self) -> tuple[SOPClassCommonExtended, ...]:
        return self._all(SOPClassCommonExtended)

    @property
    def user_identity(self) -> UserIdentityRQ | UserIdentityAC | None:
        return self._first((UserIdentityRQ, UserIdentityAC))


Item = Union[PresentationContextRQ, PresentationContextAC, UserInformation, SubItem]
