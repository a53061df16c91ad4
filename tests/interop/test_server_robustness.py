"""Our server against misbehaving clients on raw sockets, and our requestor against no server.

A silent connection is closed by ARTIM; a connection closed at once frees its
slot at once; garbage and over-long PDUs get an A-ABORT PDU back; after each
of them the server still serves the next association. A refused TCP connect
makes `associate()` return an unestablished association, never raise.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import time

import pytest

from router.net import AE
from router.net.status import SUCCESS
from tests.conftest import LOOPBACK, our_app, verification_ae, wait_until

ARTIM = 0.5  # seconds: the AE's acse_timeout in these tests
EOF_BOUND = 5.0  # a connection we expect the server to end must end within this
PDU_HEADER = struct.Struct(">BxL")  # type, reserved, length (PS3.8 9.3.1)
A_ABORT = 0x07
A_ABORT_LENGTH = 4
A_ASSOCIATE_RQ = 0x01
P_DATA_TF = 0x04
SLOTS_CHURNED = 20
# Sta2 + an invalid PDU is AA-1 (PS3.8 Table 9-10): an A-ABORT with source 0 (service-user) and
# reason 0, as PS3.8 9.2.3 words it (pynetdicom's AA-1 sends the same); (source, reason).
AA_1_ABORT = (0, 0)
# Sta6 + an invalid PDU is AA-8: source 2 (service-provider) with the reason.
PROVIDER_SOURCE = 2
UNRECOGNIZED_PDU = 1


def short_artim_ae() -> AE:
    ae = verification_ae()
    ae.acse_timeout = ARTIM
    ae.maximum_associations = 1
    return ae


@pytest.fixture
def server(our_server):
    """Our server: ARTIM 0.5 s, one association at a time (a leaked slot shows at once)."""
    return our_server.start(short_artim_ae())


def raw_connection(port: int) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=EOF_BOUND)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_eof(sock: socket.socket, bound: float = EOF_BOUND) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took; fails past `bound`."""
    start = time.monotonic()
    received = b""
    while True:
        sock.settimeout(max(0.001, start + bound - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            pytest.fail(f"the server kept the connection open longer than {bound} s (got {received.hex()})")
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received, time.monotonic() - start


def abort_pdu(data: bytes) -> tuple[int, int]:
    """(source, reason) of the A-ABORT PDU `data` must be, byte for byte."""
    assert len(data) == 10, f"expected one 10-byte A-ABORT PDU, got {data.hex()}"
    pdu_type, length = PDU_HEADER.unpack_from(data)
    assert (pdu_type, length) == (A_ABORT, A_ABORT_LENGTH), data.hex()
    assert data[:8] == bytes([0x07, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00])
    return data[8], data[9]


def assert_serves_an_echo(port: int, bound: float = 2.0) -> None:
    start = time.monotonic()
    assoc = verification_ae("NEXT").associate(LOOPBACK, port, ae_title="OURSCP")
    try:
        assert assoc.is_established, f"rejected={assoc.is_rejected} reason={assoc.reject_reason}"
        assert assoc.send_c_echo().Status == SUCCESS
    finally:
        assoc.release()
    assert time.monotonic() - start < bound


# ---- ARTIM ----------------------------------------------------------------------------
def test_silent_connection_is_closed_by_artim(server):
    port = server.server_address[1]
    with raw_connection(port) as sock:
        received, elapsed = read_until_eof(sock)

    assert received == b""  # Sta2 + ARTIM expiry: close the transport, send nothing (AA-2)
    assert ARTIM * 0.8 <= elapsed < ARTIM + 2.0, elapsed
    assert wait_until(lambda: not server.active_associations, 1.0)
    assert_serves_an_echo(port)


def test_partial_pdu_then_silence_is_closed_by_artim(server):
    port = server.server_address[1]
    with raw_connection(port) as sock:
        sock.sendall(PDU_HEADER.pack(A_ASSOCIATE_RQ, 200) + b"\x00\x01")  # 8 of the 206 bytes announced
        received, elapsed = read_until_eof(sock)

    assert received == b""
    assert elapsed < ARTIM + 2.0
    assert_serves_an_echo(port)


def test_artim_applies_to_each_connection_independently(our_server):
    ae = short_artim_ae()
    ae.maximum_associations = 5
    server = our_server.start(ae)
    port = server.server_address[1]
    sockets = [raw_connection(port) for _ in range(3)]
    try:
        assert_serves_an_echo(port)  # served while three silent connections wait for ARTIM
        elapsed = [read_until_eof(sock)[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    assert max(elapsed) < ARTIM + 2.0


# ---- slots ----------------------------------------------------------------------------------
def test_connections_closed_at_once_free_their_slot_at_once(server):
    port = server.server_address[1]
    for _ in range(SLOTS_CHURNED):
        socket.create_connection((LOOPBACK, port), timeout=EOF_BOUND).close()

    assert_serves_an_echo(port, bound=1.0)  # no sleep: with maximum_associations=1 a leak would refuse it
    assert wait_until(lambda: not server.active_associations, 1.0)


def test_connections_reset_at_once_free_their_slot_at_once(server):
    port = server.server_address[1]
    for _ in range(SLOTS_CHURNED):
        sock = socket.create_connection((LOOPBACK, port), timeout=EOF_BOUND)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
        sock.close()

    assert_serves_an_echo(port, bound=1.0)


def test_request_then_close_frees_the_slot(server):
    """A client that sends its A-ASSOCIATE-RQ and vanishes before reading the AC."""
    port = server.server_address[1]
    peer = verification_ae("VANISH").associate(LOOPBACK, port, ae_title="OURSCP")
    assert peer.is_established
    peer.link.close()  # no release, no abort: the TCP connection just ends

    assert wait_until(lambda: not server.active_associations, 2.0)
    assert_serves_an_echo(port)


# ---- garbage and over-long PDUs ----------------------------------------------------------
def test_garbage_gets_an_a_abort_and_the_server_goes_on(server):
    port = server.server_address[1]
    with raw_connection(port) as sock:
        sock.sendall(b"\x99" + os.urandom(64))
        received, _ = read_until_eof(sock)

    assert abort_pdu(received) == AA_1_ABORT
    assert_serves_an_echo(port)


@pytest.mark.parametrize(
    "header",
    [
        PDU_HEADER.pack(A_ASSOCIATE_RQ, 0xFFFFFFF0),  # above any cap for association PDUs
        PDU_HEADER.pack(P_DATA_TF, 0x7FFFFFFF),  # P-DATA before any association, and huge
    ],
    ids=["associate-rq-4GiB", "p-data-2GiB"],
)
def test_overlong_pdu_length_gets_an_a_abort(server, header):
    port = server.server_address[1]
    with raw_connection(port) as sock:
        sock.sendall(header)
        received, elapsed = read_until_eof(sock)

    assert abort_pdu(received) == AA_1_ABORT  # judged from the header: the body is never awaited
    assert elapsed < ARTIM + 2.0  # then Sta13 closes the connection when ARTIM expires
    assert_serves_an_echo(port)


def test_overlong_pdata_inside_an_association_gets_an_a_abort(server):
    """After a real negotiation, a P-DATA-TF longer than our max PDU (16382) is refused at its header."""
    port = server.server_address[1]
    assoc = verification_ae("BIGPDU").associate(LOOPBACK, port, ae_title="OURSCP")
    assert assoc.is_established
    sock = assoc.link.sock  # from here on the test speaks raw bytes on the negotiated connection
    try:
        sock.sendall(PDU_HEADER.pack(P_DATA_TF, 16382 + 1))
        received, _ = read_until_eof(sock)
    finally:
        assoc.link.close()

    source, reason = abort_pdu(received)
    assert source == PROVIDER_SOURCE  # AA-8: the Upper Layer refused the PDU
    assert_serves_an_echo(port)


def test_unknown_pdu_type_after_association_gets_an_a_abort(server):
    port = server.server_address[1]
    assoc = verification_ae("ODDPDU").associate(LOOPBACK, port, ae_title="OURSCP")
    assert assoc.is_established
    sock = assoc.link.sock
    try:
        sock.sendall(PDU_HEADER.pack(0x99, 4) + b"\x00\x00\x00\x00")
        received, _ = read_until_eof(sock)
    finally:
        assoc.link.close()

    assert abort_pdu(received) == (PROVIDER_SOURCE, UNRECOGNIZED_PDU)  # AA-8
    assert_serves_an_echo(port)


def test_a_abort_as_first_pdu_closes_quietly(server):
    port = server.server_address[1]
    with raw_connection(port) as sock:
        sock.sendall(PDU_HEADER.pack(A_ABORT, A_ABORT_LENGTH) + b"\x00\x00\x00\x00")
        received, elapsed = read_until_eof(sock)

    assert received == b""
    assert elapsed < 1.0
    assert_serves_an_echo(port)


# ---- our requestor against nothing -----------------------------------------------------------
def test_associate_to_a_closed_port_returns_unestablished(free_port, caplog):
    caplog.set_level(logging.INFO, logger="router.net")
    ae = verification_ae("NOBODY")

    start = time.monotonic()
    assoc = ae.associate(LOOPBACK, free_port)

    assert time.monotonic() - start < 2.0
    assert not assoc.is_established and not assoc.is_rejected
    assert not assoc.is_alive
    assert "TCP Initialisation Error: Connection refused" in caplog.text
    assert ae.active_associations == []
    with pytest.raises(RuntimeError):
        assoc.send_c_echo()


def test_our_echoscu_app_fails_cleanly_without_a_peer(client, free_port):
    result = client(our_app("echoscu", LOOPBACK, str(free_port)))

    assert result.returncode == 1
    assert "TCP Initialisation Error: Connection refused" in result.output
    assert "Traceback" not in result.output


def test_associate_to_a_silent_server_times_out_by_acse_timeout(caplog):
    """A listener that never answers: `associate` gives up after acse_timeout and aborts."""
    caplog.set_level(logging.INFO, logger="router.net")
    with socket.create_server((LOOPBACK, 0)) as listener:
        ae = verification_ae("WAITER")
        ae.acse_timeout = ARTIM
        start = time.monotonic()
        assoc = ae.associate(LOOPBACK, listener.getsockname()[1])
        elapsed = time.monotonic() - start
        peer, _ = listener.accept()
        with peer:
            received, _ = read_until_eof(peer)

    assert not assoc.is_established and not assoc.is_alive
    assert ARTIM * 0.8 <= elapsed < ARTIM + 2.0
    assert "ACSE timeout" in caplog.text
    assert received[0] == A_ASSOCIATE_RQ  # our request went out
    assert received.endswith(bytes([0x07, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00]))  # then our A-ABORT
