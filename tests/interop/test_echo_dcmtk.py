"""C-ECHO between our engine and DCMTK 3.6.7, both directions.

DCMTK's `echoscu` calls our echoscp (the app process and an in-process
server); our echoscu app and our `AE.associate` call DCMTK's `storescp`, which
also serves Verification.
"""

from __future__ import annotations

import subprocess
import threading

import pytest

from router.net import AE, evt
from router.net.status import SUCCESS
from tests.conftest import CLIENT_TIMEOUT, LOOPBACK, our_app, peer_environment, verification_ae

pytestmark = pytest.mark.dcmtk

DCMTK_SUCCESS = "Received Echo Response (Success)"


def dcmtk_storescp(peers, *options: str):
    """DCMTK's storescp (a Verification SCP too), titled STORESCP, writing into the test's folder."""
    return peers.start("storescp", lambda port: ["storescp", "-v", "-aet", "STORESCP", "-od", ".", *options, str(port)])


class EchoRecorder:
    """An EVT_C_ECHO handler that answers Success and remembers who asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, int]] = []
        self.lock = threading.Lock()

    def __call__(self, event: evt.Event) -> int:
        with self.lock:
            requestor = event.assoc.requestor
            self.calls.append((requestor.ae_title, requestor.implementation_version_name, event.request.message_id))
        return SUCCESS


# ---- DCMTK echoscu -> us -------------------------------------------------------
def test_dcmtk_echoscu_to_our_echoscp_app(peers, client):
    ours = peers.start("our-echoscp", lambda port: our_app("echoscp", str(port), "-v", "-ba", LOOPBACK))

    result = client(["echoscu", "-v", LOOPBACK, str(ours.port)])

    assert result.returncode == 0, result.output
    assert result.output.count(DCMTK_SUCCESS) == 1
    assert ours.wait_for_output("Association Released"), ours.output()
    assert "Received Echo Request (MsgID 1)" in ours.output()


def test_dcmtk_echoscu_repeat_5_to_our_echoscp_app(peers, client):
    ours = peers.start("our-echoscp", lambda port: our_app("echoscp", str(port), "-v", "-ba", LOOPBACK))

    result = client(["echoscu", "-v", "--repeat", "5", LOOPBACK, str(ours.port)])

    assert result.returncode == 0, result.output
    assert result.output.count(DCMTK_SUCCESS) == 5, result.output
    assert ours.wait_for_output("Association Released"), ours.output()
    log = ours.output()
    assert all(f"Received Echo Request (MsgID {n})" in log for n in range(1, 6)), log
    assert log.count("Association Accepted") == 1  # one association carried the five echoes


def test_dcmtk_echoscu_repeat_5_to_our_in_process_server(our_server, client):
    recorder = EchoRecorder()
    server = our_server.start(evt_handlers=[(evt.EVT_C_ECHO, recorder)])
    port = server.server_address[1]

    result = client(["echoscu", "-v", "--repeat", "5", "-aet", "DCMTKSCU", "-aec", "OURSCP", LOOPBACK, str(port)])

    assert result.returncode == 0, result.output
    assert result.output.count(DCMTK_SUCCESS) == 5, result.output
    assert [call[2] for call in recorder.calls] == [1, 2, 3, 4, 5]
    title, version, _ = recorder.calls[0]
    assert title == "DCMTKSCU"
    assert version is not None and version.startswith("OFFIS_DCMTK")


def test_dcmtk_echoscu_all_transfer_syntaxes_to_our_server(our_server, client):
    """echoscu proposes many transfer syntaxes (-pts 38) and contexts (-ppc 10); we pick ours."""
    server = our_server.start()
    port = server.server_address[1]

    result = client(["echoscu", "-d", "-pts", "38", "-ppc", "10", LOOPBACK, str(port)])

    assert result.returncode == 0, result.output
    assert DCMTK_SUCCESS in result.output
    assert "Little Endian" in result.output  # the accepted syntax is one we support


def test_four_dcmtk_echoscu_at_once_to_our_server(our_server):
    server = our_server.start()
    port = server.server_address[1]
    command = ["echoscu", "--repeat", "3", LOOPBACK, str(port)]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=peer_environment())
        for _ in range(4)
    ]
    try:
        outputs = [p.communicate(timeout=CLIENT_TIMEOUT)[0].decode(errors="replace") for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert [p.returncode for p in processes] == [0, 0, 0, 0], outputs


# ---- us -> DCMTK storescp ----------------------------------------------------------
def test_our_echoscu_app_to_dcmtk_storescp(peers, client):
    scp = dcmtk_storescp(peers)

    result = client(our_app("echoscu", LOOPBACK, str(scp.port), "-v", "-aec", "STORESCP", "--repeat", "3"))

    assert result.returncode == 0, result.output
    assert result.output.count("Received Echo Response (Status: 0x0000 - Success)") == 3, result.output
    assert scp.wait_for_output("Association Release"), scp.output()
    assert scp.output().count("Received Echo Request") == 3


def test_our_ae_to_dcmtk_storescp(peers):
    scp = dcmtk_storescp(peers)
    ae = verification_ae("OURSCU")

    assoc = ae.associate(LOOPBACK, scp.port, ae_title="STORESCP")
    try:
        assert assoc.is_established
        assert assoc.acceptor.implementation_version_name.startswith("OFFIS_DCMTK")
        assert assoc.acceptor.maximum_length == 16384
        statuses = [assoc.send_c_echo() for _ in range(3)]
    finally:
        assoc.release()

    assert [status.Status for status in statuses] == [SUCCESS] * 3
    assert assoc.is_released and not assoc.is_established and not assoc.is_aborted
    assert scp.wait_for_output("Association Release"), scp.output()
    assert ae.active_associations == []


def test_our_ae_max_pdu_is_announced_to_dcmtk(peers):
    """storescp -d prints the max PDU we announced; a send size of ours (4096) must show there."""
    scp = peers.start("storescp", lambda port: ["storescp", "-d", "-od", ".", str(port)])
    ae = verification_ae("OURSCU")

    assoc = ae.associate(LOOPBACK, scp.port, max_pdu=4096)
    try:
        assert assoc.is_established
        assert assoc.send_c_echo().Status == SUCCESS
    finally:
        assoc.release()

    assert scp.wait_for_output("Association Release"), scp.output()
    assert "Max Send PDV: 4084" in scp.output(), scp.output()  # 4096 - 12 bytes of PDU and PDV headers


def test_our_ae_calls_dcmtk_twice_on_separate_associations(peers):
    scp = dcmtk_storescp(peers)
    ae = AE("OURSCU")
    ae.add_requested_context("1.2.840.10008.1.1")
    ae.acse_timeout = ae.dimse_timeout = 10

    for _ in range(2):
        assoc = ae.associate(LOOPBACK, scp.port, ae_title="STORESCP")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == SUCCESS
        assoc.release()
        assert assoc.is_released

    assert scp.wait_for_output("Association Release"), scp.output()
    assert scp.output().count("Association Received") == 2
