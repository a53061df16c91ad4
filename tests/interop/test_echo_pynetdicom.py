"""C-ECHO between our engine and pynetdicom 3.0.4, both directions.

pynetdicom is only ever a separate process here (`python -m pynetdicom APP`):
the engine must interoperate with it, never share code or state with it.
"""

from __future__ import annotations

import pytest

from router.net import evt
from router.net.status import SUCCESS
from tests.conftest import LOOPBACK, our_app, pynetdicom_app, verification_ae

pytestmark = pytest.mark.pynetdicom

PYNETDICOM_SUCCESS = "Received Echo Response (Status: 0x0000 - Success)"


def pynetdicom_echoscp(peers):
    return peers.start("pynetdicom-echoscp", lambda port: pynetdicom_app("echoscp", "-v", "-aet", "PYNSCP", "-ba", LOOPBACK, str(port)))


# ---- pynetdicom echoscu -> us ------------------------------------------------------
def test_pynetdicom_echoscu_to_our_echoscp_app(peers, client):
    ours = peers.start("our-echoscp", lambda port: our_app("echoscp", str(port), "-v", "-ba", LOOPBACK))

    result = client(pynetdicom_app("echoscu", "-v", LOOPBACK, str(ours.port)))

    assert result.returncode == 0, result.output
    assert PYNETDICOM_SUCCESS in result.output, result.output
    assert ours.wait_for_output("Association Released"), ours.output()
    assert "Received Echo Request (MsgID 1)" in ours.output()


def test_pynetdicom_echoscu_repeat_to_our_in_process_server(our_server, client):
    calls = []

    def on_echo(event: evt.Event) -> int:
        calls.append((event.assoc.requestor.ae_title, event.assoc.requestor.implementation_version_name))
        return SUCCESS

    server = our_server.start(evt_handlers=[(evt.EVT_C_ECHO, on_echo)])
    port = server.server_address[1]

    result = client(pynetdicom_app("echoscu", "-v", "--repeat", "3", "-aet", "PYNSCU", LOOPBACK, str(port)))

    assert result.returncode == 0, result.output
    assert result.output.count(PYNETDICOM_SUCCESS) == 3, result.output
    assert len(calls) == 3
    assert calls[0][0] == "PYNSCU"
    assert calls[0][1].startswith("PYNETDICOM")


def test_pynetdicom_echoscu_explicit_big_endian_only(our_server, client):
    """pynetdicom's echoscu proposes one transfer syntax (-xb); we must accept it."""
    server = our_server.start()
    port = server.server_address[1]

    result = client(pynetdicom_app("echoscu", "-d", "-xb", LOOPBACK, str(port)))

    assert result.returncode == 0, result.output
    assert "Accepted Transfer Syntax: =Explicit VR Big Endian" in result.output, result.output
    assert PYNETDICOM_SUCCESS in result.output


# ---- us -> pynetdicom echoscp -----------------------------------------------------
def test_our_echoscu_app_to_pynetdicom_echoscp(peers, client):
    scp = pynetdicom_echoscp(peers)

    result = client(our_app("echoscu", LOOPBACK, str(scp.port), "-v", "-aec", "PYNSCP", "--repeat", "2"))

    assert result.returncode == 0, result.output
    assert result.output.count("Received Echo Response (Status: 0x0000 - Success)") == 2, result.output
    assert scp.wait_for_output("Association Released"), scp.output()
    assert scp.output().count("Received Echo Request") == 2


def test_our_ae_to_pynetdicom_echoscp(peers):
    scp = pynetdicom_echoscp(peers)
    ae = verification_ae("OURSCU")

    assoc = ae.associate(LOOPBACK, scp.port, ae_title="PYNSCP")
    try:
        assert assoc.is_established
        assert assoc.acceptor.implementation_version_name.startswith("PYNETDICOM")
        status = assoc.send_c_echo()
        second = assoc.send_c_echo(msg_id=42)
    finally:
        assoc.release()

    assert status.Status == SUCCESS
    assert second.Status == SUCCESS
    assert assoc.is_released
    assert scp.wait_for_output("Association Released"), scp.output()
    assert "Received Echo Request (MsgID 42)" in scp.output()
