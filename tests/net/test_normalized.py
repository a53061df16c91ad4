"""The DIMSE-N services between our own SCU and SCP over loopback, and Storage Commitment end to end.

Each N-service: a round trip with data sets both ways, failure statuses with their error fields,
no handler bound, a handler that raises, a response that never comes (bounded). Storage
Commitment Push Model (PS3.4 J): the N-EVENT-REPORT comes back on the association of the N-ACTION,
or on a new association the SCP opens to the SCU's own server. pynetdicom, as a separate process,
checks the wire format: as the SCP of all six services, and as a Storage Commitment SCU.
"""

from __future__ import annotations

import sys
import threading
import time

import pytest
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import PYDICOM_ROOT_UID, generate_uid

from router.net import AE, build_role, evt
from router.net.sop_class import CTImageStorage
from router.net.sop_class import ModalityPerformedProcedureStep as MPPS
from router.net.sop_class import StorageCommitmentPushModel, StorageCommitmentPushModelInstance
from tests.conftest import LOOPBACK, wait_until

SUCCESS, WARNING = 0x0000, 0x0001
INVALID_ATTRIBUTE_VALUE, PROCESSING_FAILURE, NO_SUCH_SOP_INSTANCE, NO_SUCH_SOP_CLASS = 0x0106, 0x0110, 0x0112, 0x0118
NO_SUCH_ACTION = 0x0123
BASIC_FILM_SESSION = "1.2.840.10008.5.1.1.1"  # a print SOP class, negotiated under a Meta SOP Class
GRAYSCALE_PRINT_META = "1.2.840.10008.5.1.1.9"
INSTANCE = "1.2.826.0.1.3680043.2.1125.1"
REQUEST_COMMITMENT = 1  # PS3.4 J.3.2: the N-ACTION's Action Type ID
ALL_COMMITTED, SOME_FAILED = 1, 2  # PS3.4 J.3.3: the N-EVENT-REPORT's Event Type IDs
WAIT = 10.0


def patient(name: str = "DOE^JOHN") -> Dataset:
    dataset = Dataset()
    dataset.PatientName = name
    dataset.PatientID = "12345"
    return dataset


def server_ae(title: str = "NSCP") -> AE:
    ae = AE(title)
    ae.add_supported_context(MPPS)
    ae.add_supported_context(GRAYSCALE_PRINT_META)
    ae.dimse_timeout = WAIT
    return ae


def scu_ae(title: str = "NSCU", *contexts: str) -> AE:
    ae = AE(title)
    for context in contexts or (MPPS,):
        ae.add_requested_context(context)
    ae.dimse_timeout = WAIT
    ae.acse_timeout = WAIT
    return ae


@pytest.fixture
def connect(our_server):
    """`connect(handlers, *contexts)` -> an established association with our SCP bound to `handlers`."""
    opened = []

    def open_association(handlers, *contexts):
        server = our_server.start(server_ae(), evt_handlers=handlers)
        association = scu_ae("NSCU", *contexts).associate(LOOPBACK, server.server_address[1])
        assert association.is_established
        opened.append(association)
        return association

    yield open_association
    for association in opened:
        association.release()


# ---- round trips -------------------------------------------------------------------------------
def test_n_get_sends_the_tags_and_returns_the_attribute_list(connect):
    seen = []

    def on_get(event):
        seen.append((event.attribute_identifiers, event.request.requested_sop_instance_uid))
        return SUCCESS, patient()

    assoc = connect([(evt.EVT_N_GET, on_get)])
    status, attributes = assoc.send_n_get([0x00100010, Tag(0x0010, 0x0020), "PatientBirthDate"], MPPS, INSTANCE)
    assert status.Status == SUCCESS
    assert (status.AffectedSOPClassUID, status.AffectedSOPInstanceUID) == (MPPS, INSTANCE)
    assert attributes.PatientName == "DOE^JOHN" and attributes.PatientID == "12345"
    assert seen == [([Tag(0x00100010), Tag(0x00100020), Tag(0x00100030)], INSTANCE)]


def test_n_set_hands_over_the_modification_list(connect):
    seen = []

    def on_set(event):
        seen.append((event.attribute_list.PatientName, event.modification_list.PatientID))
        return SUCCESS, event.attribute_list

    assoc = connect([(evt.EVT_N_SET, on_set)])
    status, attributes = assoc.send_n_set(patient("ROE^JANE"), MPPS, INSTANCE)
    assert status.Status == SUCCESS and status.AffectedSOPInstanceUID == INSTANCE
    assert attributes.PatientName == "ROE^JANE"
    assert seen == [("ROE^JANE", "12345")]


def test_n_action_carries_the_action_type_both_ways(connect):
    seen = []

    def on_action(event):
        seen.append((event.action_type, event.action_information.PatientName))
        reply = Dataset()
        reply.PatientComments = "done"
        return SUCCESS, reply

    assoc = connect([(evt.EVT_N_ACTION, on_action)])
    status, reply = assoc.send_n_action(patient(), 7, MPPS, INSTANCE)
    assert status.Status == SUCCESS and status.ActionTypeID == 7
    assert reply.PatientComments == "done"
    assert seen == [(7, "DOE^JOHN")]


def test_n_event_report_carries_the_event_type_both_ways(connect):
    seen = []

    def on_report(event):
        seen.append((event.event_type, event.event_information.PatientID, event.request.affected_sop_instance_uid))
        return SUCCESS, patient("REPLY")

    assoc = connect([(evt.EVT_N_EVENT_REPORT, on_report)])
    status, reply = assoc.send_n_event_report(patient(), 3, MPPS, INSTANCE)
    assert status.Status == SUCCESS and status.EventTypeID == 3
    assert status.AffectedSOPInstanceUID == INSTANCE
    assert reply.PatientName == "REPLY"
    assert seen == [(3, "12345", INSTANCE)]


def test_a_request_without_a_data_set_gives_the_handler_an_empty_one(connect):
    seen = []

    def on_action(event):
        seen.append(event.action_information)
        return SUCCESS, None

    assoc = connect([(evt.EVT_N_ACTION, on_action)])
    status, reply = assoc.send_n_action(None, 1, MPPS, INSTANCE)
    assert status.Status == SUCCESS and reply is None
    assert seen == [Dataset()]


def test_n_create_keeps_the_instance_uid_the_scu_chose(connect):
    assoc = connect([(evt.EVT_N_CREATE, lambda event: (SUCCESS, event.attribute_list))])
    status, attributes = assoc.send_n_create(patient(), MPPS, INSTANCE)
    assert status.Status == SUCCESS and status.AffectedSOPInstanceUID == INSTANCE
    assert attributes.PatientName == "DOE^JOHN"


def test_n_create_answers_the_instance_uid_the_handler_chose(connect):
    def on_create(event):
        created = event.attribute_list
        created.SOPInstanceUID = "1.2.3.4.5"
        return SUCCESS, created

    assoc = connect([(evt.EVT_N_CREATE, on_create)])
    status, attributes = assoc.send_n_create(patient(), MPPS)
    assert status.AffectedSOPInstanceUID == "1.2.3.4.5" == attributes.SOPInstanceUID


def test_n_create_generates_an_instance_uid_when_nobody_chose_one(connect):
    assoc = connect([(evt.EVT_N_CREATE, lambda event: (SUCCESS, None))])
    status, attributes = assoc.send_n_create(patient(), MPPS)
    assert status.Status == SUCCESS and attributes is None
    assert status.AffectedSOPInstanceUID.startswith(PYDICOM_ROOT_UID)


def test_n_delete_returns_the_status(connect):
    deleted = []

    def on_delete(event):
        deleted.append(event.request.requested_sop_instance_uid)
        return SUCCESS

    assoc = connect([(evt.EVT_N_DELETE, on_delete)])
    status = assoc.send_n_delete(MPPS, INSTANCE)
    assert status.Status == SUCCESS and status.AffectedSOPInstanceUID == INSTANCE
    assert deleted == [INSTANCE]


def test_meta_uid_selects_the_context_of_the_meta_sop_class(connect):
    seen = []

    def on_create(event):
        seen.append((event.request.affected_sop_class_uid, event.context.abstract_syntax))
        return SUCCESS, None

    assoc = connect([(evt.EVT_N_CREATE, on_create)], GRAYSCALE_PRINT_META)
    status, _ = assoc.send_n_create(Dataset(), BASIC_FILM_SESSION, meta_uid=GRAYSCALE_PRINT_META)
    assert status.Status == SUCCESS and status.AffectedSOPClassUID == BASIC_FILM_SESSION
    assert seen == [(BASIC_FILM_SESSION, GRAYSCALE_PRINT_META)]
    with pytest.raises(ValueError, match="No presentation context for 'Basic Film Session SOP Class'"):
        assoc.send_n_create(Dataset(), BASIC_FILM_SESSION)


# ---- statuses ------------------------------------------------------------------------------------
def test_a_failure_status_dataset_brings_its_error_fields_and_no_data_set(connect):
    def on_set(event):
        status = Dataset()
        status.Status = INVALID_ATTRIBUTE_VALUE
        status.ErrorComment = "PatientID is not ours"
        status.ErrorID = 42
        status.AttributeIdentifierList = [0x00100020]
        return status, patient()  # a failure sends no data set back

    assoc = connect([(evt.EVT_N_SET, on_set)])
    status, attributes = assoc.send_n_set(patient(), MPPS, INSTANCE)
    assert status.Status == INVALID_ATTRIBUTE_VALUE
    assert (status.ErrorComment, status.ErrorID) == ("PatientID is not ours", 42)
    assert status.AttributeIdentifierList == Tag(0x00100020)
    assert attributes is None


def test_a_warning_keeps_the_data_set(connect):
    assoc = connect([(evt.EVT_N_GET, lambda event: (WARNING, patient()))])
    status, attributes = assoc.send_n_get([], MPPS, INSTANCE)
    assert status.Status == WARNING and attributes.PatientID == "12345"


def test_an_int_failure_status_from_n_delete(connect):
    assoc = connect([(evt.EVT_N_DELETE, lambda event: NO_SUCH_SOP_INSTANCE)])
    assert assoc.send_n_delete(MPPS, INSTANCE).Status == NO_SUCH_SOP_INSTANCE


SENDS = {
    "N-EVENT-REPORT": (evt.EVT_N_EVENT_REPORT, lambda assoc: assoc.send_n_event_report(patient(), 1, MPPS, INSTANCE)[0]),
    "N-GET": (evt.EVT_N_GET, lambda assoc: assoc.send_n_get([0x00100010], MPPS, INSTANCE)[0]),
    "N-SET": (evt.EVT_N_SET, lambda assoc: assoc.send_n_set(patient(), MPPS, INSTANCE)[0]),
    "N-ACTION": (evt.EVT_N_ACTION, lambda assoc: assoc.send_n_action(patient(), 1, MPPS, INSTANCE)[0]),
    "N-CREATE": (evt.EVT_N_CREATE, lambda assoc: assoc.send_n_create(patient(), MPPS)[0]),
    "N-DELETE": (evt.EVT_N_DELETE, lambda assoc: assoc.send_n_delete(MPPS, INSTANCE)),
}


@pytest.mark.parametrize("service", SENDS)
def test_no_handler_answers_no_such_sop_class(connect, service):
    _, send = SENDS[service]
    assoc = connect([])
    assert send(assoc).Status == NO_SUCH_SOP_CLASS
    assert assoc.is_established


@pytest.mark.parametrize("service", SENDS)
def test_a_raising_handler_answers_processing_failure(connect, service):
    event_type, send = SENDS[service]

    def broken(event):
        raise RuntimeError("database unavailable")

    assoc = connect([(event_type, broken)])
    assert send(assoc).Status == PROCESSING_FAILURE
    assert assoc.is_established


def status_with_error_id(error_id: int) -> Dataset:
    status = Dataset()
    status.Status = INVALID_ATTRIBUTE_VALUE
    status.ErrorID = error_id
    return status


def created_as(instance_uid: str) -> Dataset:
    created = Dataset()
    created.SOPInstanceUID = instance_uid
    return created


UNSENDABLE_ANSWERS = {  # each made when the handler runs: pydicom warns of the invalid values
    "shape": lambda: SUCCESS,  # not (status, data set)
    "data set": lambda: (SUCCESS, "not a data set"),
    "status": lambda: ("not a status", None),
    "error id": lambda: (status_with_error_id(0x10000), None),  # Error ID is a US
    "instance uid": lambda: (SUCCESS, created_as("1.2." + "3" * 70)),  # a UI is at most 64 characters
}


@pytest.mark.filterwarnings("ignore:Invalid value:UserWarning", "ignore:The value length:UserWarning")
@pytest.mark.parametrize("answer", UNSENDABLE_ANSWERS)
def test_an_answer_that_cannot_be_sent_is_a_processing_failure(connect, answer):
    assoc = connect([(evt.EVT_N_CREATE, lambda event: UNSENDABLE_ANSWERS[answer]())])
    status, attributes = assoc.send_n_create(patient(), MPPS)
    assert status.Status == PROCESSING_FAILURE and attributes is None
    assert assoc.is_established


def test_no_response_in_time_aborts_and_returns_an_empty_status(our_server):
    release = threading.Event()

    def stuck(event):
        release.wait(WAIT)
        return SUCCESS, None

    server = our_server.start(server_ae(), evt_handlers=[(evt.EVT_N_ACTION, stuck)])
    scu = scu_ae()
    scu.dimse_timeout = 0.5
    assoc = scu.associate(LOOPBACK, server.server_address[1])
    started = time.monotonic()
    try:
        status, reply = assoc.send_n_action(patient(), 1, MPPS, INSTANCE)
    finally:
        release.set()
    assert (status, reply) == (Dataset(), None)
    assert time.monotonic() - started < WAIT / 2
    assert assoc.is_aborted


def test_no_context_and_no_association_are_refused(connect):
    assoc = connect([])
    with pytest.raises(ValueError, match="No presentation context for 'Storage Commitment Push Model SOP Class'"):
        assoc.send_n_action(None, REQUEST_COMMITMENT, StorageCommitmentPushModel, StorageCommitmentPushModelInstance)
    assoc.release()
    with pytest.raises(RuntimeError, match="has not been established"):
        assoc.send_n_get([], MPPS, INSTANCE)


# ---- Storage Commitment Push Model (PS3.4 J) ------------------------------------------------------
STORED = {f"1.2.826.0.1.3680043.2.1125.{n}" for n in (10, 11)}  # what the test's SCP holds


def commitment_request(*instances: str) -> Dataset:
    request = Dataset()
    request.TransactionUID = generate_uid()
    request.ReferencedSOPSequence = [reference(uid) for uid in instances]
    return request


def reference(instance_uid: str, failure_reason: int | None = None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = instance_uid
    if failure_reason is not None:
        item.FailureReason = failure_reason
    return item


def commitment_result(request: Dataset) -> tuple[int, Dataset]:
    """The Event Type ID and Event Information answering a commitment request."""
    result = Dataset()
    result.TransactionUID = request.TransactionUID
    uids = [item.ReferencedSOPInstanceUID for item in request.ReferencedSOPSequence]
    result.ReferencedSOPSequence = [reference(uid) for uid in uids if uid in STORED]
    failed = [reference(uid, NO_SUCH_SOP_INSTANCE) for uid in uids if uid not in STORED]
    if not failed:
        return ALL_COMMITTED, result
    result.FailedSOPSequence = failed
    return SOME_FAILED, result


class CommitmentSCP:
    """Answers N-ACTION, then reports: on the same association when the SCU offered to take the
    SCP role there (role selection), else on a new association to the SCU's own server."""

    def __init__(self, our_server, scu_port: int | None = None) -> None:
        self.scu_port = scu_port
        self.report_statuses: list[int] = []
        ae = AE("COMMITSCP")
        ae.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
        ae.add_requested_context(StorageCommitmentPushModel)
        ae.dimse_timeout = ae.acse_timeout = WAIT
        self.ae = ae
        self.server = our_server.start(ae, evt_handlers=[(evt.EVT_N_ACTION, self.on_action)])

    def on_action(self, event):
        request = event.action_information
        if event.action_type != REQUEST_COMMITMENT:
            return NO_SUCH_ACTION, None
        event.after_response(lambda: self.report(event, request))
        return SUCCESS, None

    def report(self, event, request: Dataset) -> None:
        event_type, result = commitment_result(request)
        if event.context.as_scu:  # the SCU accepted to be the SCP of N-EVENT-REPORT here
            status, _ = event.assoc.send_n_event_report(
                result, event_type, StorageCommitmentPushModel, StorageCommitmentPushModelInstance
            )
        else:
            status = self.report_on_new_association(event_type, result)
        self.report_statuses.append(status.Status)

    def report_on_new_association(self, event_type: int, result: Dataset) -> Dataset:
        role = build_role(StorageCommitmentPushModel, scp_role=True)
        assoc = self.ae.associate(LOOPBACK, self.scu_port, ae_title="COMMITSCU", ext_neg=[role])
        status, _ = assoc.send_n_event_report(
            result, event_type, StorageCommitmentPushModel, StorageCommitmentPushModelInstance
        )
        assoc.release()
        return status


def commitment_scu() -> tuple[AE, list, list]:
    """The SCU's AE, the reports its EVT_N_EVENT_REPORT handler received, and its handler list."""
    reports: list = []

    def on_report(event):
        reports.append((event.event_type, event.event_information, event.assoc.is_requestor))
        return SUCCESS, None

    ae = AE("COMMITSCU")
    ae.add_requested_context(StorageCommitmentPushModel)
    ae.dimse_timeout = ae.acse_timeout = WAIT
    return ae, reports, [(evt.EVT_N_EVENT_REPORT, on_report)]


@pytest.mark.parametrize("instances, event_type", [
    (sorted(STORED), ALL_COMMITTED),
    ([*sorted(STORED), "1.2.826.0.1.3680043.2.1125.99"], SOME_FAILED),
])
def test_commitment_reported_on_the_same_association(our_server, instances, event_type):
    scp = CommitmentSCP(our_server)
    ae, reports, handlers = commitment_scu()
    role = build_role(StorageCommitmentPushModel, scu_role=True, scp_role=True)
    assoc = ae.associate(LOOPBACK, scp.server.server_address[1], ext_neg=[role], evt_handlers=handlers)
    request = commitment_request(*instances)
    status, reply = assoc.send_n_action(
        request, REQUEST_COMMITMENT, StorageCommitmentPushModel, StorageCommitmentPushModelInstance
    )
    assert status.Status == SUCCESS and reply is None
    assert assoc.run_until(lambda: bool(reports), WAIT)
    assoc.release()
    [(reported_type, result, on_our_request)] = reports
    assert (reported_type, on_our_request) == (event_type, True)
    assert result.TransactionUID == request.TransactionUID
    assert sorted(item.ReferencedSOPInstanceUID for item in result.ReferencedSOPSequence) == sorted(STORED)
    failed = [(item.ReferencedSOPInstanceUID, item.FailureReason) for item in result.get("FailedSOPSequence", [])]
    assert failed == [(uid, NO_SUCH_SOP_INSTANCE) for uid in instances if uid not in STORED]
    assert wait_until(lambda: scp.report_statuses == [SUCCESS], WAIT)


def test_commitment_reported_on_a_new_association_to_the_scu(our_server):
    ae, reports, handlers = commitment_scu()
    ae.add_supported_context(StorageCommitmentPushModel, scp_role=True)  # the SCP's role selection
    listener = our_server.start(ae, evt_handlers=handlers)
    scp = CommitmentSCP(our_server, scu_port=listener.server_address[1])
    assoc = ae.associate(LOOPBACK, scp.server.server_address[1])  # default roles: no report here
    request = commitment_request(*sorted(STORED))
    status, _ = assoc.send_n_action(
        request, REQUEST_COMMITMENT, StorageCommitmentPushModel, StorageCommitmentPushModelInstance
    )
    assoc.release()  # the SCU is free to go once the N-ACTION is answered
    assert status.Status == SUCCESS
    assert wait_until(lambda: bool(reports), WAIT)
    [(event_type, result, on_our_request)] = reports
    assert (event_type, on_our_request) == (ALL_COMMITTED, False)
    assert result.TransactionUID == request.TransactionUID
    assert wait_until(lambda: scp.report_statuses == [SUCCESS], WAIT)


def test_a_report_goes_on_an_scu_context_when_no_roles_were_negotiated(our_server):
    """pynetdicom's behaviour: the reporting SCP may be the requestor with default roles."""
    ae, reports, handlers = commitment_scu()
    ae.add_supported_context(StorageCommitmentPushModel)  # no role selection
    listener = our_server.start(ae, evt_handlers=handlers)
    sender = AE("COMMITSCP")
    sender.add_requested_context(StorageCommitmentPushModel)
    assoc = sender.associate(LOOPBACK, listener.server_address[1])
    _, result = commitment_result(commitment_request(*sorted(STORED)))
    status, _ = assoc.send_n_event_report(
        result, ALL_COMMITTED, StorageCommitmentPushModel, StorageCommitmentPushModelInstance
    )
    assoc.release()
    assert status.Status == SUCCESS
    assert [(event_type, requestor) for event_type, _, requestor in reports] == [(ALL_COMMITTED, False)]


# ---- pynetdicom as the peer --------------------------------------------------------------------
# A pynetdicom Print SCP answering all six N-services; argv = port. Its replies say what it received.
PYNETDICOM_N_SCP = """
import sys
from pydicom.dataset import Dataset
from pynetdicom import AE, evt

def replying(**values):
    reply = Dataset()
    for keyword, value in values.items():
        setattr(reply, keyword, value)
    return 0x0000, reply

handlers = [
    (evt.EVT_N_GET, lambda event: replying(PatientID=str(len(event.attribute_identifiers)))),
    (evt.EVT_N_SET, lambda event: replying(PatientName=event.modification_list.PatientName)),
    (evt.EVT_N_ACTION, lambda event: replying(PatientID=str(event.action_type))),
    (evt.EVT_N_CREATE, lambda event: replying(PatientName=event.attribute_list.PatientName)),
    (evt.EVT_N_DELETE, lambda event: 0x0000),
    (evt.EVT_N_EVENT_REPORT, lambda event: replying(PatientID=str(event.event_type))),
]
ae = AE("PYNSCP")
ae.add_supported_context("1.2.840.10008.5.1.1.1")
ae.start_server(("127.0.0.1", int(sys.argv[1])), block=True, evt_handlers=handlers)
"""

# A pynetdicom Storage Commitment SCU that takes the report on its association; argv = port.
PYNETDICOM_COMMITMENT_SCU = """
import sys, threading
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt

COMMITMENT, INSTANCE = "1.2.840.10008.1.20.1", "1.2.840.10008.1.20.1.1"
reported = threading.Event()

def on_report(event):
    result = event.event_information
    print(f"REPORT {event.event_type} {result.TransactionUID} {len(result.ReferencedSOPSequence)}", flush=True)
    reported.set()
    return 0x0000, None

ae = AE("PYSCU")
ae.add_requested_context(COMMITMENT)
role = build_role(COMMITMENT, scu_role=True, scp_role=True)
assoc = ae.associate("127.0.0.1", int(sys.argv[1]), ext_neg=[role], evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
request = Dataset()
request.TransactionUID = "1.2.826.0.1.3680043.2.1125.777"
request.ReferencedSOPSequence = [Dataset(), Dataset()]
for item, uid in zip(request.ReferencedSOPSequence, sys.argv[2:]):
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = uid
status, _ = assoc.send_n_action(request, 1, COMMITMENT, INSTANCE)
print(f"ACTION {status.Status}", flush=True)  # one write: the report's thread prints too
reported.wait(10)
assoc.release()
"""


@pytest.mark.pynetdicom
def test_every_n_service_against_a_pynetdicom_scp(peers):
    scp = peers.start("pynetdicom-n-scp", lambda port: [sys.executable, "-c", PYNETDICOM_N_SCP, str(port)])
    assoc = scu_ae("NSCU", BASIC_FILM_SESSION).associate(LOOPBACK, scp.port)
    assert assoc.is_established
    try:
        status, reply = assoc.send_n_get([0x00100010, 0x00100020], BASIC_FILM_SESSION, INSTANCE)
        assert (status.Status, reply.PatientID) == (SUCCESS, "2")
        status, reply = assoc.send_n_set(patient("SET^ME"), BASIC_FILM_SESSION, INSTANCE)
        assert (status.Status, reply.PatientName) == (SUCCESS, "SET^ME")
        status, reply = assoc.send_n_action(patient(), 5, BASIC_FILM_SESSION, INSTANCE)
        assert (status.Status, status.ActionTypeID, reply.PatientID) == (SUCCESS, 5, "5")
        status, reply = assoc.send_n_create(patient("NEW^ONE"), BASIC_FILM_SESSION, INSTANCE)
        assert (status.Status, reply.PatientName) == (SUCCESS, "NEW^ONE")
        status, reply = assoc.send_n_event_report(patient(), 4, BASIC_FILM_SESSION, INSTANCE)
        assert (status.Status, reply.PatientID) == (SUCCESS, "4")
        assert assoc.send_n_delete(BASIC_FILM_SESSION, INSTANCE).Status == SUCCESS
    finally:
        assoc.release()


@pytest.mark.pynetdicom
def test_a_pynetdicom_scu_gets_its_commitment_report_on_the_same_association(our_server, client):
    scp = CommitmentSCP(our_server)
    port = str(scp.server.server_address[1])
    missing = "1.2.826.0.1.3680043.2.1125.99"
    finished = client([sys.executable, "-c", PYNETDICOM_COMMITMENT_SCU, port, min(STORED), missing])
    assert finished.returncode == 0, finished.output
    assert "ACTION 0" in finished.output
    assert f"REPORT {SOME_FAILED} 1.2.826.0.1.3680043.2.1125.777 1" in finished.output, finished.output
    assert wait_until(lambda: scp.report_statuses == [SUCCESS], WAIT)
