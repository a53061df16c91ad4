"""C-GET and C-MOVE between our own SCU and SCP over loopback, and DCMTK getscu/movescu against our SCP.

C-GET: the instances (files streamed as stored, a JPEG Baseline one passed through, a Dataset)
come back as C-STOREs on the same association, with a pending response and its counts after
each; failures at the requestor make 0xB000 or 0xA702 with the Failed SOP Instance UID List.
C-MOVE: the SCP stores the instances at a third AE on an association of its own, with the Move
Originator AE title and message ID; unknown, unreachable and refusing destinations; contexts
proposed from the instances themselves, more than 128 pairs included. A C-CANCEL stops both
with 0xFE00 and the counts; handlers that are missing, raise or answer nonsense fail at once.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from router.net import AE, ALL_TRANSFER_SYNTAXES, accept_all_storage, build_role, evt, sop_class
from router.net.datasets import decode_dataset
from router.net.services.sub_operations import Unsendable
from tests.conftest import LOOPBACK, pick_free_port, run_client
from tests.interop import store_data
from tests.interop.store_data import CT_IMAGE_STORAGE, MR_IMAGE_STORAGE

pytestmark = pytest.mark.timeout(60)

STUDY_GET = sop_class.StudyRootQueryRetrieveInformationModelGet
STUDY_MOVE = sop_class.StudyRootQueryRetrieveInformationModelMove
SC_IMAGE_STORAGE = sop_class.SecondaryCaptureImageStorage
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
SUCCESS, PENDING, CANCEL = 0x0000, 0xFF00, 0xFE00
SUB_OPERATIONS_WITH_FAILURES, ALL_SUB_OPERATIONS_FAILED = 0xB000, 0xA702
MOVE_DESTINATION_UNKNOWN = 0xA801
OUT_OF_RESOURCES = 0xA700  # what a storage SCP answers to refuse an instance
WAIT = 10.0
SHORT_TIMEOUT = 0.5
SLOWLY = 0.1  # seconds a handler takes per instance, for a C-CANCEL to arrive mid-retrieve
DESTINATION = "DEST"
MOVE_MESSAGE_ID = 42


# ---- instances -------------------------------------------------------------------------
@pytest.fixture
def files(tmp_path: Path) -> list[store_data.Instance]:
    """A CT in Explicit VR LE, one in Implicit VR LE and pydicom's JPEG Baseline file."""
    return [
        store_data.write_instance(store_data.small_ct(seed=1), ExplicitVRLittleEndian, tmp_path / "ct-e.dcm", "e"),
        store_data.write_instance(store_data.small_ct(seed=2), ImplicitVRLittleEndian, tmp_path / "ct-i.dcm", "i"),
        store_data.jpeg_instance(tmp_path),
    ]


def tiny(sop_class_uid: str) -> Dataset:
    """A data set of `sop_class_uid` with no file meta (Implicit VR Little Endian)."""
    ds = Dataset()
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "Retrieve^Test"
    return ds


def study_query() -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    return identifier


def failed_uids(identifier: Dataset) -> list[str]:
    value = identifier.FailedSOPInstanceUIDList
    return [str(uid) for uid in value] if isinstance(value, MultiValue) else [str(value)] if value else []


def counts(status: Dataset) -> tuple[int | None, ...]:
    """(remaining, completed, failed, warning) of a response; None where absent."""
    names = ("Remaining", "Completed", "Failed", "Warning")
    return tuple(status.get(f"NumberOf{name}Suboperations") for name in names)


# ---- a storage SCP's handler ---------------------------------------------------------------
@dataclass
class Stored:
    sop_instance_uid: str
    transfer_syntax: str
    data: bytes  # the data set exactly as received
    originator_aet: str
    originator_id: int | None
    calling_aet: str
    association: int


class Receiver:
    """An EVT_C_STORE handler keeping what arrives; refuses the instances in `refuse` with 0xA700."""

    def __init__(self, refuse: set[str] | None = None, delay: float = 0.0) -> None:
        self.refuse = refuse or set()
        self.delay = delay
        self.stored: list[Stored] = []
        self.lock = threading.Lock()

    def __call__(self, event: evt.Event) -> int:
        request = event.request
        stored = Stored(
            request.affected_sop_instance_uid,
            event.context.transfer_syntax[0],
            event.encoded_dataset(include_meta=False),
            request.move_originator_application_entity_title,
            request.move_originator_message_id,
            event.assoc.requestor.ae_title,
            id(event.assoc),
        )
        with self.lock:
            self.stored.append(stored)
        time.sleep(self.delay)
        return OUT_OF_RESOURCES if stored.sop_instance_uid in self.refuse else SUCCESS

    def by_uid(self) -> dict[str, Stored]:
        return {stored.sop_instance_uid: stored for stored in self.stored}


def check_files_arrived(files: list[store_data.Instance], receiver: Receiver) -> None:
    """Each file arrived in its own transfer syntax, its data set bit for bit as stored."""
    received = receiver.by_uid()
    for instance in files:
        stored = received[instance.sop_instance_uid]
        assert stored.transfer_syntax == instance.transfer_syntax
        assert stored.data == store_data.data_part(instance.path)


# ---- the SCP and the SCUs -------------------------------------------------------------------
class Retriever:
    """An EVT_C_GET / EVT_C_MOVE handler yielding `items`, `delay` seconds apart."""

    def __init__(self, items: list[Any], destination: tuple | None = None, delay: float = 0.0) -> None:
        self.items = items
        self.destination = destination
        self.delay = delay
        self.events: list[evt.Event] = []

    def __call__(self, event: evt.Event):
        self.events.append(event)
        if self.destination is not None:
            yield self.destination
        yield len(self.items)
        for item in self.items:
            time.sleep(self.delay)
            yield PENDING, item


def retrieve_scp(our_server, handlers: list, title: str = "QRSCP"):
    """Our Q/R SCP: GET and MOVE, and the storage classes in every syntax, granting the SCP role."""
    ae = AE(title)
    ae.dimse_timeout = ae.acse_timeout = WAIT
    ae.add_supported_context(STUDY_GET)
    ae.add_supported_context(STUDY_MOVE)
    for uid in (CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, SC_IMAGE_STORAGE):
        ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES, scp_role=True)
    return our_server.start(ae, evt_handlers=handlers)


def get_scu(port: int, receiver: Receiver, roles: bool = True):
    """An association for C-GET that takes back CT (explicit, implicit) and JPEG secondary captures."""
    ae = AE("GETSCU")
    ae.dimse_timeout = ae.acse_timeout = WAIT
    ae.add_requested_context(STUDY_GET)
    for uid, syntax in ((CT_IMAGE_STORAGE, ExplicitVRLittleEndian), (CT_IMAGE_STORAGE, ImplicitVRLittleEndian),
                        (SC_IMAGE_STORAGE, JPEG_BASELINE)):
        ae.add_requested_context(uid, syntax)
    ext_neg = [build_role(CT_IMAGE_STORAGE, scp_role=True), build_role(SC_IMAGE_STORAGE, scp_role=True)] if roles else []
    assoc = ae.associate(LOOPBACK, port, ext_neg=ext_neg, evt_handlers=[(evt.EVT_C_STORE, receiver)])
    assert assoc.is_established
    return assoc


def move_scu(port: int):
    ae = AE("MOVESCU")
    ae.dimse_timeout = ae.acse_timeout = WAIT
    ae.add_requested_context(STUDY_MOVE)
    assoc = ae.associate(LOOPBACK, port)
    assert assoc.is_established
    return assoc


def destination_scp(our_server, receiver: Receiver):
    """The third AE a C-MOVE stores at: every storage class in every syntax, called by its title only."""
    ae = AE(DESTINATION)
    ae.require_called_aet = True
    accept_all_storage(ae)
    return our_server.start(ae, evt_handlers=[(evt.EVT_C_STORE, receiver)])


def get(port: int, receiver: Receiver, roles: bool = True) -> list[tuple[Dataset, Dataset | None]]:
    assoc = get_scu(port, receiver, roles)
    try:
        return list(assoc.send_c_get(study_query(), STUDY_GET))
    finally:
        assoc.release()


def move(port: int, destination: str = DESTINATION) -> list[tuple[Dataset, Dataset | None]]:
    assoc = move_scu(port)
    try:
        return list(assoc.send_c_move(study_query(), destination, STUDY_MOVE, msg_id=MOVE_MESSAGE_ID))
    finally:
        assoc.release()


# ---- C-GET ------------------------------------------------------------------------------
def test_get_sends_files_and_datasets_with_pending_counts(our_server, files):
    dataset = tiny(CT_IMAGE_STORAGE)
    retriever = Retriever([*(instance.path for instance in files), dataset])
    server = retrieve_scp(our_server, [(evt.EVT_C_GET, retriever)])
    receiver = Receiver()

    responses = get(server.server_address[1], receiver)

    statuses = [status.Status for status, _ in responses]
    assert statuses == [PENDING] * 4 + [SUCCESS]
    assert [counts(status) for status, _ in responses[:-1]] == [(3, 1, 0, 0), (2, 2, 0, 0), (1, 3, 0, 0), (0, 4, 0, 0)]
    assert counts(responses[-1][0]) == (None, 4, 0, 0)
    assert all(identifier is None for _, identifier in responses)
    check_files_arrived(files, receiver)
    assert receiver.by_uid()[dataset.SOPInstanceUID].transfer_syntax == ImplicitVRLittleEndian
    assert retriever.events[0].identifier.StudyInstanceUID == study_query().StudyInstanceUID


def test_get_with_one_refused_instance_warns_and_lists_it(our_server, files):
    server = retrieve_scp(our_server, [(evt.EVT_C_GET, Retriever([instance.path for instance in files]))])
    refused = files[1].sop_instance_uid
    responses = get(server.server_address[1], Receiver(refuse={refused}))

    status, identifier = responses[-1]
    assert status.Status == SUB_OPERATIONS_WITH_FAILURES
    assert counts(status) == (None, 2, 1, 0)
    assert failed_uids(identifier) == [refused]


def test_get_with_every_instance_refused_is_a702(our_server, files):
    server = retrieve_scp(our_server, [(evt.EVT_C_GET, Retriever([instance.path for instance in files]))])
    uids = [instance.sop_instance_uid for instance in files]
    status, identifier = get(server.server_address[1], Receiver(refuse=set(uids)))[-1]

    assert status.Status == ALL_SUB_OPERATIONS_FAILED
    assert counts(status) == (None, 0, 3, 0)
    assert failed_uids(identifier) == uids


def test_get_without_role_selection_fails_every_sub_operation(our_server, files):
    server = retrieve_scp(our_server, [(evt.EVT_C_GET, Retriever([instance.path for instance in files]))])
    receiver = Receiver()
    started = time.monotonic()
    status, identifier = get(server.server_address[1], receiver, roles=False)[-1]

    assert status.Status == ALL_SUB_OPERATIONS_FAILED
    assert failed_uids(identifier) == [instance.sop_instance_uid for instance in files]
    assert receiver.stored == []
    assert time.monotonic() - started < WAIT / 2  # no sub-operation waited for anything


def test_get_of_an_unusable_instance_counts_it_failed(our_server, files, tmp_path):
    no_class = Dataset()
    no_class.SOPInstanceUID = generate_uid()
    items = [files[0].path, tmp_path / "missing.dcm", no_class, None]
    server = retrieve_scp(our_server, [(evt.EVT_C_GET, Retriever(items))])
    status, identifier = get(server.server_address[1], Receiver())[-1]

    assert status.Status == SUB_OPERATIONS_WITH_FAILURES
    assert counts(status) == (None, 1, 3, 0)
    assert failed_uids(identifier) == [no_class.SOPInstanceUID]


def test_get_of_an_unsendable_instance_lists_it_failed_with_its_reason(our_server, files, caplog):
    unsendable = Unsendable(generate_uid(), "cut short since it was indexed")
    server = retrieve_scp(our_server, [(evt.EVT_C_GET, Retriever([files[0].path, unsendable]))])
    receiver = Receiver()
    status, identifier = get(server.server_address[1], receiver)[-1]

    assert status.Status == SUB_OPERATIONS_WITH_FAILURES
    assert counts(status) == (None, 1, 1, 0)
    assert failed_uids(identifier) == [unsendable.sop_instance_uid]
    assert [stored.sop_instance_uid for stored in receiver.stored] == [files[0].sop_instance_uid]
    assert f"cannot send {unsendable.sop_instance_uid}: cut short since it was indexed" in caplog.text


def raises_before_count(event):
    raise RuntimeError("archive offline")
    yield  # a generator


def bad_count(event):
    yield "three"


def raises_after_one(event):
    yield 2
    yield PENDING, tiny(CT_IMAGE_STORAGE)
    raise RuntimeError("archive offline")


@pytest.mark.parametrize(
    "handler, expected",
    [
        (None, [0xC411]),
        (raises_before_count, [0xC411]),
        (bad_count, [0xC413]),
        (raises_after_one, [PENDING, 0xC411]),
    ],
    ids=["no-handler", "raises", "bad-count", "raises-after-one"],
)
def test_get_handler_failures(our_server, handler, expected):
    server = retrieve_scp(our_server, [(evt.EVT_C_GET, handler)] if handler else [])
    responses = get(server.server_address[1], Receiver())
    assert [status.Status for status, _ in responses] == expected
    if handler is raises_after_one:
        assert counts(responses[-1][0]) == (None, 1, 1, 0)


def test_cancel_stops_a_get_after_the_current_sub_operation(our_server):
    datasets = [tiny(CT_IMAGE_STORAGE) for _ in range(6)]
    server = retrieve_scp(our_server, [(evt.EVT_C_GET, Retriever(datasets, delay=SLOWLY))])
    receiver = Receiver()
    assoc = get_scu(server.server_address[1], receiver)
    responses = []
    for status, identifier in assoc.send_c_get(study_query(), STUDY_GET, msg_id=7):
        responses.append((status, identifier))
        if len(responses) == 1:
            assoc.send_c_cancel(7, query_model=STUDY_GET)
    assert assoc.is_established  # the association goes on after a cancel
    assoc.release()

    status, identifier = responses[-1]
    remaining, completed, failed, warning = counts(status)
    assert status.Status == CANCEL
    assert remaining >= 1 and completed >= 1
    assert remaining + completed + failed + warning == len(datasets)
    assert len(receiver.stored) == completed
    assert failed_uids(identifier) == []


def test_scu_errors_without_a_context_or_an_association(our_server):
    server = retrieve_scp(our_server, [])
    assoc = get_scu(server.server_address[1], Receiver())
    with pytest.raises(ValueError, match="MOVE.*has been accepted"):
        next(assoc.send_c_move(study_query(), DESTINATION, STUDY_MOVE))
    assoc.release()
    with pytest.raises(RuntimeError, match="not been established"):
        next(assoc.send_c_get(study_query(), STUDY_GET))


def test_scu_gives_an_empty_status_when_no_response_comes(our_server):
    def stalls(event):
        time.sleep(2 * SHORT_TIMEOUT)
        yield 0

    server = retrieve_scp(our_server, [(evt.EVT_C_GET, stalls)])
    assoc = get_scu(server.server_address[1], Receiver())
    assoc.dimse_timeout = SHORT_TIMEOUT
    responses = list(assoc.send_c_get(study_query(), STUDY_GET))
    assert responses == [(Dataset(), None)]
    assert assoc.is_aborted


# ---- C-MOVE -----------------------------------------------------------------------------
def test_move_stores_at_the_destination_as_the_originator_asked(our_server, files):
    receiver = Receiver()
    destination = destination_scp(our_server, receiver)
    dataset = tiny(MR_IMAGE_STORAGE)
    retriever = Retriever([*(instance.path for instance in files), dataset], (LOOPBACK, destination.server_address[1]))
    server = retrieve_scp(our_server, [(evt.EVT_C_MOVE, retriever)], title="MOVESCP")

    responses = move(server.server_address[1])

    assert [status.Status for status, _ in responses] == [PENDING] * 4 + [SUCCESS]
    assert [counts(status)[:2] for status, _ in responses[:-1]] == [(3, 1), (2, 2), (1, 3), (0, 4)]
    check_files_arrived(files, receiver)
    assert dataset.SOPInstanceUID in receiver.by_uid()
    assert {(s.originator_aet, s.originator_id, s.calling_aet) for s in receiver.stored} == {
        ("MOVESCU", MOVE_MESSAGE_ID, "MOVESCP")
    }
    assert len({stored.association for stored in receiver.stored}) == 1
    assert retriever.events[0].move_destination == DESTINATION


def test_move_to_an_unknown_destination_is_a801(our_server, files):
    server = retrieve_scp(our_server, [(evt.EVT_C_MOVE, Retriever([files[0].path], (None, None)))])
    assert [status.Status for status, _ in move(server.server_address[1], "NOWHERE")] == [MOVE_DESTINATION_UNKNOWN]


@pytest.mark.parametrize("refusing", [False, True], ids=["nobody-listens", "rejects-the-association"])
def test_move_to_an_unreachable_destination_fails_every_sub_operation(our_server, files, refusing):
    if refusing:
        ae = AE("PICKY")
        ae.require_calling_aet = ["SOMEONE"]
        accept_all_storage(ae)
        port = our_server.start(ae).server_address[1]
    else:
        port = pick_free_port()
    server = retrieve_scp(our_server, [(evt.EVT_C_MOVE, Retriever([i.path for i in files], (LOOPBACK, port)))])

    responses = move(server.server_address[1])

    status, identifier = responses[-1]
    assert status.Status == ALL_SUB_OPERATIONS_FAILED
    assert counts(status) == (None, 0, 3, 0)
    assert failed_uids(identifier) == [instance.sop_instance_uid for instance in files]


@pytest.mark.parametrize(
    "destination, expected",
    [(None, [0xC511]), ("nowhere", [0xC513])],
    ids=["no-handler", "bad-destination"],
)
def test_move_handler_failures(our_server, destination, expected):
    handlers = [(evt.EVT_C_MOVE, Retriever([], destination))] if destination else []
    server = retrieve_scp(our_server, handlers)
    assert [status.Status for status, _ in move(server.server_address[1])] == expected


def test_cancel_stops_a_move_after_the_current_sub_operation(our_server):
    receiver = Receiver(delay=SLOWLY)
    destination = destination_scp(our_server, receiver)
    datasets = [tiny(CT_IMAGE_STORAGE) for _ in range(6)]
    retriever = Retriever(datasets, (LOOPBACK, destination.server_address[1]))
    server = retrieve_scp(our_server, [(evt.EVT_C_MOVE, retriever)])
    assoc = move_scu(server.server_address[1])
    responses = []
    for status, _ in assoc.send_c_move(study_query(), DESTINATION, STUDY_MOVE, msg_id=9):
        responses.append(status)
        if len(responses) == 1:
            assoc.send_c_cancel(9, query_model=STUDY_MOVE)
    assoc.release()

    remaining, completed, failed, warning = counts(responses[-1])
    assert responses[-1].Status == CANCEL
    assert remaining >= 1 and completed >= 1
    assert remaining + completed + failed + warning == len(datasets)
    assert len(receiver.stored) == completed


def test_move_opens_another_association_for_an_instance_it_did_not_foresee(our_server, files):
    receiver = Receiver()
    destination = destination_scp(our_server, receiver)
    # Datasets are read ahead one at a time: the JPEG file is met after the first association.
    items = [tiny(CT_IMAGE_STORAGE), tiny(MR_IMAGE_STORAGE), files[2].path]
    retriever = Retriever(items, (LOOPBACK, destination.server_address[1]))
    server = retrieve_scp(our_server, [(evt.EVT_C_MOVE, retriever)])

    assert move(server.server_address[1])[-1][0].Status == SUCCESS
    assert len(receiver.stored) == 3
    assert len({stored.association for stored in receiver.stored}) == 2
    check_files_arrived(files[2:], receiver)


def test_move_of_more_pairs_than_one_association_proposes(our_server, tmp_path):
    classes = list(sop_class.STORAGE_SOP_CLASSES)[:130]
    instances = [
        store_data.write_instance(tiny(uid), ImplicitVRLittleEndian, tmp_path / f"{index}.dcm", "tiny")
        for index, uid in enumerate(classes)
    ]
    receiver = Receiver()
    destination = destination_scp(our_server, receiver)
    retriever = Retriever([instance.path for instance in instances], (LOOPBACK, destination.server_address[1]))
    server = retrieve_scp(our_server, [(evt.EVT_C_MOVE, retriever)])

    assert move(server.server_address[1])[-1][0].Status == SUCCESS
    assert len(receiver.stored) == len(instances)
    # Each uncompressed pair takes two contexts (its own syntax, then the other): 64 per association.
    assert len({stored.association for stored in receiver.stored}) == 3


def test_move_encodes_a_file_anew_for_a_destination_without_its_syntax(our_server, files):
    """An explicit VR file goes to a destination that takes implicit VR only: same data set, new encoding."""
    explicit = next(instance for instance in files if instance.transfer_syntax == ExplicitVRLittleEndian)
    receiver = Receiver()
    ae = AE(DESTINATION)
    ae.add_supported_context(explicit.sop_class_uid, [ImplicitVRLittleEndian])
    destination = our_server.start(ae, evt_handlers=[(evt.EVT_C_STORE, receiver)])
    retriever = Retriever([explicit.path], (LOOPBACK, destination.server_address[1]))
    server = retrieve_scp(our_server, [(evt.EVT_C_MOVE, retriever)])

    assert move(server.server_address[1])[-1][0].Status == SUCCESS
    stored = receiver.by_uid()[explicit.sop_instance_uid]
    assert stored.transfer_syntax == ImplicitVRLittleEndian
    original = pydicom.dcmread(explicit.path)
    assert decode_dataset(stored.data, ImplicitVRLittleEndian) == original


def test_a_final_status_in_place_of_the_count_ends_the_retrieve_at_once(our_server):
    def refuse(event):
        yield 0xA900, None  # e.g. an identifier that does not match the model

    server = retrieve_scp(our_server, [(evt.EVT_C_GET, refuse)])
    responses = get(server.server_address[1], Receiver())
    assert [status.Status for status, _ in responses] == [0xA900]


ERROR_COMMENT_TAG = 0x00000902


def test_a_final_status_dataset_in_place_of_the_count_keeps_its_error_comment(our_server):
    def refuse(event):
        status = Dataset()
        status.Status = 0xA900
        long_comment = "the level's unique key needs a value " + "x" * 80  # cut to the 64 an LO holds
        status.add(DataElement(ERROR_COMMENT_TAG, "LO", long_comment, validation_mode=config.IGNORE))
        yield status, None

    server = retrieve_scp(our_server, [(evt.EVT_C_GET, refuse)])
    [(final, _)] = get(server.server_address[1], Receiver())
    assert final.Status == 0xA900
    assert final.ErrorComment == ("the level's unique key needs a value " + "x" * 80)[:64]


# ---- DCMTK against our SCP ------------------------------------------------------------
@pytest.mark.skipif(shutil.which("getscu") is None, reason="DCMTK getscu is not installed")
def test_dcmtk_getscu_receives_every_instance(our_server, files, tmp_path):
    explicit_dataset = tiny(CT_IMAGE_STORAGE)
    explicit_dataset.file_meta = store_data.file_meta_for(explicit_dataset, ExplicitVRLittleEndian)
    retriever = Retriever([files[1].path, explicit_dataset])  # getscu accepts each class in one syntax
    server = retrieve_scp(our_server, [(evt.EVT_C_GET, retriever)])
    output = tmp_path / "getscu"
    output.mkdir()

    result = run_client(
        ["getscu", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=1.2.3",
         "-od", str(output), LOOPBACK, str(server.server_address[1])],
        timeout=30,
    )

    assert result.returncode == 0, result.output
    assert len(list(output.iterdir())) == 2, result.output


@pytest.mark.skipif(shutil.which("movescu") is None, reason="DCMTK movescu is not installed")
def test_dcmtk_movescu_receives_every_instance(our_server, files, tmp_path):
    port = pick_free_port()
    retriever = Retriever([files[0].path, files[1].path], (LOOPBACK, port))
    server = retrieve_scp(our_server, [(evt.EVT_C_MOVE, retriever)])
    output = tmp_path / "movescu"
    output.mkdir()

    result = run_client(
        ["movescu", "-S", "-aet", "MOVESCU", "-aem", "MOVESCU", "+P", str(port), "-od", str(output),
         "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=1.2.3", LOOPBACK, str(server.server_address[1])],
        timeout=30,
    )

    assert result.returncode == 0, result.output
    assert sorted(path.name for path in output.iterdir()) == sorted(
        f"CT.{instance.sop_instance_uid}" for instance in files[:2]
    ), result.output
