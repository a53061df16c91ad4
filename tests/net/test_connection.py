"""The sans-IO Upper Layer connection (router.net.connection) executing PS3.8 Table 9-10.

Part 1 drives every cell of the table on a real `Connection`, in memory: the connection is brought
into the cell's state by legitimate means (primitives and PDUs from a wired peer), the cell's event
is applied (PDU bytes for network events, `receive_data(b"")` for Evt17, `tick` at the ARTIM
deadline for Evt18, garbage for Evt19, user primitives for local events), and the action taken,
the next state, the PDUs sent, the indications and the ARTIM timer are checked against the
expectations written below from the reference (sections 2.3-2.5). The expected table itself comes
from tests/net/test_fsm.py, which transcribes it independently of router.net.fsm.

Part 2 wires two connections together (one's `data_to_send()` is the other's `receive_data`) and
runs whole exchanges: association, data, release, release collision, aborts, ARTIM expiry,
provider rejection, framing across reads, and the P-DATA size limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from router.net.codes import (
    AbortReason, AbortSource, AcseRejectReason, ContextResult, RejectReason, RejectResult,
    RejectSource,
)  # fmt: skip
from router.net.connection import (
    Aborted, AssociationAccepted, AssociationRejected, AssociationRequested, Closed, Connection,
    DataReceived, ReleaseConfirmed, ReleaseRequested, Role, UsageError,
)  # fmt: skip
from router.net.fsm import Action, Event, State
from router.net.pdu import (
    PDV, Abort, AssociateAC, AssociateRJ, AssociateRQ, Decoded, PDataTF, Pdu, ReleaseRP, ReleaseRQ,
    decode, encode,
)  # fmt: skip
from router.net.pdu_items import (
    ImplementationClassUID, MaximumLength, PresentationContextAC, PresentationContextRQ,
    UserInformation,
)  # fmt: skip
from tests.net.test_fsm import ALL_CELLS, CELLS, EXPECTED_NEXT_STATE

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
ARTIM = 30.0  # ARTIM timeout of every connection built here
T0 = 0.0  # time at which connections are brought into a state
NOW = 10.0  # time at which the cell's event is applied
MAX_PDATA = 16382

RQ = AssociateRQ(
    "ANY-SCP",
    "ECHOSCU",
    (PresentationContextRQ(1, VERIFICATION, (IMPLICIT_LE,)),),
    UserInformation((MaximumLength(16384), ImplementationClassUID("1.2.3.4.5"))),
)
AC = AssociateAC(
    "ANY-SCP",
    "ECHOSCU",
    (PresentationContextAC(1, ContextResult.ACCEPTANCE, IMPLICIT_LE),),
    UserInformation((MaximumLength(16384), ImplementationClassUID("1.2.3.4.6"))),
)
RJ = AssociateRJ(RejectResult.PERMANENT, RejectSource.SERVICE_USER, RejectReason.CALLED_AE_NOT_RECOGNIZED)
PDATA = PDataTF((PDV(1, True, True, bytes(range(16))),))
PEER_ABORT = Abort(AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU_PARAMETER)
# PDU-type 0x08 does not exist: an unrecognised PDU (Evt19), A-ABORT reason 1.
UNKNOWN_PDU = bytes.fromhex("08 00 00000004 00000000")


# ---- helpers --------------------------------------------------------------------------------


def new(role: Role, **options) -> Connection:
    return Connection(role, artim_timeout=ARTIM, **options)


def sent(conn: Connection) -> list[Pdu]:
    """Decode and take everything the connection wants to write."""
    pdus = []
    for chunk in conn.data_to_send():
        result = decode(chunk, 0)
        assert isinstance(result, Decoded), result
        assert result.size == len(chunk)
        pdus.append(result.pdu)
    return pdus


def indications(conn: Connection) -> list:
    taken = []
    while (indication := conn.next_indication()) is not None:
        taken.append(indication)
    return taken


def record(conn: Connection, log: list | None = None, name: str | None = None) -> list:
    """Record the connection's transitions as (old, event, action, new), prefixed by `name`."""
    log = [] if log is None else log

    def on_transition(old, event, action, new):
        log.append((old, event, action, new) if name is None else (name, old, event, action, new))

    conn.on_transition = on_transition
    return log


def deliver(src: Connection, dst: Connection, now: float = T0) -> None:
    for chunk in src.data_to_send():
        dst.receive_data(chunk, now)


def associated_pair(**options) -> tuple[Connection, Connection]:
    """A requestor and an acceptor, both in Sta6, nothing pending."""
    req, acc = new(Role.REQUESTOR, **options), new(Role.ACCEPTOR, **options)
    req.request_association(RQ, T0)
    req.transport_connected(T0)
    acc.transport_connected(T0)
    deliver(req, acc)
    acc.accept(AC, T0)
    deliver(acc, req)
    assert (req.state, acc.state) == (State.STA6, State.STA6)
    indications(req), indications(acc)
    return req, acc


def collision_pair() -> tuple[Connection, Connection]:
    """Both sides sent A-RELEASE-RQ and received the other's: requestor Sta9, acceptor Sta10."""
    req, acc = associated_pair()
    req.release_request(T0)
    acc.release_request(T0)
    deliver(req, acc)
    deliver(acc, req)
    assert (req.state, acc.state) == (State.STA9, State.STA10)
    return req, acc


def _build(state: int, role: Role) -> Connection:
    requestor = role is Role.REQUESTOR
    if state == 1:
        return new(role)
    if state == 2:
        acc = new(Role.ACCEPTOR)
        acc.transport_connected(T0)
        return acc
    if state == 3:
        req, acc = new(Role.REQUESTOR), new(Role.ACCEPTOR)
        req.request_association(RQ, T0)
        req.transport_connected(T0)
        acc.transport_connected(T0)
        deliver(req, acc)
        return acc
    if state in (4, 5):
        req = new(Role.REQUESTOR)
        req.request_association(RQ, T0)
        if state == 5:
            req.transport_connected(T0)
        return req
    if state in (6, 7, 8):
        req, acc = associated_pair()
        me, peer = (req, acc) if requestor else (acc, req)
        if state == 7:
            me.release_request(T0)
        elif state == 8:
            peer.release_request(T0)
            deliver(peer, me)
        return me
    if state in (9, 10):
        req, acc = collision_pair()
        return req if state == 9 else acc
    if state == 11:
        req, _ = collision_pair()
        req.release_response(T0)
        return req
    if state == 12:
        req, acc = collision_pair()
        req.release_response(T0)
        deliver(req, acc)
        return acc
    if state == 13:
        # The requestor gets there by aborting (AA-1), the acceptor by answering a release (AR-4).
        req, acc = associated_pair()
        if requestor:
            req.abort(T0)
            return req
        req.release_request(T0)
        deliver(req, acc)
        acc.release_response(T0)
        return acc
    raise AssertionError(state)


def in_state(state: int, role: Role) -> Connection:
    """A connection of `role` brought into `state` at T0, with its outputs already taken."""
    conn = _build(state, role)
    assert conn.state is State(state) and conn.role is role
    conn.data_to_send()
    indications(conn)
    return conn


# Which roles can be in each state: Sta2/3/10/12 are acceptor states, Sta4/5/9/11 requestor ones.
REQ, ACC = Role.REQUESTOR, Role.ACCEPTOR
ROLES_IN_STATE = {
    1: (REQ, ACC), 2: (ACC,), 3: (ACC,), 4: (REQ,), 5: (REQ,), 6: (REQ, ACC), 7: (REQ, ACC),
    8: (REQ, ACC), 9: (REQ,), 10: (ACC,), 11: (REQ,), 12: (ACC,), 13: (REQ, ACC),
}  # fmt: skip
# `transport_connected` is Evt2 for a requestor and Evt5 for an acceptor; a requestor's
# A-ASSOCIATE request (Evt1) is the only one that makes sense.
ROLE_OF_EVENT = {1: (REQ,), 2: (REQ,), 5: (ACC,)}
ROLE_OF_EMPTY_EVENT = {2: (REQ,), 5: (ACC,)}

PDU_OF_EVENT = {
    3: encode(AC), 4: encode(RJ), 6: encode(RQ), 10: encode(PDATA), 12: encode(ReleaseRQ()),
    13: encode(ReleaseRP()), 16: encode(PEER_ABORT), 17: b"", 19: UNKNOWN_PDU,
}  # fmt: skip

PRIMITIVE_OF_EVENT: dict[int, Callable[[Connection, float], None]] = {
    1: lambda conn, now: conn.request_association(RQ, now),
    2: lambda conn, now: conn.transport_connected(now),
    5: lambda conn, now: conn.transport_connected(now),
    7: lambda conn, now: conn.accept(AC, now),
    8: lambda conn, now: conn.reject(RJ, now),
    9: lambda conn, now: conn.send_data(PDATA, now),
    11: lambda conn, now: conn.release_request(now),
    14: lambda conn, now: conn.release_response(now),
    15: lambda conn, now: conn.abort(now),
}
LOCAL_PRIMITIVE_EVENTS = {1, 7, 8, 9, 11, 14, 15}


def apply_event(conn: Connection, event: int, now: float = NOW) -> None:
    if event == 18:
        conn.tick(conn.next_deadline() if conn.next_deadline() is not None else 1e9)
    elif event in PDU_OF_EVENT:
        conn.receive_data(PDU_OF_EVENT[event], now)
    else:
        PRIMITIVE_OF_EVENT[event](conn, now)


def event_time(conn: Connection, event: int) -> float:
    return conn.next_deadline() if event == 18 else NOW


# ---- expectations, from reference sections 2.3 and 2.5 ----------------------------------------


@dataclass(frozen=True)
class Effect:
    """What an action does: the PDUs sent, the indications given, and the ARTIM timer."""

    sent: tuple = ()
    indicated: tuple = ()
    artim: str = "keep"  # "start" (now + timeout), "stop" (None) or "keep" (unchanged)


def expected_effect(action: str, event: int) -> Effect:
    provider_reason = AbortReason.UNRECOGNIZED_PDU if event == 19 else AbortReason.UNEXPECTED_PDU
    provider_abort = Abort(AbortSource.SERVICE_PROVIDER, provider_reason)
    return {
        "AE-1": Effect(),
        "AE-2": Effect(sent=(RQ,)),
        "AE-3": Effect(indicated=(AssociationAccepted(AC),)),
        "AE-4": Effect(indicated=(AssociationRejected(RJ), Closed())),
        "AE-5": Effect(artim="start"),
        "AE-6": Effect(indicated=(AssociationRequested(RQ),), artim="stop"),
        "AE-7": Effect(sent=(AC,)),
        "AE-8": Effect(sent=(RJ,), artim="start"),
        "DT-1": Effect(sent=(PDATA,)),
        "DT-2": Effect(indicated=(DataReceived(PDATA),)),
        "AR-1": Effect(sent=(ReleaseRQ(),)),
        "AR-2": Effect(indicated=(ReleaseRequested(collision=False),)),
        "AR-3": Effect(indicated=(ReleaseConfirmed(), Closed())),
        "AR-4": Effect(sent=(ReleaseRP(),), artim="start"),
        "AR-5": Effect(indicated=(Closed(),), artim="stop"),
        "AR-6": Effect(indicated=(DataReceived(PDATA),)),
        "AR-7": Effect(sent=(PDATA,)),
        "AR-8": Effect(indicated=(ReleaseRequested(collision=True),)),
        "AR-9": Effect(sent=(ReleaseRP(),)),
        "AR-10": Effect(indicated=(ReleaseConfirmed(),)),
        "AA-1": Effect(sent=(Abort(AbortSource.SERVICE_USER, AbortReason.NOT_SPECIFIED),), artim="start"),
        "AA-2": Effect(indicated=(Closed(),), artim="stop"),
        "AA-3": Effect(indicated=(Aborted(PEER_ABORT.source, PEER_ABORT.reason, by_peer=True), Closed())),
        "AA-4": Effect(
            indicated=(Aborted(AbortSource.SERVICE_PROVIDER, AbortReason.NOT_SPECIFIED, by_peer=False, transport_closed=True), Closed())
        ),
        "AA-5": Effect(indicated=(Closed(),), artim="stop"),
        "AA-6": Effect(),
        "AA-7": Effect(sent=(provider_abort,)),
        "AA-8": Effect(
            sent=(provider_abort,),
            indicated=(Aborted(AbortSource.SERVICE_PROVIDER, provider_reason, by_peer=False),),
            artim="start",
        ),
    }[action]


def expected_next_state(action: str, role: Role) -> State:
    if action == "AE-6":
        return State.STA3  # the request is acceptable (bit 0 of the protocol version is set)
    if action == "AR-8":
        return State.STA9 if role is Role.REQUESTOR else State.STA10
    return State(EXPECTED_NEXT_STATE[action])


def _case_id(event: int, state: int, role: Role) -> str:
    return f"Evt{event}-Sta{state}-{role.value}"


CELL_CASES = [
    (event, state, role)
    for event, state in ALL_CELLS
    if CELLS[event, state] != "-"
    for role in ROLES_IN_STATE[state]
    if role in ROLE_OF_EVENT.get(event, (REQ, ACC))
]
EMPTY_CASES = [
    (event, state, role)
    for event, state in ALL_CELLS
    if CELLS[event, state] == "-"
    for role in ROLES_IN_STATE[state]
    if role in ROLE_OF_EMPTY_EVENT.get(event, (REQ, ACC))
]


# ---- part 1: every cell ---------------------------------------------------------------------


def test_every_non_empty_cell_has_a_case():
    assert {(event, state) for event, state, _ in CELL_CASES} == {
        cell for cell in ALL_CELLS if CELLS[cell] != "-"
    }


@pytest.mark.parametrize("state, role", [(s, r) for s, roles in ROLES_IN_STATE.items() for r in roles])
def test_artim_runs_only_in_sta2_and_sta13(state, role):
    conn = in_state(state, role)
    assert conn.next_deadline() == (T0 + ARTIM if state in (2, 13) else None)


@pytest.mark.parametrize("event, state, role", CELL_CASES, ids=[_case_id(*case) for case in CELL_CASES])
def test_cell(event, state, role):
    action = CELLS[event, state]
    conn = in_state(state, role)
    before = conn.next_deadline()
    now = event_time(conn, event)
    transitions = record(conn)

    apply_event(conn, event)

    effect = expected_effect(action, event)
    new_state = expected_next_state(action, role)
    assert transitions == [(State(state), Event(event), Action(action), new_state)]
    assert conn.state is new_state
    assert conn.is_closed is (new_state is State.STA1)
    assert tuple(sent(conn)) == effect.sent
    assert tuple(indications(conn)) == effect.indicated
    expected_deadline = {"start": now + ARTIM, "stop": None, "keep": before}[effect.artim]
    assert conn.next_deadline() == expected_deadline
    if new_state is State.STA1:
        assert conn.next_deadline() is None


@pytest.mark.parametrize("event, state, role", EMPTY_CASES, ids=[_case_id(*case) for case in EMPTY_CASES])
def test_empty_cell(event, state, role):
    """A local primitive is a usage error; any other event is ignored, with no output at all."""
    conn = in_state(state, role)
    before = conn.next_deadline()
    transitions = record(conn)

    if event == 15 and state in (1, 13):
        conn.abort(NOW)  # documented: abort() does nothing once the association is gone
    elif event in LOCAL_PRIMITIVE_EVENTS:
        with pytest.raises(UsageError):
            apply_event(conn, event)
    elif event == 18:
        assert before is None  # ARTIM is not running here, so it cannot expire
        conn.tick(1e9)
    else:
        apply_event(conn, event)

    assert transitions == []
    assert conn.state is State(state)
    assert conn.data_to_send() == []
    assert indications(conn) == []
    assert conn.next_deadline() == before


def test_usage_error_names_the_primitive_and_the_state():
    conn = in_state(6, REQ)
    with pytest.raises(UsageError, match="RELEASE_RESPONSE.*Sta6"):
        conn.release_response(NOW)


@pytest.mark.parametrize(
    "source, reason",
    [
        (AbortSource.SERVICE_USER, AbortReason.NOT_SPECIFIED),
        (AbortSource.SERVICE_PROVIDER, AbortReason.UNRECOGNIZED_PDU),
        (AbortSource.RESERVED, AbortReason.NOT_SPECIFIED),  # reserved source: still an abort
    ],
)
def test_aa3_indicates_the_peer_abort_as_received(source, reason):
    conn = in_state(6, ACC)
    conn.receive_data(encode(Abort(source, reason)), NOW)
    assert conn.state is State.STA1
    assert indications(conn) == [Aborted(source, reason, by_peer=True), Closed()]
    assert conn.data_to_send() == []  # an A-ABORT is never answered


@pytest.mark.parametrize(
    "garbage, reason",
    [
        (UNKNOWN_PDU, AbortReason.UNRECOGNIZED_PDU),
        (bytes.fromhex("DE AD BE EF 00 00 00 00"), AbortReason.UNRECOGNIZED_PDU),
        # A-RELEASE-RQ whose PDU-length is 5, not 4: invalid parameter value.
        (bytes.fromhex("05 00 00000005 0000000000"), AbortReason.INVALID_PDU_PARAMETER_VALUE),
        # P-DATA-TF whose only PDV item-length runs past the PDU.
        (bytes.fromhex("04 00 00000008 00000010 01 03 0000"), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    ],
    ids=["unknown-type", "random-bytes", "bad-release-length", "bad-pdv-length"],
)
@pytest.mark.parametrize("state", [6, 13])
def test_invalid_pdu_abort_carries_the_decoders_reason(garbage, reason, state):
    """Evt19 -> AA-8 in Sta6, AA-7 in Sta13: a provider abort with the decoder's reason."""
    conn = in_state(state, REQ)
    transitions = record(conn)
    conn.receive_data(garbage, NOW)
    action = Action.AA_8 if state == 6 else Action.AA_7
    assert transitions == [(State(state), Event.INVALID_PDU, action, State.STA13)]
    assert sent(conn) == [Abort(AbortSource.SERVICE_PROVIDER, reason)]


def test_invalid_pdu_in_sta2_gets_a_service_user_abort():
    """AA-1 in Sta2: the design decision of connection.py, source 0 whatever the cause."""
    conn = in_state(2, ACC)
    conn.receive_data(bytes.fromhex("05 00 00000005 0000000000"), NOW)
    assert conn.state is State.STA13
    assert sent(conn) == [Abort(AbortSource.SERVICE_USER, AbortReason.NOT_SPECIFIED)]
    # The framing is lost: what follows is discarded, not answered with more aborts.
    conn.receive_data(encode(RQ), NOW)
    assert conn.state is State.STA13 and sent(conn) == []
    conn.receive_data(b"", NOW)
    assert conn.state is State.STA1


def test_rest_of_an_oversized_pdata_is_not_read_as_pdus():
    """The body of a P-DATA-TF aborted on its header alone is discarded, not decoded as PDUs."""
    conn = in_state(6, ACC)
    conn.receive_data(bytes.fromhex("04 00 00100000") + bytes(12), NOW)  # 1 MiB announced
    assert [type(pdu) for pdu in sent(conn)] == [Abort]
    conn.receive_data(bytes.fromhex("01 00 00000002 0000") * 5, NOW)  # garbage that parses
    assert conn.state is State.STA13 and conn.data_to_send() == []


def test_ignored_garbage_does_not_leak_its_reason_into_a_later_abort():
    """Evt19 has no entry in Sta4; the unexpected RQ later in Sta5 is AA-8 with reason 2."""
    conn = in_state(4, REQ)
    conn.receive_data(UNKNOWN_PDU, NOW)
    assert conn.state is State.STA4 and conn.data_to_send() == []
    conn.transport_connected(NOW)
    assert sent(conn) == [RQ]
    conn.receive_data(encode(RQ), NOW)
    assert sent(conn) == [Abort(AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU)]


def test_user_abort_in_sta13_restarts_nothing_and_sends_nothing():
    conn = in_state(13, ACC)
    deadline = conn.next_deadline()
    conn.abort(NOW)
    assert conn.state is State.STA13 and conn.data_to_send() == []
    assert conn.next_deadline() == deadline


def test_a_closed_connection_ignores_everything_from_the_network():
    req, acc = associated_pair()
    req.abort(T0)
    deliver(req, acc)
    assert acc.is_closed
    indications(acc)
    transitions = record(acc)
    for data in (encode(RQ), encode(PDATA), UNKNOWN_PDU, b""):
        acc.receive_data(data, NOW)
    acc.tick(1e9)
    assert transitions == [] and acc.data_to_send() == [] and indications(acc) == []


# ---- part 2: two connections wired together -------------------------------------------------


class Wire:
    """A requestor and an acceptor whose transitions go into one shared, ordered log."""

    def __init__(self, **options) -> None:
        self.log: list = []
        self.req = new(Role.REQUESTOR, **options)
        self.acc = new(Role.ACCEPTOR, **options)
        record(self.req, self.log, "req")
        record(self.acc, self.log, "acc")

    def to_acc(self, now: float = T0) -> None:
        deliver(self.req, self.acc, now)

    def to_req(self, now: float = T0) -> None:
        deliver(self.acc, self.req, now)

    def associate(self, now: float = T0) -> None:
        self.req.request_association(RQ, now)
        self.req.transport_connected(now)
        self.acc.transport_connected(now)
        self.to_acc(now)
        assert indications(self.acc) == [AssociationRequested(RQ)]
        self.acc.accept(AC, now)
        self.to_req(now)
        assert indications(self.req) == [AssociationAccepted(AC)]

    def steps(self) -> list[tuple[str, str, str, str]]:
        """The log as ("req", "Sta6", "Evt11", "AR-1", "Sta7") tuples, taken."""
        steps = [tuple(map(str, entry)) for entry in self.log]
        self.log.clear()
        return steps


def test_association_data_exchange_and_normal_release():
    wire = Wire()
    wire.associate()
    assert wire.steps() == [
        ("req", "Sta1", "Evt1", "AE-1", "Sta4"),
        ("req", "Sta4", "Evt2", "AE-2", "Sta5"),
        ("acc", "Sta1", "Evt5", "AE-5", "Sta2"),
        ("acc", "Sta2", "Evt6", "AE-6", "Sta3"),
        ("acc", "Sta3", "Evt7", "AE-7", "Sta6"),
        ("req", "Sta5", "Evt3", "AE-3", "Sta6"),
    ]
    assert wire.acc.next_deadline() is None  # AE-6 stopped ARTIM

    # P-DATA both ways, several PDUs.
    to_acc = [PDataTF((PDV(1, True, n == 2, bytes([n]) * 10),)) for n in range(3)]
    to_req = PDataTF((PDV(1, False, True, b"reply data"),))
    for pdu in to_acc:
        wire.req.send_data(pdu, T0)
    wire.acc.send_data(to_req, T0)
    wire.to_acc()
    wire.to_req()
    assert indications(wire.acc) == [DataReceived(pdu) for pdu in to_acc]
    assert indications(wire.req) == [DataReceived(to_req)]
    assert {step[3] for step in wire.steps()} == {"DT-1", "DT-2"}

    # Normal release (reference 2.6): the acceptor still sends data after the A-RELEASE-RQ.
    wire.req.release_request(T0)
    wire.to_acc()
    assert indications(wire.acc) == [ReleaseRequested(collision=False)]
    wire.acc.send_data(to_req, T0)
    wire.to_req()
    assert indications(wire.req) == [DataReceived(to_req)]
    wire.acc.release_response(T0)
    assert wire.acc.next_deadline() == T0 + ARTIM  # AR-4 started ARTIM
    wire.to_req()
    assert indications(wire.req) == [ReleaseConfirmed(), Closed()]
    assert wire.req.is_closed
    wire.acc.receive_data(b"", T0)  # the requestor closed its socket
    assert indications(wire.acc) == [Closed()]
    assert wire.acc.is_closed and wire.acc.next_deadline() is None
    assert wire.steps() == [
        ("req", "Sta6", "Evt11", "AR-1", "Sta7"),
        ("acc", "Sta6", "Evt12", "AR-2", "Sta8"),
        ("acc", "Sta8", "Evt9", "AR-7", "Sta8"),
        ("req", "Sta7", "Evt10", "AR-6", "Sta7"),
        ("acc", "Sta8", "Evt14", "AR-4", "Sta13"),
        ("req", "Sta7", "Evt13", "AR-3", "Sta1"),
        ("acc", "Sta13", "Evt17", "AR-5", "Sta1"),
    ]


def test_observers_see_every_pdu_sent_and_received():
    wire = Wire()
    seen: list = []
    wire.req.on_pdu_sent = lambda pdu: seen.append(("req sent", type(pdu).__name__))
    wire.acc.on_pdu_received = lambda pdu: seen.append(("acc received", type(pdu).__name__))
    wire.acc.on_pdu_sent = lambda pdu: seen.append(("acc sent", type(pdu).__name__))
    wire.req.on_pdu_received = lambda pdu: seen.append(("req received", type(pdu).__name__))
    wire.associate()
    wire.req.release_request(T0)
    wire.to_acc()
    wire.acc.release_response(T0)
    wire.to_req()
    assert seen == [
        ("req sent", "AssociateRQ"), ("acc received", "AssociateRQ"),
        ("acc sent", "AssociateAC"), ("req received", "AssociateAC"),
        ("req sent", "ReleaseRQ"), ("acc received", "ReleaseRQ"),
        ("acc sent", "ReleaseRP"), ("req received", "ReleaseRP"),
    ]  # fmt: skip


def test_user_rejection_reaches_the_requestor():
    wire = Wire()
    wire.req.request_association(RQ, T0)
    wire.req.transport_connected(T0)
    wire.acc.transport_connected(T0)
    wire.to_acc()
    wire.acc.reject(RJ, T0)
    assert wire.acc.state is State.STA13 and wire.acc.next_deadline() == T0 + ARTIM
    wire.to_req()
    assert indications(wire.req) == [AssociationRejected(RJ), Closed()]
    wire.acc.receive_data(b"", T0)
    assert wire.acc.is_closed
    assert [step[1:] for step in wire.steps()][-3:] == [
        ("Sta3", "Evt8", "AE-8", "Sta13"),
        ("Sta5", "Evt4", "AE-4", "Sta1"),
        ("Sta13", "Evt17", "AR-5", "Sta1"),
    ]


def test_release_collision_end_to_end():
    """Reference 2.6: the requestor answers first, the acceptor closes last."""
    wire = Wire()
    wire.associate()
    wire.steps()
    wire.req.release_request(T0)
    wire.acc.release_request(T0)
    # Each RQ is still in flight when the other side sends its own.
    wire.to_req()
    wire.to_acc()
    assert indications(wire.req) == [ReleaseRequested(collision=True)]
    assert indications(wire.acc) == [ReleaseRequested(collision=True)]
    wire.req.release_response(T0)
    wire.to_acc()
    assert indications(wire.acc) == [ReleaseConfirmed()]
    wire.acc.release_response(T0)
    wire.to_req()
    assert indications(wire.req) == [ReleaseConfirmed(), Closed()]
    wire.acc.receive_data(b"", T0)  # the requestor closed the transport
    assert indications(wire.acc) == [Closed()]
    assert wire.req.is_closed and wire.acc.is_closed
    assert wire.steps() == [
        ("req", "Sta6", "Evt11", "AR-1", "Sta7"),
        ("acc", "Sta6", "Evt11", "AR-1", "Sta7"),
        ("req", "Sta7", "Evt12", "AR-8", "Sta9"),
        ("acc", "Sta7", "Evt12", "AR-8", "Sta10"),
        ("req", "Sta9", "Evt14", "AR-9", "Sta11"),
        ("acc", "Sta10", "Evt13", "AR-10", "Sta12"),
        ("acc", "Sta12", "Evt14", "AR-4", "Sta13"),
        ("req", "Sta11", "Evt13", "AR-3", "Sta1"),
        ("acc", "Sta13", "Evt17", "AR-5", "Sta1"),
    ]


def test_release_collision_acceptor_must_wait_for_the_requestors_rp():
    wire = Wire()
    wire.associate()
    wire.req.release_request(T0)
    wire.acc.release_request(T0)
    wire.to_req()
    wire.to_acc()
    with pytest.raises(UsageError):
        wire.acc.release_response(T0)  # Sta10 has no Evt14 entry


@pytest.mark.parametrize("aborter", ["req", "acc"])
def test_abort_each_way(aborter):
    wire = Wire()
    wire.associate()
    wire.steps()
    me, peer = (wire.req, wire.acc) if aborter == "req" else (wire.acc, wire.req)
    me.abort(T0)
    assert me.state is State.STA13 and me.next_deadline() == T0 + ARTIM
    deliver(me, peer)
    assert indications(peer) == [Aborted(AbortSource.SERVICE_USER, AbortReason.NOT_SPECIFIED, by_peer=True), Closed()]
    assert peer.is_closed and peer.data_to_send() == []
    me.receive_data(b"", T0)  # the peer closed its socket
    assert me.is_closed and me.next_deadline() is None
    assert indications(me) == [Closed()]
    other = "acc" if aborter == "req" else "req"
    assert wire.steps() == [
        (aborter, "Sta6", "Evt15", "AA-1", "Sta13"),
        (other, "Sta6", "Evt16", "AA-3", "Sta1"),
        (aborter, "Sta13", "Evt17", "AR-5", "Sta1"),
    ]


def test_abort_while_connecting_just_drops_the_connection():
    conn = in_state(4, REQ)
    conn.abort(NOW)
    assert conn.is_closed and conn.data_to_send() == [] and indications(conn) == [Closed()]


def test_artim_expiry_in_sta2_closes_when_no_request_arrives():
    acc = new(Role.ACCEPTOR)
    transitions = record(acc)
    acc.transport_connected(5.0)
    assert acc.next_deadline() == 5.0 + ARTIM
    acc.tick(5.0 + ARTIM - 0.001)
    assert acc.state is State.STA2
    acc.tick(5.0 + ARTIM)
    assert acc.is_closed and acc.next_deadline() is None
    assert acc.data_to_send() == [] and indications(acc) == [Closed()]
    assert transitions[-1] == (State.STA2, Event.ARTIM_EXPIRED, Action.AA_2, State.STA1)


def test_artim_expiry_in_sta13_closes_when_the_peer_never_does():
    wire = Wire()
    wire.associate()
    wire.req.abort(7.0)
    deliver(wire.req, wire.acc)  # the acceptor goes to Sta1 but its close never reaches us
    wire.steps()
    wire.req.tick(7.0 + ARTIM - 0.001)
    assert wire.req.state is State.STA13
    wire.req.tick(7.0 + ARTIM)
    assert wire.req.is_closed and wire.req.next_deadline() is None
    assert wire.req.data_to_send() == [] and indications(wire.req) == [Closed()]
    assert wire.steps() == [("req", "Sta13", "Evt18", "AA-2", "Sta1")]


def test_stray_pdus_in_sta13_do_not_restart_artim():
    conn = in_state(13, REQ)
    for data in (encode(PDATA), encode(ReleaseRP()), encode(RQ), UNKNOWN_PDU):
        conn.receive_data(data, NOW)
    assert conn.next_deadline() == T0 + ARTIM
    conn.tick(T0 + ARTIM)
    assert conn.is_closed


@pytest.mark.parametrize("version", [0x0000, 0x0002, 0xFFFE])
def test_protocol_version_without_bit_0_is_rejected_by_the_provider(version):
    wire = Wire()
    request = AssociateRQ(RQ.called_ae_title, RQ.calling_ae_title, RQ.presentation_contexts,
                          RQ.user_information, protocol_version=version)  # fmt: skip
    wire.req.request_association(request, T0)
    wire.req.transport_connected(T0)
    wire.acc.transport_connected(T0)
    wire.to_acc(NOW)
    expected = AssociateRJ(
        RejectResult.PERMANENT, RejectSource.SERVICE_PROVIDER_ACSE, AcseRejectReason.PROTOCOL_VERSION_NOT_SUPPORTED
    )
    assert wire.acc.state is State.STA13
    assert wire.acc.next_deadline() == NOW + ARTIM  # the reject branch of AE-6 starts ARTIM
    assert indications(wire.acc) == [AssociationRejected(expected)]
    rejection = wire.acc.data_to_send()
    assert rejection == [bytes.fromhex("03 00 00000004 00 01 02 02")]
    for chunk in rejection:
        wire.req.receive_data(chunk, NOW)
    assert indications(wire.req) == [AssociationRejected(expected), Closed()]
    wire.acc.receive_data(b"", NOW)
    assert wire.acc.is_closed
    assert [step[1:] for step in wire.steps()][-3:] == [
        ("Sta2", "Evt6", "AE-6", "Sta13"),
        ("Sta5", "Evt4", "AE-4", "Sta1"),
        ("Sta13", "Evt17", "AR-5", "Sta1"),
    ]


def test_protocol_version_with_bit_0_and_other_bits_is_acceptable():
    acc = in_state(2, ACC)
    request = AssociateRQ(RQ.called_ae_title, RQ.calling_ae_title, RQ.presentation_contexts,
                          RQ.user_information, protocol_version=0x0003)  # fmt: skip
    acc.receive_data(encode(request), NOW)
    assert acc.state is State.STA3
    assert indications(acc) == [AssociationRequested(request)]


# Framing across reads: the same conversation delivered whole, byte by byte, and in odd chunks
# that cut across PDU boundaries must produce the same transitions and indications.


def deliver_whole(src: Connection, dst: Connection) -> None:
    deliver(src, dst)


def deliver_bytewise(src: Connection, dst: Connection) -> None:
    for chunk in src.data_to_send():
        for i in range(len(chunk)):
            dst.receive_data(chunk[i : i + 1], T0)


def deliver_in_sevens(src: Connection, dst: Connection) -> None:
    stream = b"".join(src.data_to_send())
    for i in range(0, len(stream), 7):
        dst.receive_data(stream[i : i + 7], T0)


def deliver_concatenated(src: Connection, dst: Connection) -> None:
    stream = b"".join(src.data_to_send())
    if stream:
        dst.receive_data(stream, T0)


def conversation(send: Callable[[Connection, Connection], None]) -> tuple[list, list, list]:
    """Associate, exchange data (a large PDV and several PDUs at once), release."""
    wire = Wire()
    wire.req.request_association(RQ, T0)
    wire.req.transport_connected(T0)
    wire.acc.transport_connected(T0)
    send(wire.req, wire.acc)
    wire.acc.accept(AC, T0)
    send(wire.acc, wire.req)
    wire.req.send_data(PDataTF((PDV(1, True, True, b"c" * 300),)), T0)
    wire.req.send_data(PDataTF((PDV(1, False, False, b"d" * 1000), PDV(1, False, True, b"e" * 2))), T0)
    send(wire.req, wire.acc)
    wire.acc.send_data(PDATA, T0)
    wire.acc.send_data(PDATA, T0)
    send(wire.acc, wire.req)
    wire.req.release_request(T0)
    send(wire.req, wire.acc)
    wire.acc.release_response(T0)
    send(wire.acc, wire.req)
    assert wire.req.is_closed and wire.acc.state is State.STA13
    return wire.steps(), indications(wire.req), indications(wire.acc)


@pytest.mark.parametrize(
    "send", [deliver_bytewise, deliver_in_sevens, deliver_concatenated], ids=["bytewise", "sevens", "concatenated"]
)
def test_framing_does_not_depend_on_how_bytes_arrive(send):
    assert conversation(send) == conversation(deliver_whole)


def test_a_pdu_split_byte_by_byte_decodes_once_on_its_last_byte():
    acc = in_state(2, ACC)
    transitions = record(acc)
    data = encode(RQ)
    for i in range(len(data) - 1):
        acc.receive_data(data[i : i + 1], NOW)
    assert transitions == [] and acc.state is State.STA2
    acc.receive_data(data[-1:], NOW)
    assert transitions == [(State.STA2, Event.RQ_RECEIVED, Action.AE_6, State.STA3)]
    assert indications(acc) == [AssociationRequested(RQ)]


def test_several_pdus_in_one_read_are_handled_in_order():
    req = in_state(5, REQ)
    transitions = record(req)
    second = PDataTF((PDV(1, False, True, b"second"),))
    req.receive_data(encode(AC) + encode(PDATA) + encode(second) + encode(ReleaseRQ()), NOW)
    assert [t[2] for t in transitions] == [Action.AE_3, Action.DT_2, Action.DT_2, Action.AR_2]
    assert req.state is State.STA8
    assert indications(req) == [
        AssociationAccepted(AC), DataReceived(PDATA), DataReceived(second), ReleaseRequested(),
    ]  # fmt: skip


def test_a_read_that_ends_with_part_of_a_pdu_keeps_the_rest():
    req = in_state(6, REQ)
    stream = encode(PDATA) + encode(ReleaseRQ())
    req.receive_data(stream[:-3], NOW)
    assert indications(req) == [DataReceived(PDATA)] and req.state is State.STA6
    req.receive_data(stream[-3:], NOW)
    assert indications(req) == [ReleaseRequested()] and req.state is State.STA8


def test_received_fragments_stay_valid_after_later_reads():
    req = in_state(6, REQ)
    first = PDataTF((PDV(1, False, True, b"first fragment"),))
    data = encode(first) + encode(PDATA)
    req.receive_data(data[:-5], NOW)
    (received,) = indications(req)
    req.receive_data(data[-5:], NOW)
    assert bytes(received.pdu.pdvs[0].data) == b"first fragment"


def test_a_pdu_spanning_reads_is_joined_alone_and_the_rest_of_the_read_decoded_in_place():
    req = in_state(6, REQ)
    first = PDataTF((PDV(1, False, False, b"spans two reads"),))
    second = PDataTF((PDV(1, False, True, b"in the second read"),))
    stream = encode(first) + encode(second) + encode(ReleaseRQ())
    split = 9  # inside the first PDU's PDV header
    req.receive_data(stream[:split], NOW)
    assert indications(req) == []
    last_read = stream[split:-2]  # ends inside the A-RELEASE-RQ
    req.receive_data(last_read, NOW)
    spanning, after = indications(req)
    assert (spanning, after) == (DataReceived(first), DataReceived(second))
    assert after.pdu.pdvs[0].data.obj is last_read  # a view of the read, not a copy
    req.receive_data(stream[-2:], NOW)
    assert indications(req) == [ReleaseRequested()] and req.state is State.STA8


def _read_as_a_driver_does(conn: Connection, stream: bytes, read_size: int) -> None:
    """Feed `stream` the way the driver reads: into the PDU's own buffer when it offers one."""
    position = 0
    while position < len(stream):
        target = conn.pdu_buffer()
        if target is None:
            conn.receive_data(stream[position : position + read_size], NOW)
            position += min(read_size, len(stream) - position)
        else:
            count = min(len(target), read_size, len(stream) - position)
            target[:count] = stream[position : position + count]
            conn.pdu_buffer_filled(count, NOW)
            position += count


@pytest.mark.parametrize("read_size", [7, 4096, 65536, 1 << 20])
def test_a_large_pdu_read_into_its_own_buffer_decodes_as_any_other(read_size):
    req, _ = associated_pair(max_pdata_length=0)
    large = PDataTF((PDV(1, False, False, bytes(range(256)) * 1024),))  # 256 KiB: its own buffer
    small = PDataTF((PDV(1, False, True, b"the end"),))
    _read_as_a_driver_does(req, encode(small) + encode(large) + encode(small) + encode(ReleaseRQ()), read_size)
    received = indications(req)
    assert received == [DataReceived(small), DataReceived(large), DataReceived(small), ReleaseRequested()]
    assert bytes(received[1].pdu.pdvs[0].data) == bytes(range(256)) * 1024  # still valid after later reads


def test_a_pdu_header_alone_never_makes_the_connection_allocate_its_claimed_length():
    req, _ = associated_pair(max_pdata_length=0)
    req.receive_data(bytes.fromhex("04 00 7fffffff") + bytes(100), NOW)  # claims 2 GiB
    assert req.pdu_buffer() is None and req.state is State.STA6


def test_the_end_of_transport_during_a_large_pdu_closes_the_connection():
    req, _ = associated_pair(max_pdata_length=0)
    req.receive_data(encode(PDataTF((PDV(1, False, True, bytes(1 << 17)),)))[:100], NOW)
    assert req.pdu_buffer() is not None
    req.pdu_buffer_filled(0, NOW)
    assert req.state is State.STA1 and Closed() in indications(req)


def test_pdata_longer_than_the_maximum_is_aborted_on_its_header_alone():
    wire = Wire(max_pdata_length=100)
    wire.associate()
    wire.steps()
    acc = wire.acc
    header = bytes.fromhex("04 00 00000065")  # P-DATA-TF, PDU-length 101 > 100
    acc.receive_data(header[:3], NOW)
    assert acc.state is State.STA6 and acc.data_to_send() == []
    acc.receive_data(header[3:], NOW)
    assert sent(acc) == [Abort(AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER_VALUE)]
    assert indications(acc) == [
        Aborted(AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER_VALUE, by_peer=False)
    ]
    assert acc.state is State.STA13 and acc.next_deadline() == NOW + ARTIM
    assert wire.steps() == [("acc", "Sta6", "Evt19", "AA-8", "Sta13")]


def test_pdata_of_exactly_the_maximum_is_accepted():
    wire = Wire(max_pdata_length=100)
    wire.associate()
    pdu = PDataTF((PDV(1, False, True, bytes(100 - 6)),))  # PDU-length = 6 + 94 = 100
    assert len(encode(pdu)) == 6 + 100
    wire.req.send_data(pdu, T0)
    wire.to_acc()
    assert indications(wire.acc) == [DataReceived(pdu)] and wire.acc.state is State.STA6


# The data phase's short way (DT-2 and DT-1 in Sta6 without the table's dispatch) --------------

DATA_PHASE_STREAM = b"".join([
    encode(PDataTF((PDV(1, True, True, b"command"),))),
    encode(PDataTF((PDV(3, False, False, bytes(range(40))), PDV(3, False, True, b"end!")))),
    encode(ReleaseRQ()),
])  # fmt: skip
INVALID_PDATA = {
    "even context ID": bytes.fromhex("04 00 00000008 00000002 02 03 0000"),
    "no PDV": bytes.fromhex("04 00 00000000"),
    "PDV past the PDU": bytes.fromhex("04 00 00000008 00000010 01 03 0000"),
    "longer than announced": encode(PDataTF((PDV(1, False, True, bytes(200)),))),
}
SMALL_MAX_PDATA = 100  # what the acceptor announces in these runs: the last invalid case exceeds it


def _run_data_phase(stream: bytes, cut: int, observed: bool) -> tuple:
    """Feed `stream` in Sta6 in two reads cut at `cut`: what the acceptor indicates, sends and becomes."""
    _, acc = associated_pair(max_pdata_length=SMALL_MAX_PDATA)
    if observed:
        record(acc)  # a transition observer: every PDU takes the state table's way
    for read in (stream[:cut], stream[cut:]):
        if read:  # an empty read would be the end of the transport
            acc.receive_data(read, NOW)
    return indications(acc), acc.data_to_send(), acc.state, acc.next_deadline()


@pytest.mark.parametrize("cut", [1, 5, 6, 20, 33, 60, 70, len(DATA_PHASE_STREAM) - 3])
def test_data_phase_short_way_matches_the_state_table(cut):
    short = _run_data_phase(DATA_PHASE_STREAM, cut, observed=False)
    table = _run_data_phase(DATA_PHASE_STREAM, cut, observed=True)
    assert short == table
    assert [type(i) for i in short[0]] == [DataReceived, DataReceived, ReleaseRequested]
    assert short[2] is State.STA8


@pytest.mark.parametrize("invalid", INVALID_PDATA.values(), ids=INVALID_PDATA.keys())
def test_an_invalid_pdata_in_sta6_is_aborted_with_the_decoders_reason_either_way(invalid):
    stream = encode(PDataTF((PDV(1, True, True, b"ok"),))) + invalid
    short = _run_data_phase(stream, len(stream), observed=False)
    assert short == _run_data_phase(stream, len(stream), observed=True)
    found, chunks, state, _ = short
    assert found[0] == DataReceived(PDataTF((PDV(1, True, True, b"ok"),)))
    assert found[1] == Aborted(AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER_VALUE, by_peer=False)
    assert state is State.STA13
    assert [decode(chunk, 0).pdu for chunk in chunks] == [
        Abort(AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER_VALUE)
    ]


def test_data_requests_in_sta6_send_the_same_bytes_watched_or_not():
    encoded = encode(PDataTF((PDV(1, True, True, b"response"),)))
    outputs = []
    for observed in (False, True):
        req, _ = associated_pair()
        steps = record(req) if observed else []
        req.send_raw_data(encoded, NOW)
        req.send_raw_data((encoded[:4], memoryview(encoded)[4:]), NOW)
        outputs.append((b"".join(req.data_to_send()), req.state, req.next_deadline()))
        assert len(steps) == (2 if observed else 0)
    assert outputs[0] == outputs[1] == (encoded * 2, State.STA6, None)


def test_data_in_sta6_skips_the_state_tables_dispatch_unless_a_step_is_watched(monkeypatch):
    req, acc = associated_pair()
    dispatched: list = []
    table = Connection._handle
    monkeypatch.setattr(Connection, "_handle", lambda conn, event, now: (dispatched.append(event), table(conn, event, now)))
    acc.receive_data(encode(PDATA), NOW)
    req.send_raw_data(encode(PDATA), NOW)
    assert dispatched == [] and indications(acc) == [DataReceived(PDATA)]
    record(acc), record(req)
    acc.receive_data(encode(PDATA), NOW)
    req.send_raw_data(encode(PDATA), NOW)
    assert dispatched == [Event.DATA_RECEIVED, Event.DATA_REQUEST]


def test_the_pdu_observer_never_sees_pdata_which_is_indicated_instead():
    req, acc = associated_pair()
    seen: list = []
    req.on_pdu_received = lambda pdu: seen.append(type(pdu).__name__)
    acc.send_data(PDATA, T0)
    deliver(acc, req)  # Sta6: the short way
    req.release_request(T0)
    acc.send_data(PDATA, T0)
    deliver(acc, req)  # Sta7 (AR-6): the state table's way
    acc.release_request(T0)  # a collision: the peer's A-RELEASE-RQ is an ACSE PDU the observer sees
    deliver(acc, req)
    assert seen == ["ReleaseRQ"]
    assert [type(i) for i in indications(req)] == [DataReceived, DataReceived, ReleaseRequested]
