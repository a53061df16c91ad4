"""DIMSE messages over P-DATA: fragmentation into P-DATA-TF PDUs, and reassembly from PDVs.

This module owns PS3.8 Annex E as applied to one message: how a command set and its data set are
cut into PDV fragments that fit the peer's maximum PDU length, and how the PDVs received on an
association are put back together into an `AssembledMessage`. Command-set encoding lives in
`router.net.dimse_messages`; PDU encoding lives in `router.net.pdu`.

Sending (`fragment`): every fragment has an even length; the PDVs of one message are packed into
as few PDUs as fit, so a small message (command and data set) travels in a single P-DATA-TF, and a
large data set is cut into slices of the buffer it came in (memoryviews, never copies).

Receiving (`MessageAssembler`): the caller checks that a PDV's context was accepted; the assembler
checks the order of fragments (PS3.8 E.1). Protocol violations are returned as `DimseError`
values. Data-set fragments go straight to a `DatasetSink`, which may stream them elsewhere, so
memory stays bounded by the command-set limit and the sink. Odd-length fragments are tolerated
on receipt (the PDV length is explicit), although we never send one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from router.net.codes import PDV_HEADER_LENGTH
from router.net.dimse_messages import DimseMessage, decode_command
from router.net.errors import DimseError
from router.net.pdu import PDV, PDataTF, pdata_header, pdv_header

__all__ = [
    "DEFAULT_PDU_LENGTH",
    "MAX_COMMAND_LENGTH",
    "MIN_PDU_LENGTH",
    "carries_data",
    "AssembledMessage",
    "BytesSink",
    "DatasetSink",
    "MessageAssembler",
    "SinkFactory",
    "fragment",
]

#: PDU length used when the peer announced 0 (no limit): big enough to make per-PDU costs
#: negligible, small enough to interleave with other work.
DEFAULT_PDU_LENGTH = 1 << 20
_MIN_FRAGMENT = 2  # the smallest non-empty even fragment
#: The smallest maximum PDU length we can send within: one PDV holding a 2-byte fragment.
MIN_PDU_LENGTH = PDV_HEADER_LENGTH + _MIN_FRAGMENT


def carries_data(max_pdu_length: int | None) -> bool:
    """False for a maximum PDU length (0 or absent: no limit) too small for any fragment."""
    return not max_pdu_length or max_pdu_length >= MIN_PDU_LENGTH

#: Largest command set we buffer. Real ones are a few hundred bytes; this bounds a hostile peer.
MAX_COMMAND_LENGTH = 1 << 16
_MAX_CONTEXT_ID = 255


def fragment(
    context_id: int,
    command: bytes | memoryview,
    dataset: bytes | memoryview | None,
    max_pdu_length: int,
) -> Iterator[PDataTF]:
    """P-DATA-TF PDUs carrying one message, each with a PDU-length of at most `max_pdu_length`.

    `max_pdu_length` is the maximum the PEER announced (0 = unlimited). Raises ValueError for an
    invalid context id, a PDU limit too small for any fragment, or an odd-length command or data
    set (the caller pads data sets to even length).
    """
    if not (0 < context_id <= _MAX_CONTEXT_ID and context_id % 2):
        raise ValueError(f"presentation context id {context_id} is not odd in 1..255")
    limit = max_pdu_length or DEFAULT_PDU_LENGTH
    if limit < MIN_PDU_LENGTH:
        raise ValueError(f"maximum PDU length {limit} is below {MIN_PDU_LENGTH}")
    parts = [(True, _byte_view(command, "command set"))]
    if dataset is not None:
        parts.append((False, _byte_view(dataset, "data set")))
    return _Packer(limit).pack(context_id, parts)  # arguments checked now, PDUs made lazily


def encode_single_pdu(context_id: int, command: bytes, max_pdu_length: int) -> bytes | None:
    """A message without a data set as one encoded P-DATA-TF, or None if it needs more PDUs.

    The fast path for the small messages (C-ECHO, responses) that make up most
    round trips: no PDV or PDU objects, one bytes object ready to send.
    """
    length = PDV_HEADER_LENGTH + len(command)
    if max_pdu_length and length > max_pdu_length or len(command) % 2:
        return None
    return pdata_header(length) + pdv_header(context_id, True, True, len(command)) + command


def data_set_pdus_block_size(max_pdu_length: int, most: int) -> int:
    """The largest block size up to `most` that `data_set_pdus` cuts into full fragments only
    (a block that ends in a sliver would send a PDU of a few bytes per block)."""
    size = data_fragment_size(max_pdu_length)
    return max(size, most - most % size)


def data_fragment_size(max_pdu_length: int) -> int:
    """The data-set fragment carried by one PDU no longer than `max_pdu_length` (0: our default)."""
    limit = max_pdu_length or DEFAULT_PDU_LENGTH
    size = limit - PDV_HEADER_LENGTH
    size -= size % 2
    if size < _MIN_FRAGMENT:
        raise ValueError(f"maximum PDU length {limit} is below {MIN_PDU_LENGTH}")
    return size


def data_set_pdus(
    context_id: int, blocks: Iterable[memoryview], length: int, max_pdu_length: int
) -> Iterator[tuple[bytes | memoryview, ...]]:
    """Encoded P-DATA-TF PDUs carrying a data set of `length` bytes read as `blocks`.

    For data sets too large to hold: each PDU is encoded as the blocks arrive,
    one PDV per PDU, fragments as large as the peer's maximum allows. A PDU
    comes as the chunks that follow each other on the wire: its 12 bytes of
    headers, then its fragment, a view of the block (not a copy), then the NUL
    that pads an odd total length. ValueError if the blocks hold more or fewer
    than `length` bytes.
    """
    size = data_fragment_size(max_pdu_length)
    sent = 0
    if length == 0:
        yield (_pdv_headers(context_id, True, 0),)
        return
    full = _pdv_headers(context_id, False, size)  # the headers of every PDU but the last, as a rule
    for block in blocks:
        for start in range(0, len(block), size):
            piece = block[start : start + size]
            sent += len(piece)
            if sent > length:
                raise ValueError(f"the data set holds more than the {length} bytes announced")
            if sent < length and len(piece) == size:
                yield (full, piece)
                continue
            last = sent == length
            padding = len(piece) % 2 if last else 0
            headers = _pdv_headers(context_id, last, len(piece) + padding)
            yield (headers, piece, b"\0") if padding else (headers, piece)
    if sent != length:
        raise ValueError(f"the data set ended after {sent} of the {length} bytes announced")


def _pdv_headers(context_id: int, last: bool, fragment_length: int) -> bytes:
    """The P-DATA-TF and PDV headers (12 bytes) of a PDU carrying one data set fragment."""
    return pdata_header(PDV_HEADER_LENGTH + fragment_length) + pdv_header(context_id, False, last, fragment_length)


def _byte_view(payload: bytes | memoryview, what: str) -> memoryview:
    view = memoryview(payload).cast("B")
    if len(view) % 2:
        raise ValueError(f"{what} has odd length {len(view)}; PDV fragments must be even")
    return view


class _Packer:
    """Cuts payloads into PDVs and packs consecutive PDVs into PDUs no longer than `limit`."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._pdvs: list[PDV] = []
        self._used = 0  # PDU-length of the PDVs in self._pdvs

    def pack(self, context_id: int, parts: list[tuple[bool, memoryview]]) -> Iterator[PDataTF]:
        for is_command, view in parts:
            yield from self._add(context_id, is_command, view)
        yield from self._flush()

    def _add(self, context_id: int, is_command: bool, view: memoryview) -> Iterator[PDataTF]:
        offset, total = 0, len(view)
        while True:
            room = self._room()
            if room < min(total - offset, _MIN_FRAGMENT):
                yield from self._flush()  # no room for even the smallest fragment
                continue
            end = offset + min(room, total - offset)
            self._pdvs.append(PDV(context_id, is_command, end == total, view[offset:end]))
            self._used += PDV_HEADER_LENGTH + end - offset
            offset = end
            if offset == total:
                return

    def _room(self) -> int:
        """The largest even fragment the current PDU can still take (negative if none)."""
        room = self._limit - self._used - PDV_HEADER_LENGTH
        return room - room % 2

    def _flush(self) -> Iterator[PDataTF]:
        if self._pdvs:
            yield PDataTF(tuple(self._pdvs))
        self._pdvs, self._used = [], 0


class DatasetSink(Protocol):
    """Receives the data-set fragments of one message, in order, then is finished once."""

    def write(self, fragment: memoryview) -> None:
        """Take a fragment: a view of received bytes that are never written again, so it may be kept."""

    def finish(self) -> object:
        """The data set is complete; the return value becomes `AssembledMessage.dataset`."""


#: Makes the sink for a message whose command has just been decoded: (context id, message).
SinkFactory = Callable[[int, DimseMessage], DatasetSink]


class BytesSink:
    """The default sink: keeps the data set in memory and returns it as bytes."""

    def __init__(self) -> None:
        self._parts: list[memoryview] = []

    def write(self, fragment: memoryview) -> None:
        self._parts.append(fragment)

    def finish(self) -> bytes:
        return b"".join(self._parts)  # the one copy, into the bytes handed over


def _bytes_sink(context_id: int, message: DimseMessage) -> DatasetSink:
    return BytesSink()


@dataclass(slots=True)  # not frozen: made per message, and frozen ones cost 3x to build
class AssembledMessage:
    """A complete received message. `dataset` is what the sink's `finish` returned (by default
    the data set bytes in the context's transfer syntax), or None when there is no data set."""

    context_id: int
    message: DimseMessage
    dataset: Any  # bytes (default sink), what a custom sink's finish returned, or None


class MessageAssembler:
    """Puts received PDVs back together into messages, one message at a time (PS3.8 E.1).

    `feed` takes the PDVs in arrival order and returns an `AssembledMessage` when one completes,
    a `DimseError` for a protocol violation (the assembler then starts afresh; the association
    should be aborted), or None while the message is incomplete.
    """

    def __init__(self, dataset_sink: SinkFactory | None = None) -> None:
        self._sink_factory = dataset_sink or _bytes_sink
        self._reset()

    @property
    def in_progress(self) -> bool:
        """True while part of a message has been received."""
        return self._context_id is not None

    def abandon(self) -> None:
        """Drop a message cut off mid-way; a sink with an `abandon` method releases what it holds."""
        abandon = getattr(self._sink, "abandon", None)
        if abandon is not None:
            abandon()
        self._reset()

    def _reset(self) -> None:
        self._context_id: int | None = None
        self._command = bytearray()
        self._message: DimseMessage | None = None  # set while its data set is being received
        self._sink: DatasetSink | None = None

    def feed(self, pdv: PDV) -> AssembledMessage | DimseError | None:
        """Take the next PDV received (its context already checked as accepted)."""
        if self._context_id is not None and pdv.context_id != self._context_id:
            return self._fail(
                f"PDV for context {pdv.context_id} in the middle of a message on context "
                f"{self._context_id}"
            )
        if pdv.is_command:
            return self._feed_command(pdv)
        return self._feed_data(pdv)

    def _feed_command(self, pdv: PDV) -> AssembledMessage | DimseError | None:
        if self._message is not None:
            return self._fail("command fragment received while a data set is open")
        if len(self._command) + len(pdv.data) > MAX_COMMAND_LENGTH:
            return self._fail(f"command set longer than {MAX_COMMAND_LENGTH} bytes")
        self._context_id = pdv.context_id
        if not pdv.is_last:
            self._command += pdv.data
            return None
        # A command set in one fragment, the usual case, is decoded where it lies, without a copy.
        decoded = decode_command(pdv.data if not self._command else self._command + pdv.data)
        if isinstance(decoded, DimseError):
            return self._fail(f"undecodable command set: {decoded}")
        if not decoded.has_dataset:
            return self._complete(pdv.context_id, decoded.message, None)
        self._sink = self._sink_factory(pdv.context_id, decoded.message)
        self._message = decoded.message
        if self._command:
            self._command = bytearray()
        return None

    def _feed_data(self, pdv: PDV) -> AssembledMessage | DimseError | None:
        if self._message is None or self._sink is None:
            return self._fail("data-set fragment received before its command set was complete")
        self._sink.write(memoryview(pdv.data))
        if not pdv.is_last:
            return None
        return self._complete(pdv.context_id, self._message, self._sink.finish())

    def _complete(self, context_id: int, message: DimseMessage, dataset: Any) -> AssembledMessage:
        self._reset()
        return AssembledMessage(context_id, message, dataset)

    def _fail(self, reason: str) -> DimseError:
        self._reset()
        return DimseError(reason)
