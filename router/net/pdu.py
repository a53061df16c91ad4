"""The seven Upper Layer PDUs (PS3.8 9.3): dataclasses, ``encode`` and the framing decoder.

This module owns the PDU dataclasses, their encoding, and the sans-IO decoding API:

* :func:`decode` looks at a receive buffer and returns :data:`INCOMPLETE` (read more),
  :class:`Decoded` (a PDU and how many bytes it used) or a :class:`PduError` value. It never raises
  and never waits for the body of a PDU whose announced length is above the caller's limit.
* :func:`read_header` and :func:`decode_body` serve a driver that reads the 6-byte header and the
  body separately.
* :func:`pdata_header` and :func:`pdv_header` let a driver write a P-DATA-TF with scatter/gather I/O
  (``socket.sendmsg([pdata_header(...), pdv_header(...), fragment])``) without copying fragments.

**Zero copy.** The ``data`` of each decoded :class:`PDV` is a ``memoryview`` slice of the buffer
given to :func:`decode`. Consume (or ``bytes()``-copy) the fragments before mutating that buffer;
while such a view is alive a ``bytearray`` cannot be resized (``BufferError``). Every other decoded
PDU holds no reference to the buffer.

Items and sub-items of the association PDUs live in :mod:`router.net.pdu_items`.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Literal, Union

from router.net.codes import APPLICATION_CONTEXT_NAME, HEADER_LENGTH, MCH_COMMAND, MCH_LAST
from router.net.codes import PDV_HEADER_LENGTH, PROTOCOL_VERSION, AbortReason, AbortSource, ItemType
from router.net.codes import PduType, RejectResult, RejectSource, reject_reason_enum
from router.net.errors import PduError, PduTooLarge
from router.net.pdu_items import PresentationContextAC, PresentationContextRQ, UnknownItem
from router.net.pdu_items import UserInformation, check_context_id, decode_text, encode_any
from router.net.pdu_items import encode_item, encode_text, fail, iter_items

__all__ = [
    "DEFAULT_MAX_ASSOCIATION_PDU", "HEADER_LENGTH", "INCOMPLETE", "PDV", "Abort", "AssociateAC",
    "AssociateRJ", "AssociateRQ", "Decoded", "Incomplete", "PDataTF", "Pdu", "ReleaseRP",
    "ReleaseRQ", "decode", "decode_body", "encode", "pdata_header", "pdv_header", "read_header",
]  # fmt: skip

#: Cap on the length of any PDU other than P-DATA-TF (association PDUs can hold many contexts).
DEFAULT_MAX_ASSOCIATION_PDU = 1 << 20

_PDU_HEADER = struct.Struct(">BxI")  # PDU-type, reserved, PDU-length
_P_DATA_TF = int(PduType.P_DATA_TF)  # compared on every PDU decoded: a plain int
_ASSOCIATION_FIXED = struct.Struct(">H2x16s16s32x")  # version, reserved, called, calling, reserved
_REJECT = struct.Struct(">xBBB")  # reserved, result, source, reason
_ABORT = struct.Struct(">2xBB")  # reserved, reserved, source, reason
_RELEASE = struct.Struct(">4x")  # reserved
_PDV_HEADER = struct.Struct(">IBB")  # item-length, context-id, message control header
_FIXED_BODY_LENGTH = 4  # body of A-ASSOCIATE-RJ, A-RELEASE-RQ/RP and A-ABORT
_PDV_LENGTH_FIELD = 4
_PDV_MINIMUM_ITEM_LENGTH = PDV_HEADER_LENGTH - _PDV_LENGTH_FIELD  # context-id + header
_PDU_LENGTH_OFFSET = 2
_AE_TITLE_LENGTH = 16
_AE_PADDING = b" "
_AE_STRIPPED = " \0"
_AE_ENCODING = "latin-1"  # ISO 646 on the wire; Latin-1 keeps any received byte for the echo
_INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE
_UNEXPECTED = AbortReason.UNEXPECTED_PDU_PARAMETER


@dataclass(frozen=True, slots=True)
class AssociateRQ:
    """A-ASSOCIATE-RQ (PS3.8 9.3.2)."""

    called_ae_title: str
    calling_ae_title: str
    presentation_contexts: tuple[PresentationContextRQ, ...]
    user_information: UserInformation
    application_context: str = APPLICATION_CONTEXT_NAME
    protocol_version: int = PROTOCOL_VERSION
    unknown_items: tuple[UnknownItem, ...] = ()
    pdu_type: ClassVar[PduType] = PduType.ASSOCIATE_RQ


@dataclass(frozen=True, slots=True)
class AssociateAC:
    """A-ASSOCIATE-AC (PS3.8 9.3.3); the AE titles are the echoed reserved fields, never checked."""

    called_ae_title: str
    calling_ae_title: str
    presentation_contexts: tuple[PresentationContextAC, ...]
    user_information: UserInformation
    application_context: str = APPLICATION_CONTEXT_NAME
    protocol_version: int = PROTOCOL_VERSION
    unknown_items: tuple[UnknownItem, ...] = ()
    pdu_type: ClassVar[PduType] = PduType.ASSOCIATE_AC


@dataclass(frozen=True, slots=True)
class AssociateRJ:
    """A-ASSOCIATE-RJ (PS3.8 9.3.4); ``reason`` is decoded as the enum of its source.

    Its wording is :func:`router.net.codes.reject_reason_text`.
    """

    result: RejectResult
    source: RejectSource
    reason: int
    pdu_type: ClassVar[PduType] = PduType.ASSOCIATE_RJ


@dataclass(slots=True)  # not frozen, like PDataTF and Decoded: made per PDU, and frozen ones cost 3x to build
class PDV:
    """One presentation data value: a command or data-set fragment (PS3.8 9.3.5, Annex E).

    Decoded fragments are ``memoryview`` slices of the receive buffer (see the module docstring).
    """

    context_id: int
    is_command: bool
    is_last: bool
    data: bytes | memoryview


@dataclass(slots=True)
class PDataTF:
    """P-DATA-TF (PS3.8 9.3.5): one or more PDVs, all of the same message."""

    pdvs: tuple[PDV, ...]
    pdu_type: ClassVar[PduType] = PduType.P_DATA_TF


@dataclass(frozen=True, slots=True)
class ReleaseRQ:
    """A-RELEASE-RQ (PS3.8 9.3.6)."""

    pdu_type: ClassVar[PduType] = PduType.RELEASE_RQ


@dataclass(frozen=True, slots=True)
class ReleaseRP:
    """A-RELEASE-RP (PS3.8 9.3.7)."""

    pdu_type: ClassVar[PduType] = PduType.RELEASE_RP


@dataclass(frozen=True, slots=True)
class Abort:
    """A-ABORT (PS3.8 9.3.8); ``reason`` is meaningful only when the source is the provider."""

    source: AbortSource = AbortSource.SERVICE_USER
    reason: AbortReason = AbortReason.NOT_SPECIFIED
    pdu_type: ClassVar[PduType] = PduType.ABORT


Pdu = Union[AssociateRQ, AssociateAC, AssociateRJ, PDataTF, ReleaseRQ, ReleaseRP, Abort]


class Incomplete(enum.Enum):
    """Type of the :data:`INCOMPLETE` sentinel: the buffer does not yet hold a whole PDU."""

    INCOMPLETE = "incomplete"


INCOMPLETE: Literal[Incomplete.INCOMPLETE] = Incomplete.INCOMPLETE


@dataclass(slots=True)
class Decoded:
    """A decoded PDU and ``size``, the bytes it used in the buffer, header included."""

    pdu: Pdu
    size: int


# Encoding ------------------------------------------------------------------------------------


def encode(pdu: Pdu) -> bytes:
    """Encode a PDU, header included. Raises ``ValueError`` for a value that cannot be encoded."""
    encoder = _ENCODERS.get(type(pdu))
    if encoder is None:
        raise TypeError(f"not a PDU: {pdu!r}")
    parts = encoder(pdu)
    header = _PDU_HEADER.pack(pdu.pdu_type, sum(map(len, parts)))
    return b"".join((header, *parts))


def pdata_header(total_pdv_length: int) -> bytes:
    """The 6-byte header of a P-DATA-TF whose PDV items take ``total_pdv_length`` bytes.

    Each PDV item takes ``PDV_HEADER_LENGTH + len(fragment)`` bytes (its own header included).
    """
    return _PDU_HEADER.pack(PduType.P_DATA_TF, total_pdv_length)


def pdv_header(context_id: int, is_command: bool, is_last: bool, fragment_length: int) -> bytes:
    """The 6-byte header of one PDV item, to be followed on the wire by its fragment."""
    control = (MCH_COMMAND if is_command else 0) | (MCH_LAST if is_last else 0)
    return _PDV_HEADER.pack(_PDV_MINIMUM_ITEM_LENGTH + fragment_length, context_id, control)


def _encode_ae(title: str) -> bytes:
    raw = title.encode(_AE_ENCODING)
    if len(raw) > _AE_TITLE_LENGTH:
        raise ValueError(f"AE title {title!r} is longer than {_AE_TITLE_LENGTH} bytes")
    return raw.ljust(_AE_TITLE_LENGTH, _AE_PADDING)


def _encode_association(pdu: AssociateRQ | AssociateAC) -> list[bytes]:
    """Fixed fields, then every variable item in increasing item-type order (stable)."""
    context_name = encode_item(ItemType.APPLICATION_CONTEXT, encode_text(pdu.application_context))
    items = [(ItemType.APPLICATION_CONTEXT, context_name)]
    items += ((item.item_type, encode_any(item)) for item in pdu.presentation_contexts)
    items.append((ItemType.USER_INFORMATION, encode_any(pdu.user_information)))
    items += ((item.item_type, encode_any(item)) for item in pdu.unknown_items)
    items.sort(key=lambda pair: pair[0])
    called, calling = _encode_ae(pdu.called_ae_title), _encode_ae(pdu.calling_ae_title)
    fixed = _ASSOCIATION_FIXED.pack(pdu.protocol_version, called, calling)
    return [fixed, *(data for _, data in items)]


def _encode_pdata(pdu: PDataTF) -> list[bytes | memoryview]:
    parts: list[bytes | memoryview] = []
    for pdv in pdu.pdvs:
        parts += (pdv_header(pdv.context_id, pdv.is_command, pdv.is_last, len(pdv.data)), pdv.data)
    return parts


_ENCODERS: dict[type, Callable[..., list]] = {
    AssociateRQ: _encode_association,
    AssociateAC: _encode_association,
    AssociateRJ: lambda pdu: [_REJECT.pack(pdu.result, pdu.source, pdu.reason)],
    PDataTF: _encode_pdata,
    ReleaseRQ: lambda pdu: [_RELEASE.pack()],
    ReleaseRP: lambda pdu: [_RELEASE.pack()],
    Abort: lambda pdu: [_ABORT.pack(pdu.source, pdu.reason)],
}


# Decoding ------------------------------------------------------------------------------------


def read_header(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int]:
    """``(pdu_type, pdu_length)`` from the 6 bytes at ``offset`` in ``buf`` (which must hold them)."""
    return _PDU_HEADER.unpack_from(buf, offset)


def decode(
    buf: bytes | bytearray | memoryview,
    max_pdata_length: int,
    max_other_length: int = DEFAULT_MAX_ASSOCIATION_PDU,
) -> Incomplete | Decoded | PduError:
    """Decode the PDU at the start of ``buf``; never raises.

    ``max_pdata_length`` is the maximum PDU-length we announced for P-DATA-TF and
    ``max_other_length`` caps every other PDU type (0 = unlimited for both). A PDU-length above the
    cap returns :class:`PduTooLarge` as soon as the header is there, before its body arrives.
    """
    view = _byte_view(buf)
    if len(view) < HEADER_LENGTH:
        return INCOMPLETE
    pdu_type, length = _PDU_HEADER.unpack_from(view)
    decoder = _DECODERS.get(pdu_type)
    if decoder is None:
        return _unrecognized(pdu_type)
    limit = max_pdata_length if pdu_type == _P_DATA_TF else max_other_length
    if limit and length > limit:
        return PduTooLarge(length, limit)
    end = HEADER_LENGTH + length
    if len(view) < end:
        return INCOMPLETE
    try:
        return Decoded(decoder(view[HEADER_LENGTH:end]), end)
    except PduError as error:
        return error.with_traceback(None)  # see _decode_with


def decode_body(pdu_type: int, body: bytes | bytearray | memoryview) -> Pdu | PduError:
    """Decode the body (the bytes after the header) of a PDU of ``pdu_type``; never raises."""
    decoder = _DECODERS.get(pdu_type)
    if decoder is None:
        return _unrecognized(pdu_type)
    return _decode_with(decoder, _byte_view(body))


def _decode_with(decoder: Callable[[memoryview], Pdu], body: memoryview) -> Pdu | PduError:
    try:
        return decoder(body)
    except PduError as error:
        # Drop the traceback: its frames would keep the caller's buffer exported.
        return error.with_traceback(None)


def _byte_view(buf: bytes | bytearray | memoryview) -> memoryview:
    if type(buf) is memoryview and buf.format == "B":
        return buf  # a byte view already (a connection's slice of what it read): kept, not wrapped again
    view = memoryview(buf)
    return view if view.format == "B" else view.cast("B")


def _unrecognized(pdu_type: int) -> PduError:
    return PduError(f"unrecognized PDU type 0x{pdu_type:02X}", AbortReason.UNRECOGNIZED_PDU, 0)


def _check_fixed_length(body: memoryview, name: str) -> None:
    if len(body) != _FIXED_BODY_LENGTH:
        message = f"{name} PDU-length is {len(body)}, not {_FIXED_BODY_LENGTH}"
        raise PduError(message, _INVALID, _PDU_LENGTH_OFFSET)


def _decode_reject(body: memoryview) -> AssociateRJ:
    _check_fixed_length(body, "A-ASSOCIATE-RJ")
    result, source, reason = _REJECT.unpack_from(body)
    typed_reason = reject_reason_enum(source, reason)
    return AssociateRJ(RejectResult(result), RejectSource(source), typed_reason)


def _decode_abort(body: memoryview) -> Abort:
    _check_fixed_length(body, "A-ABORT")
    source, reason = _ABORT.unpack_from(body)
    return Abort(AbortSource(source), AbortReason(reason))


def _decode_release_rq(body: memoryview) -> ReleaseRQ:
    _check_fixed_length(body, "A-RELEASE-RQ")
    return ReleaseRQ()


def _decode_release_rp(body: memoryview) -> ReleaseRP:
    _check_fixed_length(body, "A-RELEASE-RP")
    return ReleaseRP()


def _decode_pdata(body: memoryview) -> PDataTF:
    pdvs = []
    pos, end, unpack = 0, len(body), _PDV_HEADER.unpack_from
    while pos < end:
        if end - pos < PDV_HEADER_LENGTH:
            fail("truncated PDV item header", pos)
        item_length, context_id, control = unpack(body, pos)
        stop = pos + _PDV_LENGTH_FIELD + item_length
        if item_length < _PDV_MINIMUM_ITEM_LENGTH or stop > end:
            fail(f"PDV item-length {item_length} is invalid", pos)
        check_context_id(context_id, pos + _PDV_LENGTH_FIELD)
        data = body[pos + PDV_HEADER_LENGTH : stop]
        pdvs.append(PDV(context_id, bool(control & MCH_COMMAND), bool(control & MCH_LAST), data))
        pos = stop
    if not pdvs:
        fail("P-DATA-TF holds no PDV item", pos)
    return PDataTF(tuple(pdvs))


def _decode_ae(raw: bytes) -> str:
    return raw.decode(_AE_ENCODING).strip(_AE_STRIPPED)


class _AssociationItems:
    """Collects the variable items of an A-ASSOCIATE-RQ/AC as they are read."""

    __slots__ = ("context_class", "application_context", "contexts", "user_information", "unknown")

    def __init__(self, context_class: type) -> None:
        self.context_class = context_class
        self.application_context: str | None = None
        self.contexts: list = []
        self.user_information: UserInformation | None = None
        self.unknown: list[UnknownItem] = []

    def add(self, buf: memoryview, item_type: int, start: int, stop: int) -> None:
        if item_type == self.context_class.item_type:
            self.contexts.append(self.context_class.decode_value(buf, start, stop))
        elif item_type == ItemType.APPLICATION_CONTEXT:
            if self.application_context is not None:
                fail("second application context item", start, _UNEXPECTED)
            self.application_context = decode_text(buf, start, stop)
        elif item_type == ItemType.USER_INFORMATION:
            if self.user_information is not None:
                fail("second user information item", start, _UNEXPECTED)
            self.user_information = UserInformation.decode_value(buf, start, stop)
        else:
            self.unknown.append(UnknownItem(item_type, bytes(buf[start:stop])))

    def check_complete(self, end: int) -> None:
        if self.application_context is None:
            fail("no application context item", end)
        if not self.contexts:
            fail("no presentation context item", end)
        if self.user_information is None:
            fail("no user information item", end)


def _decode_association(pdu_class: type, context_class: type, body: memoryview) -> Pdu:
    if len(body) < _ASSOCIATION_FIXED.size:
        fail(f"{pdu_class.__name__} shorter than its fixed fields", len(body))
    version, called, calling = _ASSOCIATION_FIXED.unpack_from(body)
    items = _AssociationItems(context_class)
    for item_type, start, stop in iter_items(body, _ASSOCIATION_FIXED.size, len(body)):
        items.add(body, item_type, start, stop)
    items.check_complete(len(body))
    return pdu_class(
        _decode_ae(called),
        _decode_ae(calling),
        tuple(items.contexts),
        items.user_information,
        items.application_context,
        version,
        tuple(items.unknown),
    )


_DECODERS: dict[int, Callable[[memoryview], Pdu]] = {
    PduType.ASSOCIATE_RQ: partial(_decode_association, AssociateRQ, PresentationContextRQ),
    PduType.ASSOCIATE_AC: partial(_decode_association, AssociateAC, PresentationContextAC),
    PduType.ASSOCIATE_RJ: _decode_reject,
    PduType.P_DATA_TF: _decode_pdata,
    PduType.RELEASE_RQ: _decode_release_rq,
    PduType.RELEASE_RP: _decode_release_rp,
    PduType.ABORT: _decode_abort,
}
