"""C-FIND and C-CANCEL between our own SCU and SCP over loopback, and DCMTK findscu against our SCP."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

import pytest
from pydicom.dataset import Dataset

from router.net import AE, evt

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
VERIFICATION = "1.2.840.10008.1.1"
PENDING, SUCCESS, CANCEL = 0xFF00, 0x0000, 0xFE00
MATCHES = 5
WAIT = 10.0


def study(index: int) -> Dataset:
    match = Dataset()
    match.QueryRetrieveLevel = "STUDY"
    match.PatientName = f"DOE^{index}"
    match.StudyInstanceUID = f"1.2.826.0.1.{index}"
    return match


def query() -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientName = "DOE*"
    return identifier


@pytest.fixture
def seen():
    return []


@pytest.fixture
def message_ids():
    return []


@pytest.fixture
def scp(seen, message_ids):
    def on_find(event):
        seen.append(event.identifier)
        message_ids.append(event.request.message_id)
        for index in range(MATCHES):
            if event.is_cancelled:
                return
            time.sleep(0.02)
            yield PENDING, study(index)

    ae = AE("FINDSCP")
    ae.add_supported_context(STUDY_ROOT_FIND)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)])
    yield server
    ae.shutdown()


@pytest.fixture
def assoc(scp):
    ae = AE("FINDSCU")
    ae.dimse_timeout = WAIT
    ae.add_requested_context(STUDY_ROOT_FIND)
    association = ae.associate("127.0.0.1", scp.server_address[1])
    assert association.is_established
    yield association
    association.release()


def test_every_match_then_success(assoc, seen):
    responses = list(assoc.send_c_find(query(), STUDY_ROOT_FIND))
    assert [status.Status for status, _ in responses] == [PENDING] * MATCHES + [SUCCESS]
    assert [str(identifier.PatientName) for _, identifier in responses[:-1]] == [f"DOE^{i}" for i in range(MATCHES)]
    assert responses[-1][1] is None
    assert str(seen[0].PatientName) == "DOE*"


def test_cancel_ends_the_search_with_fe00(assoc):
    statuses = []
    for status, _ in assoc.send_c_find(query(), STUDY_ROOT_FIND, msg_id=77):
        statuses.append(status.Status)
        if status.Status == PENDING:
            assoc.send_c_cancel(77, query_model=STUDY_ROOT_FIND)
    assert statuses[-1] == CANCEL
    assert len(statuses) < MATCHES + 1
    assert assoc.is_established  # the association goes on after a cancel


def test_message_ids_default_to_1_as_pynetdicom_s_so_cancel_1_ends_a_later_find(assoc, message_ids):
    assert [status.Status for status, _ in assoc.send_c_find(query(), STUDY_ROOT_FIND)][-1] == SUCCESS
    statuses = []
    for status, _ in assoc.send_c_find(query(), STUDY_ROOT_FIND):  # the second request on the association
        statuses.append(status.Status)
        if len(statuses) == 1:
            assoc.send_c_cancel(1, query_model=STUDY_ROOT_FIND)
    assert statuses[-1] == CANCEL
    assert message_ids == [1, 1]


class FindPair:
    """Our SCP, whose matches carry the query's PatientName (so one query's answers are told from
    another's), `pause` s apart, and that answers C-ECHO; and an association to it."""

    def __init__(self, pause: float = 0.02, dimse_timeout: float = WAIT, stall_after_first: bool = False) -> None:
        self.go_on = threading.Event()  # a stalled handler goes on once set
        self.ae = AE("FINDSCP")
        self.ae.add_supported_context(STUDY_ROOT_FIND)
        self.ae.add_supported_context(VERIFICATION)
        self.pause, self.stall_after_first = pause, stall_after_first
        server = self.ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_FIND, self.on_find)])
        scu = AE()
        scu.dimse_timeout = dimse_timeout
        scu.add_requested_context(STUDY_ROOT_FIND)
        scu.add_requested_context(VERIFICATION)
        self.assoc = scu.associate("127.0.0.1", server.server_address[1])
        assert self.assoc.is_established

    def on_find(self, event):
        for index in range(MATCHES):
            if index == 1 and self.stall_after_first:
                self.go_on.wait(WAIT)
            time.sleep(self.pause)
            match = study(index)
            match.PatientName = f"{event.identifier.PatientName}^{index}"
            yield PENDING, match

    def close(self) -> None:
        self.go_on.set()
        self.assoc.release()
        self.ae.shutdown()


@pytest.fixture
def find_pair():
    """`find_pair(**options)` -> a FindPair, closed at teardown."""
    pairs = []

    def start(**options) -> FindPair:
        pairs.append(FindPair(**options))
        return pairs[-1]

    yield start
    for pair in pairs:
        pair.close()


def named(name: str) -> Dataset:
    identifier = query()
    identifier.PatientName = name
    return identifier


def first_match_then_stop(assoc, name: str, abandon: str = "break") -> tuple[int, str]:
    """Start a C-FIND and stop reading it after its first response, as `abandon` says."""
    if abandon == "break":
        for status, identifier in assoc.send_c_find(named(name), STUDY_ROOT_FIND):
            break  # the loop's generator is finalised at once
    else:
        first = assoc.send_c_find(named(name), STUDY_ROOT_FIND)
        status, identifier = next(first)
        if abandon == "close":
            first.close()
        else:
            del first
    return status.Status, str(identifier.PatientName)


def names(assoc, name: str) -> list[str]:
    """The PatientName of every match of a C-FIND read to its end, then its final status."""
    answers = list(assoc.send_c_find(named(name), STUDY_ROOT_FIND))
    return [str(identifier.PatientName) for _, identifier in answers[:-1]] + [hex(answers[-1][0].Status)]


ALL_SECOND = [f"SECOND^{i}" for i in range(MATCHES)] + [hex(SUCCESS)]


@pytest.mark.parametrize("abandon", ["break", "close", "drop"])
def test_a_find_read_in_part_leaves_nothing_for_the_next_request_with_its_id(find_pair, abandon):
    assoc = find_pair().assoc
    assert first_match_then_stop(assoc, "FIRST", abandon) == (PENDING, "FIRST^0")

    assert names(assoc, "SECOND") == ALL_SECOND
    assert assoc.send_c_echo().Status == SUCCESS  # ID 1 too: its response is its own
    assert assoc.is_established


def test_the_wait_for_an_abandoned_find_counts_from_the_peer_s_last_message(find_pair):
    assoc = find_pair(pause=0.4, dimse_timeout=1.5).assoc  # the rest of the find takes 1.6 s: longer than the timeout
    first_match_then_stop(assoc, "FIRST")

    assert assoc.send_c_echo().Status == SUCCESS
    assert assoc.is_established


def test_an_abandoned_find_that_never_ends_aborts_on_the_timeout_and_the_next_call_returns_empty(find_pair):
    assoc = find_pair(dimse_timeout=0.5, stall_after_first=True).assoc
    first_match_then_stop(assoc, "FIRST")

    assert assoc.send_c_echo() == Dataset()  # no exception: an empty status, as for any DIMSE timeout
    assert assoc.is_aborted


def test_a_c_cancel_that_comes_after_the_final_response_does_not_cancel_the_next_find(find_pair):
    assoc = find_pair(pause=0).assoc
    assert names(assoc, "FIRST")[-1] == hex(SUCCESS)
    assoc.send_c_cancel(1, query_model=STUDY_ROOT_FIND)  # too late, as one sent on the last match can be
    assoc.send_c_echo()  # by now the SCP has read the C-CANCEL

    assert names(assoc, "SECOND") == ALL_SECOND


def test_msg_id_none_takes_the_association_s_next_id(assoc, message_ids):
    for _ in range(2):
        list(assoc.send_c_find(query(), STUDY_ROOT_FIND, msg_id=None))
    first, second = message_ids
    assert second == first + 1


def find_responses(on_find=None) -> list[tuple[Dataset, Dataset | None]]:
    """Every response to one C-FIND sent to our SCP with `on_find` bound (None: no handler)."""
    ae = AE("FINDSCP")
    ae.add_supported_context(STUDY_ROOT_FIND)
    handlers = [] if on_find is None else [(evt.EVT_C_FIND, on_find)]
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    try:
        scu = AE()
        scu.add_requested_context(STUDY_ROOT_FIND)
        association = scu.associate("127.0.0.1", server.server_address[1])
        responses = list(association.send_c_find(query(), STUDY_ROOT_FIND))
        association.release()
    finally:
        ae.shutdown()
    return responses


def test_no_handler_gives_a_failure():
    responses = find_responses()
    assert len(responses) == 1 and responses[0][0].Status == 0xC311


def test_a_handler_that_raises_gives_a_failure_after_its_matches():
    def on_find(event):
        yield PENDING, study(0)
        raise RuntimeError("index unavailable")

    assert [status.Status for status, _ in find_responses(on_find)] == [PENDING, 0xC311]


def test_a_final_status_dataset_keeps_its_error_comment():
    def on_find(event):
        yield PENDING, study(0)
        status = Dataset()
        status.Status = 0xA900
        status.ErrorComment = "Query/Retrieve Level 'FOO' is not one of the Study Root levels"
        yield status, None

    responses = find_responses(on_find)
    assert [status.Status for status, _ in responses] == [PENDING, 0xA900]
    assert responses[-1][0].ErrorComment == "Query/Retrieve Level 'FOO' is not one of the Study Root levels"
    assert "ErrorComment" not in responses[0][0]


@pytest.mark.skipif(shutil.which("findscu") is None, reason="DCMTK findscu is not installed")
def test_dcmtk_findscu_gets_every_match(scp):
    result = subprocess.run(
        ["findscu", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=DOE*",
         "127.0.0.1", str(scp.server_address[1])],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Find Response") == MATCHES
    assert "DOE^4" in result.stderr
