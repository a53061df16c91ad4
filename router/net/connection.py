"""The sans-IO Upper Layer connection: bytes and primitives in, bytes and indications out.

A `Connection` runs the PS3.8 state machine (`router.net.fsm`) for one side of
one association. It owns no socket, no thread and no clock: the driver feeds it
received bytes and the current time, asks it for the bytes to send, the next
indication for the user, and the next deadline (the ARTIM timer). Two
connections can be wired together in memory, which is how the state table is
tested. Received bytes are never copied more than needed: a large PDU's rest
is read by the driver straight into a buffer the connection hands out for it
(`pdu_buffer`), and the fragments of a decoded P-DATA-TF are views of bytes
that are never written again, so a data-set sink may keep them.

After an invalid PDU has been answered with an A-ABORT, the bytes that follow
are not PDUs (the framing is lost): they are discarded until the transport
closes, instead of being answered with one more A-ABORT per read.

ABORT sources: AA-1 sends a service-user abort as the standard says (source 0);
AA-7 and AA-8 send a service-provider abort whose reason is "unexpected PDU",
or the decoder's reason when the PDU was invalid.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Union

from router.net.codes import AbortReason, AbortSource, RejectResult, RejectSource
from router.net.codes import AcseRejectReason
from router.net.errors import NetError, PduError
from router.net.fsm import STEPS, Event, State
from router.net.pdu import HEADER_LENGTH, Abort, AssociateAC, AssociateRJ, AssociateRQ, Decoded, PDataTF
from router.net.pdu import Pdu, ReleaseRP, ReleaseRQ, decode, encode, read_header

DEFAULT_ARTIM_TIMEOUT = 30.0
DEFAULT_MAX_PDATA_LENGTH = 16382
# The rest of a PDU at least this long is read straight into a buffer of its own (no joining of
# the reads it spans); up to this size, so that a header alone never makes us allocate gigabytes.
OWN_BUFFER_FROM = 32 << 10
OWN_BUFFER_UP_TO = 16 << 20
PROTOCOL_VERSION_BIT = 0x0001
_STA1, _STA6 = State.STA1, State.STA6  # read on every PDU: module globals, not Enum attribute lookups


class Role(Enum):
    """Which side of the association this connection plays."""

    REQUESTOR = "requestor"
    ACCEPTOR = "acceptor"


class UsageError(NetError):
    """A local primitive was issued in a state where the table has no entry for it."""


# Indications and confirmations handed to the user of the connection.
@dataclass(frozen=True, slots=True)
class AssociationRequested:
    """An A-ASSOCIATE-RQ arrived and passed the provider's checks (AE-6 to Sta3)."""

    request: AssociateRQ


@dataclass(frozen=True, slots=True)
class AssociationAccepted:
    """The peer accepted our A-ASSOCIATE-RQ (AE-3)."""

    accept: AssociateAC


@dataclass(frozen=True, slots=True)
class AssociationRejected:
    """The peer, or our provider, rejected the association (AE-4, or AE-6's reject branch)."""

    reject: AssociateRJ


@dataclass(slots=True)  # not frozen: made per P-DATA-TF, and frozen ones cost 3x to build
class DataReceived:
    """A P-DATA-TF arrived (DT-2, AR-6)."""

    pdu: PDataTF


@dataclass(frozen=True, slots=True)
class ReleaseRequested:
    """The peer asked to release; answer with `Connection.release_response` (AR-2, AR-8)."""

    collision: bool = False


@dataclass(frozen=True, slots=True)
class ReleaseConfirmed:
    """The release we asked for completed (AR-3, AR-10)."""


@dataclass(frozen=True, slots=True)
class Aborted:
    """The association was aborted (AA-3, AA-4, AA-8): by the peer or by a provider."""

    source: AbortSource
    reason: AbortReason
    by_peer: bool
    transport_closed: bool = False  # AA-4: the connection dropped without an A-ABORT


@dataclass(frozen=True, slots=True)
class Closed:
    """The transport is closed and the connection is back in Sta1."""


Indication = Union[
    AssociationRequested,
    AssociationAccepted,
    AssociationRejected,
    DataReceived,
    ReleaseRequested,
    ReleaseConfirmed,
    Aborted,
    Closed,
]

# The event each received PDU type raises, indexed by the PDU type's number.
_PDU_EVENTS: tuple[Event | None, ...] = (
    None,
    Event.RQ_RECEIVED,  # 0x01 A-ASSOCIATE-RQ
    Event.AC_RECEIVED,  # 0x02 A-ASSOCIATE-AC
    Event.RJ_RECEIVED,  # 0x03 A-ASSOCIATE-RJ
    Event.DATA_RECEIVED,  # 0x04 P-DATA-TF
    Event.RELEASE_RQ_RECEIVED,  # 0x05 A-RELEASE-RQ
    Event.RELEASE_RP_RECEIVED,  # 0x06 A-RELEASE-RP
    Event.ABORT_RECEIVED,  # 0x07 A-ABORT
)

Observer = Callable[..., None]


def _pdu_size(data: bytes) -> int:
    """Bytes needed to decode the PDU at the start of `data` (a header's worth if unknown)."""
    if len(data) < HEADER_LENGTH:
        return HEADER_LENGTH
    return HEADER_LENGTH + read_header(data)[1]


class Connection:
    """One side of one association, as a pure state machine over bytes."""

    def __init__(
        self,
        role: Role,
        *,
        artim_timeout: float = DEFAULT_ARTIM_TIMEOUT,
        max_pdata_length: int = DEFAULT_MAX_PDATA_LENGTH,
    ) -> None:
        self.role = role
        self.state = State.STA1
        self.artim_timeout = artim_timeout
        self.max_pdata_length = max_pdata_length
        self.artim_deadline: float | None = None
        self._request: AssociateRQ | None = None
        self._chunks: list[bytes | bytearray | memoryview] = []  # received bytes not yet decoded
        self._buffered = 0  # their total length
        self._needed = HEADER_LENGTH  # bytes needed before decoding can make progress
        self._pdu_buffer: bytearray | None = None  # a large PDU being read into a buffer of its own
        self._pdu_filled = 0  # how much of it has arrived
        self._outgoing: list[bytes | memoryview] = []
        # Indications and confirmations for the user, oldest first: take them with `next_indication`
        # or pop them from the left of this deque directly.
        self.indications: deque[Indication] = deque()
        self._pdu: Pdu | None = None  # the PDU behind the event being handled
        self._error: PduError | None = None
        self._framing_lost = False  # after an invalid PDU, later bytes are not PDUs
        # Optional observers, called synchronously: (old, event, action, new), (pdu) received
        # (every PDU but P-DATA-TF, which is indicated as DataReceived), (pdu) sent. The driver
        # turns them into user events.
        self.on_transition: Observer | None = None
        self.on_pdu_received: Observer | None = None
        self.on_pdu_sent: Observer | None = None

    # ---- transport inputs -------------------------------------------------
    def transport_connected(self, now: float) -> None:
        """The transport is open: Evt2 for a requestor, Evt5 for an acceptor."""
        if self.role is Role.REQUESTOR:
            self._handle(Event.TRANSPORT_CONFIRM, now)
        else:
            self._handle(Event.TRANSPORT_INDICATION, now)

    def receive_data(self, data: bytes | bytearray, now: float) -> None:
        """Feed bytes read from the transport; `b""` means the peer closed it."""
        if not data:
            self._handle(Event.TRANSPORT_CLOSED, now)
            return
        if self._framing_lost:
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered >= self._needed:
            self._parse(now)

    def pdu_buffer(self) -> memoryview | None:
        """Where the next read should go: the unfilled part of a large PDU's own buffer, or None.

        When the PDU being received still lacks many bytes, they are better read
        straight into one buffer holding the whole PDU than collected read by
        read and joined: the driver reads into this view and reports the count
        with `pdu_buffer_filled`. Otherwise (None) it feeds `receive_data`.
        """
        if self._pdu_buffer is None:
            missing = self._needed - self._buffered
            if missing < OWN_BUFFER_FROM or self._needed > OWN_BUFFER_UP_TO or self._framing_lost:
                return None
            self._pdu_buffer = bytearray(self._needed)
            start = 0
            for chunk in self._chunks:  # the PDU's start, a read's worth at most
                self._pdu_buffer[start : start + len(chunk)] = chunk
                start += len(chunk)
            self._pdu_filled, self._chunks, self._buffered = start, [], 0
        return memoryview(self._pdu_buffer)[self._pdu_filled :]

    def pdu_buffer_filled(self, count: int, now: float) -> None:
        """`count` bytes were read into `pdu_buffer()`; 0 means the peer closed the transport."""
        if not count:
            self._handle(Event.TRANSPORT_CLOSED, now)
            return
        assert self._pdu_buffer is not None
        self._pdu_filled += count
        if self._pdu_filled < len(self._pdu_buffer):
            return
        whole, self._pdu_buffer = self._pdu_buffer, None
        self.receive_data(whole, now)  # never written again: its fragments stay valid

    def tick(self, now: float) -> None:
        """Advance the timers: fires Evt18 when ARTIM has expired."""
        if self.artim_deadline is not None and now >= self.artim_deadline:
            self.artim_deadline = None
            self._handle(Event.ARTIM_EXPIRED, now)

    # ---- user primitives --------------------------------------------------
    def request_association(self, request: AssociateRQ, now: float) -> None:
        """A-ASSOCIATE request (Evt1); the RQ is sent once the transport connects."""
        self._request = request
        self._primitive(Event.ASSOCIATE_REQUEST, now)

    def accept(self, accept: AssociateAC, now: float) -> None:
        """A-ASSOCIATE response, accept (Evt7)."""
        self._primitive(Event.ACCEPT_RESPONSE, now, accept)

    def reject(self, reject: AssociateRJ, now: float) -> None:
        """A-ASSOCIATE response, reject (Evt8)."""
        self._primitive(Event.REJECT_RESPONSE, now, reject)

    def send_data(self, pdu: PDataTF, now: float) -> None:
        """P-DATA request (Evt9)."""
        self._primitive(Event.DATA_REQUEST, now, pdu)

    def send_raw_data(self, encoded: bytes | tuple[bytes | memoryview, ...], now: float) -> None:
        """P-DATA request (Evt9) for P-DATA-TF PDUs the caller already encoded.

        They may come as the chunks that make them up, written in order without
        being joined; a memoryview among them must stay valid until flushed.
        Several PDUs may come in one request: in every state that allows it, a
        P-DATA request sends its PDU and leaves the state as it was, so one
        step stands for all of them. In Sta6 (DT-1) they are queued at once,
        without the state table's dispatch, unless a transition observer wants
        to see the step.
        """
        if self.state is State.STA6 and self.on_transition is None:
            self._send(encoded)
            return
        self._primitive(Event.DATA_REQUEST, now, encoded)

    def release_request(self, now: float) -> None:
        """A-RELEASE request (Evt11)."""
        self._primitive(Event.RELEASE_REQUEST, now)

    def release_response(self, now: float) -> None:
        """A-RELEASE response (Evt14)."""
        self._primitive(Event.RELEASE_RESPONSE, now)

    def abort(self, now: float) -> None:
        """A-ABORT request (Evt15); does nothing once the association is gone."""
        if self.state in (State.STA1, State.STA13):
            return
        self._primitive(Event.ABORT_REQUEST, now)

    # ---- outputs ----------------------------------------------------------
    def data_to_send(self) -> list[bytes | memoryview]:
        """Take the encoded PDUs waiting to be written, in order."""
        outgoing, self._outgoing = self._outgoing, []
        return outgoing

    def next_indication(self) -> Indication | None:
        """Take the next indication or confirmation for the user, if any."""
        return self.indications.popleft() if self.indications else None

    @property
    def is_closed(self) -> bool:
        """True once the connection is idle again: the driver closes the transport."""
        return self.state is State.STA1

    def next_deadline(self) -> float | None:
        """When `tick` must next be called, or None if no timer runs."""
        return self.artim_deadline

    # ---- the machine ------------------------------------------------------
    def _primitive(self, event: Event, now: float, pdu: object = None) -> None:
        if STEPS[event][self.state] is None:
            raise UsageError(f"{event.name} is not allowed in {self.state} ({self.state.name})")
        self._pdu = pdu  # type: ignore[assignment]
        self._handle(event, now)

    def _parse(self, now: float) -> None:
        """Decode every complete PDU buffered; keep the partial tail for the next read.

        Decoding works on objects never written again (bytes, or a PDU's own
        buffer once full), so the fragments of a P-DATA-TF (memoryviews into
        them) stay valid after the buffer moves on. A PDU whose start came in
        earlier reads is completed by joining its own bytes only; the PDUs
        after it are decoded in place in the last read.
        """
        last = memoryview(self._chunks.pop())
        views = [last]
        if self._chunks:
            start = b"".join(self._chunks)
            size = _pdu_size(start[:HEADER_LENGTH] + last[:HEADER_LENGTH])  # the header alone, not the whole start
            taken = min(size - len(start), len(last))
            views = [memoryview(start + last[:taken]), last[taken:]]
        rest: bytes | memoryview = b""
        for view in views:
            position = self._decode_pdus(view, now)
            if position < len(view):
                rest = view[position:]
                break
        if rest:
            self._chunks, self._buffered, self._needed = [rest], len(rest), _pdu_size(rest)
        else:  # the read ended with a PDU: the usual case
            self._chunks, self._buffered, self._needed = [], 0, HEADER_LENGTH

    def _decode_pdus(self, view: memoryview, now: float) -> int:
        """Decode the complete PDUs at the start of `view`; how many bytes they took."""
        position, end, limit = 0, len(view), self.max_pdata_length
        while position < end and self.state is not _STA1 and not self._framing_lost:
            result = decode(view[position:] if position else view, limit)
            if type(result) is Decoded:
                position += result.size
                self._receive_pdu(result.pdu, now)
            elif isinstance(result, PduError):
                self._error = result
                position = len(view)
                self._handle(Event.INVALID_PDU, now)
                self._error = None  # its reason is this event's only, even where it is ignored
                self._framing_lost = self.state is State.STA13
            else:
                break
        return position

    def _receive_pdu(self, pdu: Pdu, now: float) -> None:
        if type(pdu) is PDataTF:
            if self.state is _STA6 and self.on_transition is None:
                # The data phase's short way: DT-2 in Sta6 only indicates the data and stays in
                # Sta6, no timer changing, so the table's dispatch is skipped (not while a
                # transition observer wants to see the step).
                self.indications.append(DataReceived(pdu))
                return
        elif self.on_pdu_received is not None:
            self.on_pdu_received(pdu)
        self._pdu = pdu
        self._handle(_PDU_EVENTS[pdu.pdu_type], now)

    def _handle(self, event: Event, now: float) -> None:
        old = self.state
        step = STEPS[event][old]
        if step is None:
            return  # a network event that cannot occur in this state
        if step.stops_artim:
            self.artim_deadline = None
        new = getattr(self, step.method)(now) or step.next_state
        if step.starts_artim:
            self.artim_deadline = now + self.artim_timeout
        self.state = new
        self._pdu = None
        if self.on_transition is not None:
            self.on_transition(old, event, step.action, new)
        if new is State.STA1 and old is not State.STA1:
            self.indications.append(Closed())

    def _send(self, pdu: Pdu | bytes | tuple[bytes | memoryview, ...]) -> None:
        if isinstance(pdu, bytes):
            self._outgoing.append(pdu)
            return
        if isinstance(pdu, tuple):
            self._outgoing.extend(pdu)
            return
        self._outgoing.append(encode(pdu))
        if self.on_pdu_sent is not None:
            self.on_pdu_sent(pdu)

    def _indicate(self, indication: Indication) -> None:
        self.indications.append(indication)

    def _provider_abort_reason(self) -> AbortReason:
        if self._error is not None:
            reason, self._error = self._error.reason, None
            return AbortReason(reason)
        return AbortReason.UNEXPECTED_PDU

    # ---- actions (PS3.8 9.2.2); each returns the next state or None -------
    def _ae_1(self, now: float) -> None:
        """Issue a transport connect: the driver connects and calls transport_connected."""

    def _ae_2(self, now: float) -> None:
        assert self._request is not None  # Evt1 stored it before Evt2 can happen
        self._send(self._request)

    def _ae_3(self, now: float) -> None:
        assert isinstance(self._pdu, AssociateAC)
        self._indicate(AssociationAccepted(self._pdu))

    def _ae_4(self, now: float) -> None:
        assert isinstance(self._pdu, AssociateRJ)
        self._indicate(AssociationRejected(self._pdu))

    def _ae_5(self, now: float) -> None:
        """Accept the transport connection; ARTIM starts (STARTS_ARTIM)."""

    def _ae_6(self, now: float) -> State:
        request = self._pdu
        assert isinstance(request, AssociateRQ)
        if request.protocol_version & PROTOCOL_VERSION_BIT:
            self._indicate(AssociationRequested(request))
            return State.STA3
        reject = AssociateRJ(
            RejectResult.PERMANENT,
            RejectSource.SERVICE_PROVIDER_ACSE,
            AcseRejectReason.PROTOCOL_VERSION_NOT_SUPPORTED,
        )
        self._send(reject)
        self._indicate(AssociationRejected(reject))
        self.artim_deadline = now + self.artim_timeout
        return State.STA13

    def _ae_7(self, now: float) -> None:
        self._send(self._pdu)  # type: ignore[arg-type]

    def _ae_8(self, now: float) -> None:
        self._send(self._pdu)  # type: ignore[arg-type]

    def _dt_1(self, now: float) -> None:
        self._send(self._pdu)  # type: ignore[arg-type]

    def _dt_2(self, now: float) -> None:
        assert isinstance(self._pdu, PDataTF)
        self._indicate(DataReceived(self._pdu))

    def _ar_1(self, now: float) -> None:
        self._send(ReleaseRQ())

    def _ar_2(self, now: float) -> None:
        self._indicate(ReleaseRequested())

    def _ar_3(self, now: float) -> None:
        self._indicate(ReleaseConfirmed())

    def _ar_4(self, now: float) -> None:
        self._send(ReleaseRP())

    def _ar_5(self, now: float) -> None:
        """Stop ARTIM (STOPS_ARTIM): the peer closed after our A-RELEASE-RP or A-ABORT."""

    _ar_6 = _dt_2
    _ar_7 = _dt_1

    def _ar_8(self, now: float) -> State:
        self._indicate(ReleaseRequested(collision=True))
        return State.STA9 if self.role is Role.REQUESTOR else State.STA10

    def _ar_9(self, now: float) -> None:
        self._send(ReleaseRP())

    def _ar_10(self, now: float) -> None:
        self._indicate(ReleaseConfirmed())

    def _aa_1(self, now: float) -> None:
        self._error = None
        self._send(Abort(AbortSource.SERVICE_USER, AbortReason.NOT_SPECIFIED))

    def _aa_2(self, now: float) -> None:
        """Stop ARTIM and close the transport: reaching Sta1 tells the driver to close."""

    def _aa_3(self, now: float) -> None:
        abort = self._pdu
        assert isinstance(abort, Abort)
        self._indicate(Aborted(abort.source, abort.reason, by_peer=True))

    def _aa_4(self, now: float) -> None:
        self._indicate(
            Aborted(AbortSource.SERVICE_PROVIDER, AbortReason.NOT_SPECIFIED, by_peer=False, transport_closed=True)
        )

    def _aa_5(self, now: float) -> None:
        """Stop ARTIM (STOPS_ARTIM): the peer closed before sending an A-ASSOCIATE-RQ."""

    def _aa_6(self, now: float) -> None:
        """Ignore the PDU: the association is already gone."""

    def _aa_7(self, now: float) -> None:
        self._send(Abort(AbortSource.SERVICE_PROVIDER, self._provider_abort_reason()))

    def _aa_8(self, now: float) -> None:
        reason = self._provider_abort_reason()
        self._send(Abort(AbortSource.SERVICE_PROVIDER, reason))
        self._indicate(Aborted(AbortSource.SERVICE_PROVIDER, reason, by_peer=False))
