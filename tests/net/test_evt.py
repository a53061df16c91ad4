"""Events (router.net.evt): the registry in memory, then the events a real loopback association fires."""

from __future__ import annotations

import logging
import threading

import pytest
from pydicom.dataset import Dataset

from router.net import evt
from router.net.ae import AE
from router.net.codes import UserIdentityType
from router.net.dimse_messages import CEchoRQ, CEchoRSP
from router.net.pdu import AssociateAC, AssociateRQ, PDataTF, ReleaseRP, ReleaseRQ
from router.net.pdu_items import (
    AsyncOperationsWindow,
    SOPClassCommonExtended,
    SOPClassExtended,
    UserIdentityAC,
    UserIdentityRQ,
)

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
STORAGE_SERVICE_CLASS = "1.2.840.10008.4.2"
LOCALHOST = "127.0.0.1"
WAIT = 5.0

NOTIFICATIONS = [
    "EVT_CONN_OPEN", "EVT_CONN_CLOSE", "EVT_REQUESTED", "EVT_ACCEPTED", "EVT_REJECTED",
    "EVT_ESTABLISHED", "EVT_RELEASED", "EVT_ABORTED", "EVT_PDU_RECV", "EVT_PDU_SENT",
    "EVT_DIMSE_RECV", "EVT_DIMSE_SENT", "EVT_ACSE_RECV", "EVT_ACSE_SENT", "EVT_DATA_RECV",
    "EVT_DATA_SENT", "EVT_FSM_TRANSITION",
]  # fmt: skip
INTERVENTIONS = ["EVT_C_ECHO", "EVT_C_STORE", "EVT_C_FIND", "EVT_USER_ID", "EVT_SOP_EXTENDED", "EVT_SOP_COMMON", "EVT_ASYNC_OPS"]
INTERVENTIONS += ["EVT_C_GET", "EVT_C_MOVE", "EVT_N_EVENT_REPORT", "EVT_N_GET", "EVT_N_SET", "EVT_N_ACTION", "EVT_N_CREATE", "EVT_N_DELETE"]


# ---- event types ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NOTIFICATIONS + INTERVENTIONS)
def test_every_event_exists_with_its_name_and_a_description(name):
    event = getattr(evt, name)
    assert isinstance(event, evt.EventType)
    assert event.name == name == str(event)
    assert isinstance(event.description, str) and event.description.strip()


@pytest.mark.parametrize("name", NOTIFICATIONS)
def test_notification_events(name):
    event = getattr(evt, name)
    assert event.is_notification and not event.is_intervention
    assert event in evt.NOTIFICATION_EVENTS


@pytest.mark.parametrize("name", INTERVENTIONS)
def test_intervention_events(name):
    event = getattr(evt, name)
    assert event.is_intervention and not event.is_notification
    assert event in evt.INTERVENTION_EVENTS


def test_event_lists_hold_exactly_the_defined_events():
    assert sorted(e.name for e in evt.NOTIFICATION_EVENTS) == sorted(NOTIFICATIONS)
    assert sorted(e.name for e in evt.INTERVENTION_EVENTS) == sorted(INTERVENTIONS)


def test_descriptions_are_distinct():
    events = evt.NOTIFICATION_EVENTS + evt.INTERVENTION_EVENTS
    assert len({e.description for e in events}) == len(events)


def test_event_object_carries_assoc_type_time_and_attributes():
    assoc = object()
    item = evt.Event(assoc, evt.EVT_CONN_OPEN, address=("1.2.3.4", 104))
    assert item.assoc is assoc
    assert item.event is evt.EVT_CONN_OPEN
    assert item.description == evt.EVT_CONN_OPEN.description
    assert item.address == ("1.2.3.4", 104)
    assert item.timestamp > 0
    assert "EVT_CONN_OPEN" in repr(item)


# ---- the registry ------------------------------------------------------------------------------------------


class Calls:
    """Handlers that record how they were called."""

    def __init__(self) -> None:
        self.log: list[tuple] = []

    def handler(self, tag: str, answer=None):
        def handle(event, *args):
            self.log.append((tag, event.event.name, args))
            return answer

        return handle


def test_notification_keeps_every_handler_in_binding_order():
    calls = Calls()
    first, second = calls.handler("first"), calls.handler("second")
    registry = evt.HandlerRegistry([(evt.EVT_ACCEPTED, first)])
    registry.bind(evt.EVT_ACCEPTED, second)
    registry.notify("assoc", evt.EVT_ACCEPTED)
    assert calls.log == [("first", "EVT_ACCEPTED", ()), ("second", "EVT_ACCEPTED", ())]
    assert [h for h, _ in registry.handlers(evt.EVT_ACCEPTED)] == [first, second]


def test_binding_the_same_notification_handler_twice_calls_it_once():
    calls = Calls()
    handler = calls.handler("one")
    registry = evt.HandlerRegistry([(evt.EVT_RELEASED, handler), (evt.EVT_RELEASED, handler)])
    registry.notify(None, evt.EVT_RELEASED)
    assert calls.log == [("one", "EVT_RELEASED", ())]


def test_intervention_keeps_only_the_last_handler():
    calls = Calls()
    registry = evt.HandlerRegistry()
    registry.bind(evt.EVT_C_ECHO, calls.handler("old", 0x0001))
    registry.bind(evt.EVT_C_ECHO, calls.handler("new", 0x0002))
    assert len(registry.handlers(evt.EVT_C_ECHO)) == 1
    assert registry.intervene(None, evt.EVT_C_ECHO, lambda e: 0x0000) == 0x0002
    assert calls.log == [("new", "EVT_C_ECHO", ())]


def test_intervene_uses_the_default_when_unbound_and_passes_attributes():
    seen = []

    def default(event):
        seen.append((event.event, event.assoc, event.request))
        return "default answer"

    registry = evt.HandlerRegistry()
    assert registry.intervene("assoc", evt.EVT_C_ECHO, default, request="rq") == "default answer"
    assert seen == [(evt.EVT_C_ECHO, "assoc", "rq")]


def test_intervene_lets_a_handler_error_propagate():
    def broken(event):
        raise KeyError("boom")

    registry = evt.HandlerRegistry([(evt.EVT_USER_ID, broken)])
    with pytest.raises(KeyError):
        registry.intervene(None, evt.EVT_USER_ID, lambda e: (True, None))


def test_unbind_notification_removes_only_that_handler():
    calls = Calls()
    keep, drop = calls.handler("keep"), calls.handler("drop")
    registry = evt.HandlerRegistry([(evt.EVT_CONN_OPEN, keep), (evt.EVT_CONN_OPEN, drop)])
    registry.unbind(evt.EVT_CONN_OPEN, drop)
    registry.unbind(evt.EVT_CONN_OPEN, calls.handler("never bound"))
    registry.unbind(evt.EVT_CONN_CLOSE, keep)
    registry.notify(None, evt.EVT_CONN_OPEN)
    assert calls.log == [("keep", "EVT_CONN_OPEN", ())]
    registry.unbind(evt.EVT_CONN_OPEN, keep)
    assert not registry.is_bound(evt.EVT_CONN_OPEN)
    registry.notify(None, evt.EVT_CONN_OPEN)
    assert len(calls.log) == 1


def test_unbind_intervention_restores_the_default():
    calls = Calls()
    handler = calls.handler("custom", 0xC000)
    registry = evt.HandlerRegistry([(evt.EVT_C_ECHO, handler)])
    assert registry.intervene(None, evt.EVT_C_ECHO, lambda e: 0x0000) == 0xC000
    registry.unbind(evt.EVT_C_ECHO, handler)
    assert registry.intervene(None, evt.EVT_C_ECHO, lambda e: 0x0000) == 0x0000


def test_handlers_receive_their_extra_args():
    calls = Calls()
    registry = evt.HandlerRegistry(
        [
            (evt.EVT_ACCEPTED, calls.handler("notify"), ["optional", "parameters"]),
            (evt.EVT_C_ECHO, calls.handler("intervene", 0x0000), [42]),
        ]
    )
    registry.notify(None, evt.EVT_ACCEPTED)
    registry.intervene(None, evt.EVT_C_ECHO, lambda e: None)
    assert calls.log == [
        ("notify", "EVT_ACCEPTED", ("optional", "parameters")),
        ("intervene", "EVT_C_ECHO", (42,)),
    ]
    assert registry.handlers(evt.EVT_ACCEPTED)[0][1] == ["optional", "parameters"]


def test_a_raising_notification_handler_is_logged_not_raised(caplog):
    calls = Calls()

    def broken(event):
        raise RuntimeError("handler bug")

    registry = evt.HandlerRegistry([(evt.EVT_ESTABLISHED, broken), (evt.EVT_ESTABLISHED, calls.handler("after"))])
    with caplog.at_level(logging.ERROR, logger="router.net"):
        registry.notify(None, evt.EVT_ESTABLISHED)
    assert calls.log == [("after", "EVT_ESTABLISHED", ())]
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "EVT_ESTABLISHED" in record.getMessage()
    assert record.exc_info is not None and "handler bug" in str(record.exc_info[1])


def test_bind_refuses_something_that_is_not_an_event_type():
    registry = evt.HandlerRegistry()
    with pytest.raises(ValueError):
        registry.bind("EVT_C_ECHO", lambda e: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        evt.HandlerRegistry([("EVT_ACCEPTED", lambda e: None)])


def test_specs_copy_a_registry():
    calls = Calls()
    original = evt.HandlerRegistry(
        [(evt.EVT_ACCEPTED, calls.handler("a"), ["x"]), (evt.EVT_C_ECHO, calls.handler("b", 1))]
    )
    copy = evt.HandlerRegistry(original.specs())
    copy.notify(None, evt.EVT_ACCEPTED)
    assert copy.intervene(None, evt.EVT_C_ECHO, lambda e: 0) == 1
    assert calls.log == [("a", "EVT_ACCEPTED", ("x",)), ("b", "EVT_C_ECHO", ())]
    copy.unbind(evt.EVT_ACCEPTED, original.handlers(evt.EVT_ACCEPTED)[0][0])
    assert original.is_bound(evt.EVT_ACCEPTED)  # the copy is independent


# ---- a real loopback association -------------------------------------------------------------------------


class Recorder:
    """Records every event bound to it (from any thread) and signals when the connection closes."""

    def __init__(self, events=None) -> None:
        self.events: list[evt.Event] = []
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self.bound = list(events if events is not None else evt.NOTIFICATION_EVENTS)

    def __call__(self, event: evt.Event) -> None:
        with self._lock:
            self.events.append(event)
        if event.event is evt.EVT_CONN_CLOSE:
            self.closed.set()

    def handlers(self) -> list:
        return [(event, self) for event in self.bound]

    def names(self, *excluded: evt.EventType) -> list[str]:
        return [e.event.name for e in self.events if e.event not in excluded]

    def of(self, event_type: evt.EventType) -> list[evt.Event]:
        return [e for e in self.events if e.event is event_type]

    def wait_closed(self) -> None:
        assert self.closed.wait(WAIT), "the connection did not close in time"


NOISY = (
    evt.EVT_FSM_TRANSITION, evt.EVT_PDU_RECV, evt.EVT_PDU_SENT, evt.EVT_ACSE_RECV,
    evt.EVT_ACSE_SENT, evt.EVT_DATA_RECV, evt.EVT_DATA_SENT,
)  # fmt: skip


def fast(ae: AE) -> AE:
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = WAIT
    return ae


@pytest.fixture
def pair():
    """(scp, scu) AEs for Verification; servers and associations are shut down afterwards."""
    scp, scu = fast(AE("SCP")), fast(AE("SCU"))
    scp.add_supported_context(VERIFICATION)
    scp.add_supported_context(CT_IMAGE_STORAGE)
    scu.add_requested_context(VERIFICATION)
    yield scp, scu
    scu.shutdown()
    scp.shutdown()


def serve(scp: AE, handlers=None):
    server = scp.start_server((LOCALHOST, 0), block=False, evt_handlers=handlers)
    return server, server.server_address[1]


@pytest.mark.timeout(10)
def test_notification_sequence_for_associate_echo_release(pair):
    scp, scu = pair
    scp_events, scu_events = Recorder(), Recorder()
    _, port = serve(scp, scp_events.handlers())
    assoc = scu.associate(LOCALHOST, port, evt_handlers=scu_events.handlers())
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    assoc.release()
    scu_events.wait_closed()
    scp_events.wait_closed()
    assert scu_events.names(*NOISY) == [
        "EVT_CONN_OPEN", "EVT_ACCEPTED", "EVT_ESTABLISHED", "EVT_DIMSE_SENT", "EVT_DIMSE_RECV",
        "EVT_RELEASED", "EVT_CONN_CLOSE",
    ]  # fmt: skip
    assert scp_events.names(*NOISY) == [
        "EVT_CONN_OPEN", "EVT_REQUESTED", "EVT_ACCEPTED", "EVT_ESTABLISHED", "EVT_DIMSE_RECV",
        "EVT_DIMSE_SENT", "EVT_RELEASED", "EVT_CONN_CLOSE",
    ]  # fmt: skip
    for recorder in (scu_events, scp_events):
        assert all(e.assoc is recorder.events[0].assoc for e in recorder.events)
    assert scu_events.events[0].assoc is assoc
    assert scp_events.events[0].assoc.is_acceptor


@pytest.mark.timeout(10)
def test_fsm_transitions_follow_the_state_table(pair):
    scp, scu = pair
    scp_events, scu_events = Recorder([evt.EVT_FSM_TRANSITION, evt.EVT_CONN_CLOSE]), Recorder([evt.EVT_FSM_TRANSITION])
    _, port = serve(scp, scp_events.handlers())
    assoc = scu.associate(LOCALHOST, port, evt_handlers=scu_events.handlers())
    assoc.send_c_echo()
    assoc.release()
    scp_events.wait_closed()

    def steps(recorder):
        return [
            (e.current_state, e.fsm_event, e.action, e.next_state) for e in recorder.of(evt.EVT_FSM_TRANSITION)
        ]

    assert steps(scu_events) == [
        ("Sta1", "Evt1", "AE-1", "Sta4"),  # A-ASSOCIATE request: connect
        ("Sta4", "Evt2", "AE-2", "Sta5"),  # connected: send A-ASSOCIATE-RQ
        ("Sta5", "Evt3", "AE-3", "Sta6"),  # A-ASSOCIATE-AC received
        ("Sta6", "Evt9", "DT-1", "Sta6"),  # P-DATA request
        ("Sta6", "Evt10", "DT-2", "Sta6"),  # P-DATA-TF received
        ("Sta6", "Evt11", "AR-1", "Sta7"),  # A-RELEASE request
        ("Sta7", "Evt13", "AR-3", "Sta1"),  # A-RELEASE-RP received
    ]
    assert steps(scp_events) == [
        ("Sta1", "Evt5", "AE-5", "Sta2"),  # connection accepted
        ("Sta2", "Evt6", "AE-6", "Sta3"),  # A-ASSOCIATE-RQ received
        ("Sta3", "Evt7", "AE-7", "Sta6"),  # A-ASSOCIATE response accept
        ("Sta6", "Evt10", "DT-2", "Sta6"),
        ("Sta6", "Evt9", "DT-1", "Sta6"),
        ("Sta6", "Evt12", "AR-2", "Sta8"),  # A-RELEASE-RQ received
        ("Sta8", "Evt14", "AR-4", "Sta13"),  # A-RELEASE response
        ("Sta13", "Evt17", "AR-5", "Sta1"),  # transport closed
    ]


@pytest.mark.timeout(10)
def test_pdu_acse_dimse_and_data_events_carry_their_payload(pair):
    scp, scu = pair
    scp_events, scu_events = Recorder(), Recorder()
    _, port = serve(scp, scp_events.handlers())
    assoc = scu.associate(LOCALHOST, port, evt_handlers=scu_events.handlers())
    assoc.send_c_echo()
    assoc.release()
    scp_events.wait_closed()

    def types(recorder, event_type, attribute):
        return [type(getattr(e, attribute)) for e in recorder.of(event_type)]

    assert types(scu_events, evt.EVT_PDU_SENT, "pdu") == [AssociateRQ, PDataTF, ReleaseRQ]
    assert types(scu_events, evt.EVT_PDU_RECV, "pdu") == [AssociateAC, PDataTF, ReleaseRP]
    assert types(scu_events, evt.EVT_ACSE_SENT, "primitive") == [AssociateRQ, ReleaseRQ]
    assert types(scu_events, evt.EVT_ACSE_RECV, "primitive") == [AssociateAC, ReleaseRP]
    assert types(scp_events, evt.EVT_PDU_RECV, "pdu") == [AssociateRQ, PDataTF, ReleaseRQ]
    assert types(scp_events, evt.EVT_ACSE_SENT, "primitive") == [AssociateAC, ReleaseRP]

    (sent,) = scu_events.of(evt.EVT_DIMSE_SENT)
    (received,) = scu_events.of(evt.EVT_DIMSE_RECV)
    assert isinstance(sent.message, CEchoRQ) and sent.context_id == 1
    assert isinstance(received.message, CEchoRSP) and received.message.status == 0
    assert received.message.message_id_being_responded_to == sent.message.message_id
    assert isinstance(scp_events.of(evt.EVT_DIMSE_RECV)[0].message, CEchoRQ)

    scu_sent = b"".join(bytes(e.data) for e in scu_events.of(evt.EVT_DATA_SENT))
    scp_received = b"".join(bytes(e.data) for e in scp_events.of(evt.EVT_DATA_RECV))
    assert scu_sent == scp_received
    assert scu_sent[:1] == b"\x01"  # the A-ASSOCIATE-RQ comes first
    scp_sent = b"".join(bytes(e.data) for e in scp_events.of(evt.EVT_DATA_SENT))
    assert scp_sent == b"".join(bytes(e.data) for e in scu_events.of(evt.EVT_DATA_RECV))

    (scu_open,) = scu_events.of(evt.EVT_CONN_OPEN)
    assert scu_open.address == (LOCALHOST, port)
    (scp_open,) = scp_events.of(evt.EVT_CONN_OPEN)
    assert scp_open.address == (LOCALHOST, assoc.requestor.port)


@pytest.mark.timeout(10)
def test_rejection_events(pair):
    scp, scu = pair
    scp.require_called_aet = True
    scp_events, scu_events = Recorder(), Recorder()
    _, port = serve(scp, scp_events.handlers())
    assoc = scu.associate(LOCALHOST, port, ae_title="WRONG", evt_handlers=scu_events.handlers())
    assert assoc.is_rejected
    scu_events.wait_closed()
    scp_events.wait_closed()
    assert scu_events.names(*NOISY) == ["EVT_CONN_OPEN", "EVT_REJECTED", "EVT_CONN_CLOSE"]
    assert scp_events.names(*NOISY) == ["EVT_CONN_OPEN", "EVT_REQUESTED", "EVT_REJECTED", "EVT_CONN_CLOSE"]


@pytest.mark.timeout(10)
def test_abort_events(pair):
    scp, scu = pair
    scp_events, scu_events = Recorder(), Recorder()
    _, port = serve(scp, scp_events.handlers())
    assoc = scu.associate(LOCALHOST, port, evt_handlers=scu_events.handlers())
    assoc.abort()
    assert assoc.is_aborted
    scu_events.wait_closed()
    scp_events.wait_closed()
    assert scu_events.names(*NOISY) == [
        "EVT_CONN_OPEN", "EVT_ACCEPTED", "EVT_ESTABLISHED", "EVT_ABORTED", "EVT_CONN_CLOSE",
    ]  # fmt: skip
    assert scp_events.names(*NOISY) == [
        "EVT_CONN_OPEN", "EVT_REQUESTED", "EVT_ACCEPTED", "EVT_ESTABLISHED", "EVT_ABORTED", "EVT_CONN_CLOSE",
    ]  # fmt: skip


@pytest.mark.timeout(10)
def test_handlers_with_args_and_bind_unbind_on_an_association(pair):
    scp, scu = pair
    seen = []
    _, port = serve(scp)

    def on_accepted(event, first, second):
        seen.append(("accepted", first, second))

    def on_dimse_sent(event):
        seen.append(("sent", type(event.message).__name__))

    assoc = scu.associate(LOCALHOST, port, evt_handlers=[(evt.EVT_ACCEPTED, on_accepted, ["optional", "parameters"])])
    assert seen == [("accepted", "optional", "parameters")]
    assoc.bind(evt.EVT_DIMSE_SENT, on_dimse_sent)
    assert [h for h, _ in assoc.get_handlers(evt.EVT_DIMSE_SENT)] == [on_dimse_sent]
    assoc.send_c_echo()
    assoc.unbind(evt.EVT_DIMSE_SENT, on_dimse_sent)
    assoc.send_c_echo()
    assert seen == [("accepted", "optional", "parameters"), ("sent", "CEchoRQ")]
    assoc.release()


@pytest.mark.timeout(10)
def test_byte_and_transition_events_bound_mid_association_fire_until_unbound(pair):
    """These observers are hooked into the link only while bound: binding late must hook them."""
    scp, scu = pair
    _, port = serve(scp)
    assoc = scu.associate(LOCALHOST, port)
    seen = []

    def record(event):
        seen.append(event.event.name)

    watched = (evt.EVT_DATA_RECV, evt.EVT_DATA_SENT, evt.EVT_FSM_TRANSITION)
    for event in watched:
        assoc.bind(event, record)
    assoc.send_c_echo()
    assert {"EVT_DATA_SENT", "EVT_DATA_RECV", "EVT_FSM_TRANSITION"} <= set(seen)
    for event in watched:
        assoc.unbind(event, record)
    seen.clear()
    assoc.send_c_echo()
    assoc.release()
    assert seen == []


@pytest.mark.timeout(10)
def test_a_raising_notification_handler_does_not_break_the_association(pair, caplog):
    scp, scu = pair

    def broken(event):
        raise RuntimeError("handler bug")

    _, port = serve(scp, [(evt.EVT_ESTABLISHED, broken), (evt.EVT_DIMSE_RECV, broken)])
    with caplog.at_level(logging.ERROR, logger="router.net"):
        assoc = scu.associate(LOCALHOST, port, evt_handlers=[(evt.EVT_ACCEPTED, broken)])
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
    assert assoc.is_released
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("EVT_ACCEPTED" in m for m in messages)
    assert any("EVT_DIMSE_RECV" in m for m in messages)


# ---- intervention events over the wire ----------------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize("answer, status", [(0x0110, 0x0110), (0xB000, 0xB000), (0x0000, 0x0000)])
def test_c_echo_handler_status_reaches_the_scu(pair, answer, status):
    scp, scu = pair
    requests = []

    def on_echo(event):
        requests.append((event.request.message_id, event.context.abstract_syntax, event.assoc.is_acceptor))
        return answer

    _, port = serve(scp, [(evt.EVT_C_ECHO, on_echo)])
    assoc = scu.associate(LOCALHOST, port)
    assert assoc.send_c_echo(msg_id=7).Status == status
    assert requests == [(7, VERIFICATION, True)]
    assoc.release()


@pytest.mark.timeout(10)
def test_c_echo_handler_may_return_a_dataset(pair):
    scp, scu = pair

    def on_echo(event):
        status = Dataset()
        status.Status = 0x0122
        return status

    _, port = serve(scp, [(evt.EVT_C_ECHO, on_echo)])
    assoc = scu.associate(LOCALHOST, port)
    assert assoc.send_c_echo().Status == 0x0122
    assoc.release()


@pytest.mark.timeout(10)
def test_c_echo_handler_that_raises_gives_processing_failure(pair, caplog):
    scp, scu = pair

    def on_echo(event):
        raise RuntimeError("echo handler bug")

    _, port = serve(scp, [(evt.EVT_C_ECHO, on_echo)])
    assoc = scu.associate(LOCALHOST, port)
    with caplog.at_level(logging.ERROR, logger="router.net"):
        assert assoc.send_c_echo().Status == 0x0110
    assert any("EVT_C_ECHO" in r.getMessage() for r in caplog.records)
    assert assoc.is_established
    assoc.release()


def identity(positive: bool) -> UserIdentityRQ:
    return UserIdentityRQ(UserIdentityType.USERNAME_PASSCODE, positive, b"user", b"secret")


@pytest.mark.timeout(10)
def test_user_id_handler_refusing_rejects_the_association(pair):
    scp, scu = pair
    seen = []

    def on_user_id(event):
        seen.append((event.user_id_type, event.primary_field, event.secondary_field))
        return False, None

    _, port = serve(scp, [(evt.EVT_USER_ID, on_user_id)])
    assoc = scu.associate(LOCALHOST, port, ext_neg=[identity(True)])
    assert assoc.is_rejected and not assoc.is_established
    reason = assoc.reject_reason
    assert (int(reason.result), int(reason.source), int(reason.reason)) == (1, 1, 1)
    assert seen == [(2, b"user", b"secret")]


@pytest.mark.timeout(10)
def test_user_id_response_reaches_the_requestor(pair):
    scp, scu = pair
    _, port = serve(scp, [(evt.EVT_USER_ID, lambda event: (True, b"resp"))])
    assoc = scu.associate(LOCALHOST, port, ext_neg=[identity(True)])
    assert assoc.is_established
    assert assoc.acceptor.user_identity == UserIdentityAC(b"resp")
    assoc.release()
    # Without a positive response requested, no response is sent.
    assoc = scu.associate(LOCALHOST, port, ext_neg=[identity(False)])
    assert assoc.is_established
    assert assoc.acceptor.user_identity is None
    assoc.release()


@pytest.mark.timeout(10)
def test_user_id_default_accepts_without_a_response_and_a_raising_handler_rejects(pair):
    scp, scu = pair
    server, port = serve(scp)
    assoc = scu.associate(LOCALHOST, port, ext_neg=[identity(True)])
    assert assoc.is_established
    assert assoc.acceptor.user_identity is None
    assoc.release()

    def broken(event):
        raise RuntimeError("identity backend down")

    server.bind(evt.EVT_USER_ID, broken)
    assoc = scu.associate(LOCALHOST, port, ext_neg=[identity(True)])
    assert assoc.is_rejected


def accept_items(recorder: Recorder):
    (accept,) = [e.primitive for e in recorder.of(evt.EVT_ACSE_RECV) if isinstance(e.primitive, AssociateAC)]
    return accept.user_information


@pytest.mark.timeout(10)
def test_async_ops_handler_answers_the_window(pair):
    scp, scu = pair
    seen = []

    def on_async(event):
        seen.append((event.nr_invoked, event.nr_performed))
        return 2, 3

    _, port = serve(scp, [(evt.EVT_ASYNC_OPS, on_async)])
    recorder = Recorder([evt.EVT_ACSE_RECV])
    assoc = scu.associate(LOCALHOST, port, ext_neg=[AsyncOperationsWindow(5, 4)], evt_handlers=recorder.handlers())
    assert assoc.is_established
    assert seen == [(5, 4)]
    assert accept_items(recorder).async_ops_window == AsyncOperationsWindow(2, 3)
    assoc.release()


@pytest.mark.timeout(10)
def test_async_ops_default_is_synchronous(pair):
    scp, scu = pair
    _, port = serve(scp)
    recorder = Recorder([evt.EVT_ACSE_RECV])
    assoc = scu.associate(LOCALHOST, port, ext_neg=[AsyncOperationsWindow(5, 4)], evt_handlers=recorder.handlers())
    assert accept_items(recorder).async_ops_window == AsyncOperationsWindow(1, 1)
    assoc.release()
    # Not proposed: not answered.
    recorder = Recorder([evt.EVT_ACSE_RECV])
    assoc = scu.associate(LOCALHOST, port, evt_handlers=recorder.handlers())
    assert accept_items(recorder).async_ops_window is None
    assoc.release()


@pytest.mark.timeout(10)
def test_sop_extended_handler_reply_items(pair):
    scp, scu = pair
    seen = []

    def on_extended(event):
        seen.append(event.app_info)
        return {CT_IMAGE_STORAGE: b"\x01\x00", MR_IMAGE_STORAGE: None}

    _, port = serve(scp, [(evt.EVT_SOP_EXTENDED, on_extended)])
    recorder = Recorder([evt.EVT_ACSE_RECV])
    ext_neg = [SOPClassExtended(CT_IMAGE_STORAGE, b"\x01\x01"), SOPClassExtended(MR_IMAGE_STORAGE, b"\x02")]
    assoc = scu.associate(LOCALHOST, port, ext_neg=ext_neg, evt_handlers=recorder.handlers())
    assert assoc.is_established
    assert seen == [{CT_IMAGE_STORAGE: b"\x01\x01", MR_IMAGE_STORAGE: b"\x02"}]
    assert accept_items(recorder).sop_class_extended == (SOPClassExtended(CT_IMAGE_STORAGE, b"\x01\x00"),)
    assoc.release()


@pytest.mark.timeout(10)
def test_sop_extended_default_sends_no_reply_items(pair):
    scp, scu = pair
    _, port = serve(scp)
    recorder = Recorder([evt.EVT_ACSE_RECV])
    ext_neg = [SOPClassExtended(CT_IMAGE_STORAGE, b"\x01")]
    assoc = scu.associate(LOCALHOST, port, ext_neg=ext_neg, evt_handlers=recorder.handlers())
    assert assoc.is_established
    assert accept_items(recorder).sop_class_extended == ()
    assoc.release()


@pytest.mark.timeout(10)
def test_sop_common_handler_sees_the_proposed_items(pair):
    scp, scu = pair
    seen = []

    def on_common(event):
        seen.append(event.items)
        return {}

    _, port = serve(scp, [(evt.EVT_SOP_COMMON, on_common)])
    item = SOPClassCommonExtended(CT_IMAGE_STORAGE, STORAGE_SERVICE_CLASS, (MR_IMAGE_STORAGE,))
    assoc = scu.associate(LOCALHOST, port, ext_neg=[item])
    assert assoc.is_established
    assert seen == [{CT_IMAGE_STORAGE: item}]
    assoc.release()


# ---- server.bind / unbind ---------------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_server_bind_and_unbind_affect_active_and_future_associations(pair):
    scp, scu = pair
    server, port = serve(scp)
    active = scu.associate(LOCALHOST, port)
    assert active.send_c_echo().Status == 0x0000

    def on_echo(event):
        return 0xC001

    server.bind(evt.EVT_C_ECHO, on_echo)
    assert [h for h, _ in server.get_handlers(evt.EVT_C_ECHO)] == [on_echo]
    future = scu.associate(LOCALHOST, port)
    assert active.send_c_echo().Status == 0xC001
    assert future.send_c_echo().Status == 0xC001

    server.unbind(evt.EVT_C_ECHO, on_echo)
    assert server.get_handlers(evt.EVT_C_ECHO) == []
    later = scu.associate(LOCALHOST, port)
    for assoc in (active, future, later):
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()


@pytest.mark.timeout(10)
def test_server_bind_of_a_notification_reaches_active_associations(pair):
    scp, scu = pair
    closes = Recorder([evt.EVT_CONN_CLOSE])
    server, port = serve(scp, closes.handlers())
    active = scu.associate(LOCALHOST, port)
    received = []

    def on_released(event):
        received.append(event.assoc.requestor.ae_title)

    server.bind(evt.EVT_RELEASED, on_released)
    active.release()
    closes.wait_closed()
    assert received == ["SCU"]
    server.unbind(evt.EVT_RELEASED, on_released)
    closes.closed.clear()
    scu.associate(LOCALHOST, port).release()
    closes.wait_closed()
    assert len(closes.events) == 2
    assert received == ["SCU"]


@pytest.mark.timeout(10)
def test_associations_the_ae_requests_are_unaffected_by_server_bind(pair):
    scp, _ = pair
    scp.add_requested_context(VERIFICATION)
    server, port = serve(scp)
    calls = []
    server.bind(evt.EVT_ACCEPTED, lambda event: calls.append(event.assoc.is_acceptor))
    assoc = scp.associate(LOCALHOST, port)  # the same AE, as requestor, to its own server
    assert assoc.is_established
    assoc.release()
    assert calls == [True]
