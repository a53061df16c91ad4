"""A draining server: it stops accepting at once, lets open associations finish, then stops; SO_REUSEPORT siblings."""

from __future__ import annotations

import socket
import threading

from router.net import AE

VERIFICATION = "1.2.840.10008.1.1"


def make_ae() -> AE:
    ae = AE("DRAIN")
    ae.add_supported_context(VERIFICATION)
    ae.add_requested_context(VERIFICATION)
    ae.acse_timeout = ae.dimse_timeout = 5
    return ae


def test_drain_lets_an_open_association_finish_and_refuses_new_ones():
    ae = make_ae()
    server = ae.start_server(("127.0.0.1", 0), block=False)
    port = server.server_address[1]
    assoc = ae.associate("127.0.0.1", port)
    assert assoc.is_established
    result = {}
    drainer = threading.Thread(target=lambda: result.update(finished=server.drain(10)))
    drainer.start()
    try:
        for _ in range(50):  # the listening socket closes at once
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            except OSError:
                break
            drainer.join(0.02)
        else:
            raise AssertionError("the draining server still accepts connections")
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        drainer.join(10)
        assert result == {"finished": True}
    finally:
        ae.shutdown()


def test_drain_aborts_what_outlives_the_timeout():
    ae = make_ae()
    server = ae.start_server(("127.0.0.1", 0), block=False)
    assoc = ae.associate("127.0.0.1", server.server_address[1])
    assert assoc.is_established
    try:
        assert server.drain(0.2) is False
        assoc.run_until(lambda: not assoc.is_established, 5)
        assert assoc.is_aborted
    finally:
        ae.shutdown()


def test_two_servers_share_a_port_with_reuse_port():
    first, second = make_ae(), make_ae()
    server = first.start_server(("127.0.0.1", 0), block=False, reuse_port=True)
    port = server.server_address[1]
    sibling = second.start_server(("127.0.0.1", port), block=False, reuse_port=True)
    try:
        server.drain(1)
        assoc = first.associate("127.0.0.1", port)  # the sibling answers
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        assert sibling.server_address[1] == port
    finally:
        first.shutdown()
        second.shutdown()
