"""A-ABORT in both directions between our engine and real peers.

Our requestor's `abort()` must reach pynetdicom's echoscp and DCMTK's storescp
as an abort they log; a peer's abort (`echoscu --abort`) must be logged by our
server, free its slot at once, and leave the server serving.
"""

from __future__ import annotations

import logging

import pytest

from router.net import evt
from router.net.status import SUCCESS
from tests.conftest import LOOPBACK, our_app, pynetdicom_app, verification_ae, wait_until

SLOT_FREED_WITHIN = 2.0  # seconds; a peer's abort must free its slot "promptly"
PEER_ABORT_LOG = "Association Aborted (A-ABORT from the peer)"


# ---- we abort, the peer sees it -------------------------------------------------------
def abort_after_echo(port: int, called: str):
    ae = verification_ae("OURSCU")
    assoc = ae.associate(LOOPBACK, port, ae_title=called)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == SUCCESS
    assoc.abort()
    return ae, assoc


@pytest.mark.pynetdicom
def test_our_abort_seen_by_pynetdicom_echoscp(peers):
    scp = peers.start("pynetdicom-echoscp", lambda port: pynetdicom_app("echoscp", "-v", "-ba", LOOPBACK, str(port)))

    ae, assoc = abort_after_echo(scp.port, "ECHOSCP")

    assert assoc.is_aborted and not assoc.is_established and not assoc.is_released
    assert not assoc.is_alive
    assert ae.active_associations == []
    assert scp.wait_for_output("Association Aborted"), scp.output()
    assert "Association Released" not in scp.output()


@pytest.mark.dcmtk
def test_our_abort_seen_by_dcmtk_storescp(peers):
    scp = peers.start("storescp", lambda port: ["storescp", "-v", "-od", ".", str(port)])

    ae, assoc = abort_after_echo(scp.port, "STORESCP")

    assert assoc.is_aborted and not assoc.is_alive
    assert scp.wait_for_output("Association Aborted"), scp.output()
    assert "Association Release" not in scp.output()


@pytest.mark.dcmtk
def test_our_echoscu_app_abort_seen_by_dcmtk_storescp(peers, client):
    scp = peers.start("storescp", lambda port: ["storescp", "-v", "-od", ".", str(port)])

    result = client(our_app("echoscu", LOOPBACK, str(scp.port), "-v", "--abort"))

    assert result.returncode == 0, result.output
    assert "Aborting Association" in result.output
    assert scp.wait_for_output("Association Aborted"), scp.output()


def test_our_abort_seen_by_our_server(our_server):
    aborted = []
    server = our_server.start(evt_handlers=[(evt.EVT_ABORTED, lambda event: aborted.append(event.assoc))])

    abort_after_echo(server.server_address[1], "OURSCP")

    assert wait_until(lambda: len(aborted) == 1, SLOT_FREED_WITHIN)
    assert aborted[0].is_aborted and not aborted[0].is_released
    assert wait_until(lambda: not server.active_associations, SLOT_FREED_WITHIN)


# ---- the peer aborts, we log it, free the slot and stay up ----------------------------
def start_watched_server(our_server):
    """Our server with maximum_associations=1 (a leaked slot would refuse the next echo)."""
    ae = verification_ae()
    ae.maximum_associations = 1
    aborted = []
    server = our_server.start(ae, evt_handlers=[(evt.EVT_ABORTED, lambda event: aborted.append(event.assoc))])
    return ae, server, aborted


def assert_still_serving(port: int) -> None:
    assoc = verification_ae("AFTER").associate(LOOPBACK, port, ae_title="OURSCP")
    try:
        assert assoc.is_established
        assert assoc.send_c_echo().Status == SUCCESS
    finally:
        assoc.release()
    assert assoc.is_released


@pytest.mark.dcmtk
def test_dcmtk_abort_seen_by_our_server(our_server, client, caplog):
    caplog.set_level(logging.INFO, logger="router.net")
    ae, server, aborted = start_watched_server(our_server)
    port = server.server_address[1]

    result = client(["echoscu", "-v", "--abort", LOOPBACK, str(port)])

    assert result.returncode == 0, result.output
    assert "Aborting Association" in result.output
    assert wait_until(lambda: not server.active_associations, SLOT_FREED_WITHIN), server.active_associations
    assert len(aborted) == 1 and aborted[0].is_aborted
    assert PEER_ABORT_LOG in caplog.text
    assert_still_serving(port)
    dcmtk_again = client(["echoscu", LOOPBACK, str(port)])
    assert dcmtk_again.returncode == 0, dcmtk_again.output


@pytest.mark.pynetdicom
def test_pynetdicom_abort_seen_by_our_server(our_server, client, caplog):
    caplog.set_level(logging.INFO, logger="router.net")
    ae, server, aborted = start_watched_server(our_server)
    port = server.server_address[1]

    result = client(pynetdicom_app("echoscu", "-v", "--abort", LOOPBACK, str(port)))

    assert result.returncode == 0, result.output
    assert "Aborting Association" in result.output
    assert wait_until(lambda: not server.active_associations, SLOT_FREED_WITHIN), server.active_associations
    assert len(aborted) == 1
    assert PEER_ABORT_LOG in caplog.text
    assert_still_serving(port)


@pytest.mark.dcmtk
def test_dcmtk_abort_seen_by_our_echoscp_app(peers, client):
    ours = peers.start("our-echoscp", lambda port: our_app("echoscp", str(port), "-v", "-ba", LOOPBACK, "--max-associations", "1"))

    aborted = client(["echoscu", "--abort", LOOPBACK, str(ours.port)])
    assert ours.wait_for_output(PEER_ABORT_LOG), ours.output()
    again = client(["echoscu", "-v", LOOPBACK, str(ours.port)])

    assert aborted.returncode == 0, aborted.output
    assert again.returncode == 0, again.output
    assert ours.is_running()


@pytest.mark.dcmtk
def test_repeated_peer_aborts_never_leak_a_slot(our_server, client):
    """Five DCMTK aborts in a row against maximum_associations=1: each next one is accepted."""
    ae, server, aborted = start_watched_server(our_server)
    port = server.server_address[1]

    for attempt in range(5):
        result = client(["echoscu", "--abort", LOOPBACK, str(port)])
        assert result.returncode == 0, f"attempt {attempt}: {result.output}"
        assert wait_until(lambda: not server.active_associations, SLOT_FREED_WITHIN)

    assert len(aborted) == 5


def test_our_requestor_sees_server_shutdown_as_abort(our_server):
    """Shutting our server down aborts its associations: the requestor learns it at once."""
    server = our_server.start()
    ae = verification_ae("OURSCU")
    assoc = ae.associate(LOOPBACK, server.server_address[1], ae_title="OURSCP")
    assert assoc.is_established

    server.shutdown()  # returns once the association's thread has sent its A-ABORT and ended
    status = assoc.send_c_echo()

    assert "Status" not in status  # no response: the abort arrived instead
    assert assoc.is_aborted and not assoc.is_established
    assert not assoc.is_alive
