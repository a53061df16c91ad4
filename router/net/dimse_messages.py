"""DIMSE command sets: the message types, and their Implicit VR Little Endian encoding.

This module owns the closed set of DIMSE messages (PS3.7 chapters 9 and 10), one slotted dataclass
per message type (not frozen: a receiver makes two per instance, and frozen ones cost 3x to
build), and the codec between a message and its command set bytes (PS3.7 6.3.1, Annex E). It
knows nothing of PDUs or fragmentation (see `router.net.dimse`).

The codec is data driven: `FIELDS` maps every dataclass field name to its command element (tag
and VR), so a new message type is a new dataclass registered with `@_message(CommandField.X)`.

Absent values: an optional string is "", an optional number is None and an optional tag list is
(); absent values are not encoded, and an element received empty (or holding only padding) is
read as absent.

`decode_command` never raises: it returns `DecodedCommand(message, has_dataset)` or a
`DimseError`. `has_dataset` is True for any CommandDataSetType other than `NO_DATASET` (old peers
send 0x0102, so no particular "present" value is required).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Iterable
from dataclasses import KW_ONLY, dataclass
from enum import IntEnum
from typing import Any, ClassVar

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from router.net.dimse_elements import COMMAND_GROUP, ELEMENT_HEADER, FIELDS, UL_ELEMENT, UL_SIZE
from router.net.dimse_elements import CommandTag, FieldSpec, Priority
from router.net.errors import DimseError

VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
NO_DATASET = 0x0101
DATASET_PRESENT = 0x0001
RESPONSE_BIT = 0x8000


class CommandField(IntEnum):
    """(0000,0100) CommandField values, PS3.7 E.1; a response is its request | RESPONSE_BIT."""

    C_STORE_RQ = 0x0001
    C_STORE_RSP = 0x8001
    C_GET_RQ = 0x0010
    C_GET_RSP = 0x8010
    C_FIND_RQ = 0x0020
    C_FIND_RSP = 0x8020
    C_MOVE_RQ = 0x0021
    C_MOVE_RSP = 0x8021
    C_ECHO_RQ = 0x0030
    C_ECHO_RSP = 0x8030
    N_EVENT_REPORT_RQ = 0x0100
    N_EVENT_REPORT_RSP = 0x8100
    N_GET_RQ = 0x0110
    N_GET_RSP = 0x8110
    N_SET_RQ = 0x0120
    N_SET_RSP = 0x8120
    N_ACTION_RQ = 0x0130
    N_ACTION_RSP = 0x8130
    N_CREATE_RQ = 0x0140
    N_CREATE_RSP = 0x8140
    N_DELETE_RQ = 0x0150
    N_DELETE_RSP = 0x8150
    C_CANCEL_RQ = 0x0FFF


_DATA_SET_TYPE = "command_data_set_type"  # taken from has_dataset, not from the message
_COMMAND_FIELD = "command_field"
_SYNTHESISED_ORDER = (_COMMAND_FIELD, _DATA_SET_TYPE)  # read before the class, in this order
_SYNTHESISED = frozenset(_SYNTHESISED_ORDER)
_SPECS_BY_TAG: dict[int, FieldSpec] = {int(spec.tag): spec for spec in FIELDS.values()}
_DATA_SET_TYPE_TAG = int(CommandTag.COMMAND_DATA_SET_TYPE)
_GROUP_LENGTH_TAG = int(CommandTag.COMMAND_GROUP_LENGTH)
ABSENT: tuple[object, ...] = (None, "", ())


class DimseMessage:
    """Base of every message class; its class variables are set by `_message`."""

    __slots__ = ()
    command_field: ClassVar[CommandField]
    required: ClassVar[frozenset[str]]  # fields that must be present on the wire
    plan: ClassVar[tuple[FieldSpec, ...]]  # every element it encodes, in ascending tag order
    encoding: ClassVar[tuple[tuple[str, int, Callable[[int, Any], bytes], bool], ...]]  # the plan as
    # (name, tag, encoder, required), ready for `encode_command`
    field_order: ClassVar[tuple[str, ...]]  # its dataclass fields that are elements, in tag order
    field_names: ClassVar[frozenset[str]]  # the same, as a set

    @property
    def is_response(self) -> bool:
        return bool(self.command_field & RESPONSE_BIT)


MESSAGE_TYPES: dict[int, type[DimseMessage]] = {}


def _message(command_field: CommandField, *also_required: str) -> Callable[[type], type]:
    """Register a message dataclass: its command field, required fields and encoding plan."""

    def register(cls: type[DimseMessage]) -> type[DimseMessage]:
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        no_default = {f.name for f in fields if f.default is dataclasses.MISSING}
        names = {f.name for f in fields} | _SYNTHESISED
        cls.command_field = command_field
        cls.required = frozenset(no_default | set(also_required))
        cls.plan = tuple(sorted((FIELDS[n] for n in names), key=lambda spec: spec.tag))
        cls.encoding = tuple((spec.name, int(spec.tag), spec.encode, spec.name in cls.required) for spec in cls.plan)
        cls.field_order = tuple(spec.name for spec in cls.plan if spec.name not in _SYNTHESISED)
        cls.field_names = frozenset(cls.field_order)
        MESSAGE_TYPES[command_field] = cls
        return cls

    return register


@dataclass(slots=True)
class _Response(DimseMessage):
    """Fields every response has; the status detail fields are keyword-only."""

    message_id_being_responded_to: int
    status: int
    _: KW_ONLY
    offending_element: tuple[int, ...] = ()
    error_comment: str = ""
    error_id: int | None = None


@dataclass(slots=True)
class _SubOperationResponse(_Response):
    affected_sop_class_uid: str = ""
    number_of_remaining_suboperations: int | None = None
    number_of_completed_suboperations: int | None = None
    number_of_failed_suboperations: int | None = None
    number_of_warning_suboperations: int | None = None


@dataclass(slots=True)
class _NResponse(_Response):
    affected_sop_class_uid: str = ""
    affected_sop_instance_uid: str = ""
    _: KW_ONLY
    attribute_identifier_list: tuple[int, ...] = ()


@_message(CommandField.C_STORE_RQ)
@dataclass(slots=True)
class CStoreRQ(DimseMessage):
    message_id: int
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    priority: Priority = Priority.MEDIUM
    move_originator_application_entity_title: str = ""
    move_originator_message_id: int | None = None


@_message(CommandField.C_STORE_RSP)
@dataclass(slots=True)
class CStoreRSP(_Response):
    affected_sop_class_uid: str = ""
    affected_sop_instance_uid: str = ""


@_message(CommandField.C_FIND_RQ)
@dataclass(slots=True)
class CFindRQ(DimseMessage):
    message_id: int
    affected_sop_class_uid: str
    priority: Priority = Priority.MEDIUM


@_message(CommandField.C_FIND_RSP)
@dataclass(slots=True)
class CFindRSP(_Response):
    affected_sop_class_uid: str = ""


@_message(CommandField.C_GET_RQ)
@dataclass(slots=True)
class CGetRQ(DimseMessage):
    message_id: int
    affected_sop_class_uid: str
    priority: Priority = Priority.MEDIUM


@_message(CommandField.C_GET_RSP)
@dataclass(slots=True)
class CGetRSP(_SubOperationResponse):
    pass


@_message(CommandField.C_MOVE_RQ)
@dataclass(slots=True)
class CMoveRQ(DimseMessage):
    message_id: int
    affected_sop_class_uid: str
    move_destination: str
    priority: Priority = Priority.MEDIUM


@_message(CommandField.C_MOVE_RSP)
@dataclass(slots=True)
class CMoveRSP(_SubOperationResponse):
    pass


@_message(CommandField.C_ECHO_RQ, "affected_sop_class_uid")
@dataclass(slots=True)
class CEchoRQ(DimseMessage):
    message_id: int
    affected_sop_class_uid: str = VERIFICATION_SOP_CLASS


@_message(CommandField.C_ECHO_RSP)
@dataclass(slots=True)
class CEchoRSP(_Response):
    affected_sop_class_uid: str = ""


@_message(CommandField.C_CANCEL_RQ)
@dataclass(slots=True)
class CCancelRQ(DimseMessage):
    message_id_being_responded_to: int


@_message(CommandField.N_EVENT_REPORT_RQ)
@dataclass(slots=True)
class NEventReportRQ(DimseMessage):
    message_id: int
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    event_type_id: int


@_message(CommandField.N_EVENT_REPORT_RSP)
@dataclass(slots=True)
class NEventReportRSP(_NResponse):
    event_type_id: int | None = None


@_message(CommandField.N_GET_RQ)
@dataclass(slots=True)
class NGetRQ(DimseMessage):
    message_id: int
    requested_sop_class_uid: str
    requested_sop_instance_uid: str
    attribute_identifier_list: tuple[int, ...] = ()


@_message(CommandField.N_GET_RSP)
@dataclass(slots=True)
class NGetRSP(_NResponse):
    pass


@_message(CommandField.N_SET_RQ)
@dataclass(slots=True)
class NSetRQ(DimseMessage):
    message_id: int
    requested_sop_class_uid: str
    requested_sop_instance_uid: str


@_message(CommandField.N_SET_RSP)
@dataclass(slots=True)
class NSetRSP(_NResponse):
    pass


@_message(CommandField.N_ACTION_RQ)
@dataclass(slots=True)
class NActionRQ(DimseMessage):
    message_id: int
    requested_sop_class_uid: str
    requested_sop_instance_uid: str
    action_type_id: int


@_message(CommandField.N_ACTION_RSP)
@dataclass(slots=True)
class NActionRSP(_NResponse):
    action_type_id: int | None = None


@_message(CommandField.N_CREATE_RQ)
@dataclass(slots=True)
class NCreateRQ(DimseMessage):
    message_id: int
    affected_sop_class_uid: str
    affected_sop_instance_uid: str = ""


@_message(CommandField.N_CREATE_RSP)
@dataclass(slots=True)
class NCreateRSP(_NResponse):
    pass


@_message(CommandField.N_DELETE_RQ)
@dataclass(slots=True)
class NDeleteRQ(DimseMessage):
    message_id: int
    requested_sop_class_uid: str
    requested_sop_instance_uid: str


@_message(CommandField.N_DELETE_RSP)
@dataclass(slots=True)
class NDeleteRSP(_NResponse):
    pass


@dataclass(slots=True)  # not frozen: made per message received, and frozen ones cost 3x to build
class DecodedCommand:
    """A received command set: the message, and whether a data set follows it."""

    message: DimseMessage
    has_dataset: bool


def encode_command(message: DimseMessage, has_dataset: bool) -> bytes:
    """The command set of `message` (Implicit VR LE, group length first); ValueError if invalid."""
    parts = []
    for name, tag, encode, required in message.encoding:
        if tag == _DATA_SET_TYPE_TAG:
            value: Any = DATASET_PRESENT if has_dataset else NO_DATASET
        else:
            value = getattr(message, name)
            if value in ABSENT:
                if required:
                    raise ValueError(f"{type(message).__name__}.{name} is mandatory")
                continue
        try:
            parts.append(encode(tag, value))
        except (struct.error, ValueError) as exc:
            raise ValueError(f"{type(message).__name__}.{name}={value!r}: {exc}") from exc
    body = b"".join(parts)
    return UL_ELEMENT.pack(COMMAND_GROUP, _GROUP_LENGTH_TAG, UL_SIZE, len(body)) + body


def decode_command(data: bytes | memoryview) -> DecodedCommand | DimseError:
    """Decode a complete command set; every problem is returned as a DimseError, never raised."""
    values: dict[str, Any] = {}
    invalid: dict[str, str] = {}  # field name -> why its value could not be read (a rare path)
    if problem := _decode_elements(bytes(data), values, invalid):
        return problem
    command_field = values.pop(_COMMAND_FIELD, None)
    data_set_type = values.pop(_DATA_SET_TYPE, None)
    if invalid and (problem := _first_invalid(invalid, _SYNTHESISED_ORDER)):
        return problem
    if command_field is None or data_set_type is None:
        missing = (name for name, value in zip(_SYNTHESISED_ORDER, (command_field, data_set_type)) if value is None)
        return DimseError(f"command set lacks {', '.join(sorted(missing))}")
    cls = MESSAGE_TYPES.get(command_field)
    if cls is None:
        return DimseError(f"unknown command field 0x{command_field:04X}")
    names = cls.field_names
    if not names.issuperset(values):  # elements that belong to other messages are ignored
        values = {name: value for name, value in values.items() if name in names}
    if invalid and (problem := _first_invalid(invalid, cls.field_order)):
        return problem
    if missing := cls.required.difference(values):
        return DimseError(f"{cls.__name__} lacks mandatory {', '.join(sorted(missing))}")
    return DecodedCommand(cls(**values), data_set_type != NO_DATASET)


def _decode_elements(data: bytes, values: dict[str, Any], invalid: dict[str, str]) -> DimseError | None:
    """Read the command set `data` in one pass: the value of each known, non-empty element into
    `values` by field name (or why it cannot be read into `invalid`), the last one counting where an
    element repeats; unknown elements are skipped. A DimseError if an element runs past the end or
    is not a command element."""
    offset, end = 0, len(data)
    header_size, unpack_header, specs = ELEMENT_HEADER.size, ELEMENT_HEADER.unpack_from, _SPECS_BY_TAG
    while offset < end:
        if end - offset < header_size:
            return DimseError(f"command set ends inside an element header at byte {offset}")
        group, element, length = unpack_header(data, offset)
        offset += header_size
        if length > end - offset:
            return DimseError(
                f"element ({group:04X},{element:04X}) has length {length} "
                f"but only {end - offset} bytes remain"
            )
        if group != COMMAND_GROUP:
            return DimseError(f"element ({group:04X},{element:04X}) is not a command element")
        spec = specs.get(element)
        if spec is not None:
            name = spec.name
            try:
                value = spec.decode(data[offset : offset + length]) if length else None
            except ValueError as exc:
                invalid[name] = f"{name}: {exc}"
                values.pop(name, None)
            else:
                if value in ABSENT:  # empty, or a value of padding only
                    values.pop(name, None)
                else:
                    values[name] = value
                if invalid:
                    invalid.pop(name, None)
        offset += length
    return None


def _first_invalid(invalid: dict[str, str], names: Iterable[str]) -> DimseError | None:
    """The error of the first of `names` whose value could not be read, if any."""
    for name in names:
        if name in invalid:
            return DimseError(invalid[name])
    return None


def status_dataset(message: DimseMessage) -> Dataset:
    """The response as the pydicom Dataset an SCU call returns (Status and what else is present)."""
    if not message.is_response:
        raise TypeError(f"{type(message).__name__} is not a response")
    return _to_dataset(message, include_synthesised=False, has_dataset=False)


def command_dataset(message: DimseMessage, has_dataset: bool = False) -> Dataset:
    """The whole command set as a pydicom Dataset (without the group length), e.g. for logs."""
    return _to_dataset(message, include_synthesised=True, has_dataset=has_dataset)


def _to_dataset(message: DimseMessage, include_synthesised: bool, has_dataset: bool) -> Dataset:
    """Elements are handed to pydicom raw, as encoded: it converts each only when read."""
    elements = {}
    for spec in message.plan:
        if spec.name == _DATA_SET_TYPE:
            value: Any = DATASET_PRESENT if has_dataset else NO_DATASET
        else:
            value = getattr(message, spec.name)
        if value in ABSENT or (spec.name in _SYNTHESISED and not include_synthesised):
            continue
        encoded = spec.encode(spec.tag, value)
        tag = BaseTag(spec.tag)  # group 0000: the tag is the element number
        raw = encoded[ELEMENT_HEADER.size :]
        elements[tag] = RawDataElement(tag, spec.tag.vr, len(raw), raw, 0, True, True)
    return _new_dataset(elements)


# The state of an empty pydicom Dataset, copied into every status Dataset we build.
_EMPTY_DATASET_STATE = Dataset().__dict__


def _new_dataset(elements: dict) -> Dataset:
    """A Dataset holding `elements`, built without Dataset.__init__.

    Measured: __init__ (a dozen attribute sets through Dataset.__setattr__) was
    close to half of an SCU's CPU time per C-ECHO. The new dataset gets the
    state an empty Dataset has, with its own copy of every container in it.
    """
    dataset = Dataset.__new__(Dataset)
    state = {name: value.copy() if isinstance(value, dict) else value for name, value in _EMPTY_DATASET_STATE.items()}
    state["_dict"] = elements
    dataset.__dict__.update(state)
    return dataset
