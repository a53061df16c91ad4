"""qrscp's retrieves when what they send cannot arrive, as a real process on loopback.

A move destination that accepts the TCP connection and never answers the A-ASSOCIATE-RQ (a
listening socket nobody reads), and an instance cut short after qrscp indexed it. Each time the
requester gets its final response, within its own timeouts, with the failed sub-operations counted
and their SOP Instance UIDs listed (PS3.4 C.4.2.3.1, C.4.3.3.1): 0xA702 when every one failed,
0xB000 when some did. The responses are read by our engine in process where their fields matter,
and by the real requesters (our movescu and getscu, pynetdicom's movescu, DCMTK's getscu) with their
default timeouts.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from router.net import AE
from router.net.sop_class import StudyRootQueryRetrieveInformationModelMove
from router.net.status import OUT_OF_RESOURCES_SUB_OPERATIONS, SUB_OPERATIONS_WITH_FAILURES
from tests.conftest import LOOPBACK, Peer, our_app, pynetdicom_app
from tests.interop.test_qr_apps import STUDY_1, dcmtk, keys, only_file, write_config
from tests.net.test_qr_index import LIBRARY, write_library

SILENT = "SILENT"  # the move destination that never answers
STORE = "STORE"  # the move destination that stores (our storescp)
DESTINATION_TIMEOUT = 1.0  # what the tests configure: a second per wait on the destination
REQUESTER_TIMEOUT = 6.0  # the in-process requester's DIMSE timeout: below qrscp's acse_timeout (10 s)
STUDY_1_SPECS = LIBRARY[:3]
STUDY_1_QUERY = ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={STUDY_1}"]


def start_qrscp(peers, tmp_path: Path, destinations: dict[str, int], settings: dict | None = None) -> tuple[Peer, dict]:
    """A running qrscp over a fresh library that knows `destinations`; its files by SOP Instance UID."""
    folder = tmp_path / "archive"
    files = write_library(folder)
    config = write_config(tmp_path / "qrscp.ini", folder, destinations, settings)
    qrscp = peers.start("qrscp", lambda port: our_app("qrscp", "-c", str(config), "--port", str(port), "-v"))
    assert qrscp.wait_for_output(f"{len(files)} instances in"), qrscp.output()
    return qrscp, files


def move_in_process(port: int, destination: str, query: list[str]) -> tuple[pydicom.Dataset, pydicom.Dataset | None, float]:
    """C-MOVE `query` (Study Root) to `destination` from our engine: the final status, its identifier
    and the seconds until it came; an empty status if none came within REQUESTER_TIMEOUT."""
    ae = AE("REQUESTER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    ae.acse_timeout, ae.dimse_timeout = 5, REQUESTER_TIMEOUT
    assoc = ae.associate(LOOPBACK, port, ae_title="QRSCP")
    assert assoc.is_established
    identifier = pydicom.Dataset()
    for pair in query:
        keyword, _, value = pair.partition("=")
        setattr(identifier, keyword, value)
    started = time.monotonic()
    try:
        *_, (status, failed) = assoc.send_c_move(identifier, destination, StudyRootQueryRetrieveInformationModelMove)
        return status, failed, time.monotonic() - started
    finally:
        assoc.release()


# ---- a move destination that never answers ----------------------------------------------------------
@pytest.fixture
def silent_destination():
    """The port of a socket that completes TCP connections and never reads or writes a byte."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(8)  # the kernel accepts; nobody answers
        yield listener.getsockname()[1]


@pytest.fixture
def silent_archive(peers, tmp_path, silent_destination) -> Peer:
    """A running qrscp that knows SILENT, with the destination timeout of the tests (in its ini file)."""
    qrscp, _ = start_qrscp(peers, tmp_path, {SILENT: silent_destination}, {"destination_timeout": DESTINATION_TIMEOUT})
    return qrscp


def move_from_silent(*requester: str) -> list[str]:
    return [*requester, "-aec", "QRSCP", "-S", "-aem", SILENT, *keys(*STUDY_1_QUERY)]


@pytest.mark.timeout(30)
def test_a_silent_move_destination_fails_every_sub_operation_before_the_requester_gives_up(silent_archive):
    status, failed, elapsed = move_in_process(silent_archive.port, SILENT, STUDY_1_QUERY)
    assert status.get("Status") == OUT_OF_RESOURCES_SUB_OPERATIONS, f"no final response in {elapsed:.1f} s"
    assert elapsed < 2 * DESTINATION_TIMEOUT + 2  # to connect (at once here), then for the association answer
    counts = (status.NumberOfCompletedSuboperations, status.NumberOfFailedSuboperations, status.NumberOfWarningSuboperations)
    assert counts == (0, len(STUDY_1_SPECS), 0)
    assert sorted(failed.FailedSOPInstanceUIDList) == sorted(spec.sop_uid for spec in STUDY_1_SPECS)
    said = f"E: Unable to associate with the move destination {SILENT}"
    assert silent_archive.wait_for_output(said), silent_archive.output()


@pytest.mark.timeout(30)
def test_our_movescu_with_its_default_timeouts_hears_of_the_silent_destination(silent_archive, client):
    result = client(move_from_silent(*our_app("movescu", LOOPBACK, str(silent_archive.port))))
    assert result.returncode == 1, result.output
    assert "0xA702" in result.output and "0 completed, 3 failed" in result.output, result.output
    assert result.elapsed < 2 * DESTINATION_TIMEOUT + 5


@pytest.mark.pynetdicom
@pytest.mark.timeout(30)
def test_pynetdicoms_movescu_with_its_default_timeouts_hears_of_the_silent_destination(silent_archive, client):
    result = client(move_from_silent(*pynetdicom_app("movescu", LOOPBACK, str(silent_archive.port))))
    assert "Move SCP Result: 0xA702 (Failure)" in result.output, result.output
    assert "Sub-Operations Remaining: 0, Completed: 0, Failed: 3, Warning: 0" in result.output, result.output
    assert f"Failed SOP Instance UID List        UI: ['{STUDY_1_SPECS[0].sop_uid}'" in result.output, result.output
    assert result.elapsed < 2 * DESTINATION_TIMEOUT + 5


# ---- an instance cut short after it was indexed -------------------------------------------------------
@dataclass
class CutArchive:
    """A running qrscp whose second instance of study 1 was cut short once indexed, and the folder
    its move destination STORE (our storescp) writes to."""

    qrscp: Peer
    cut_uid: str
    cut_path: Path
    received: Path

    @property
    def whole_files(self) -> list[str]:
        """The names study 1's instances arrive under, but for the one cut short."""
        return sorted(f"{spec.sop_uid}.dcm" for spec in STUDY_1_SPECS if spec.sop_uid != self.cut_uid)

    def assert_logged_as_failed(self) -> None:
        reason = f"{self.cut_uid}: {self.cut_path}: truncated: Pixel Data needs 128 bytes, 78 remain"
        assert self.qrscp.wait_for_output(f"E: Sub-operation failed: cannot send {reason}"), self.qrscp.output()


@pytest.fixture
def cut_archive(peers, tmp_path) -> CutArchive:
    received = tmp_path / "received"
    storescp = peers.start("storescp", lambda port: our_app("storescp", str(port), "-aet", STORE, "-od", str(received)))
    qrscp, files = start_qrscp(peers, tmp_path, {STORE: storescp.port})
    uid = STUDY_1_SPECS[1].sop_uid
    files[uid].write_bytes(files[uid].read_bytes()[:-50])
    return CutArchive(qrscp, uid, files[uid], received)


@pytest.mark.timeout(30)
def test_a_c_move_fails_the_sub_operation_of_an_instance_cut_short_since_indexed(cut_archive):
    status, failed, _ = move_in_process(cut_archive.qrscp.port, STORE, STUDY_1_QUERY)
    assert status.get("Status") == SUB_OPERATIONS_WITH_FAILURES, status
    assert (status.NumberOfCompletedSuboperations, status.NumberOfFailedSuboperations) == (2, 1)
    assert failed.FailedSOPInstanceUIDList == cut_archive.cut_uid
    assert sorted(file.name for file in cut_archive.received.iterdir()) == cut_archive.whole_files
    cut_archive.assert_logged_as_failed()


@pytest.mark.timeout(30)
def test_our_getscu_is_told_of_the_instance_cut_short(cut_archive, client, tmp_path):
    out = tmp_path / "got"
    result = client(our_app("getscu", LOOPBACK, str(cut_archive.qrscp.port), "-aec", "QRSCP", "-S", "-od", str(out),
                            *keys(*STUDY_1_QUERY)))
    assert result.returncode == 1, result.output
    assert "0xB000" in result.output and "2 completed, 1 failed" in result.output, result.output
    assert sorted(file.name for file in out.iterdir()) == cut_archive.whole_files
    cut_archive.assert_logged_as_failed()


@pytest.mark.dcmtk
@pytest.mark.timeout(30)
def test_dcmtks_getscu_receives_only_the_whole_instances(cut_archive, client, tmp_path):
    out = tmp_path / "got"
    out.mkdir()
    peer = [LOOPBACK, str(cut_archive.qrscp.port)]
    result = client([dcmtk("getscu"), "-v", "-S", "-od", str(out), *keys(*STUDY_1_QUERY), *peer])
    assert result.returncode == 0, result.output  # DCMTK's getscu exits 0 on a Warning
    assert "Received C-GET Response (Warning: SubOperationsCompleteOneOrMoreFailures)" in result.output, result.output
    assert "Number of Failed Suboperations    : 1" in result.output, result.output
    for spec in STUDY_1_SPECS:
        if spec.sop_uid != cut_archive.cut_uid:
            only_file(out, spec.sop_uid)
    assert not [file for file in out.iterdir() if file.name.endswith(cut_archive.cut_uid)]
    cut_archive.assert_logged_as_failed()
