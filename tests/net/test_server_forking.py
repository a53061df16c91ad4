"""A forking server (`start_server(forking=True)`): each association in a child process of its own,
children collected as they end, the association limit, shutdown and drain across processes."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from router.net import AE, evt
from router.net.child_processes import forking_supported
from router.net.status import SUCCESS
from tests.conftest import LOOPBACK, REPO_ROOT, verification_ae, wait_until

pytestmark = pytest.mark.skipif(not forking_supported(), reason="needs os.fork and os.pidfd_open (Linux)")

ENDS_WITHIN = 5.0


def pid_recorder(folder: Path):
    """An EVT_C_ECHO handler that leaves a file named by the pid of the process that ran it."""

    def handle_echo(event: evt.Event) -> int:
        (folder / str(os.getpid())).touch()
        return SUCCESS

    return handle_echo


def start(ae: AE, **kwargs):
    return ae.start_server((LOOPBACK, 0), block=False, forking=True, **kwargs)


def one_association() -> tuple[AE, object, object]:
    """A forking server and an established association to it."""
    ae = verification_ae()
    server = start(ae)
    assoc = ae.associate(LOOPBACK, server.server_address[1])
    assert assoc.is_established
    return ae, server, assoc


def is_collected(pid: int) -> bool:
    """True once `pid` is gone for good: exited and collected by its parent (no zombie left)."""
    return not Path(f"/proc/{pid}").exists()


def test_each_association_is_served_by_a_child_process_of_its_own(tmp_path):
    ae = verification_ae()
    server = start(ae, evt_handlers=[(evt.EVT_C_ECHO, pid_recorder(tmp_path))])
    try:
        first = ae.associate(LOOPBACK, server.server_address[1])
        second = ae.associate(LOOPBACK, server.server_address[1])
        assert first.is_established and second.is_established
        assert first.send_c_echo().Status == SUCCESS
        assert second.send_c_echo().Status == SUCCESS
        children = set(server.child_pids)
        served_by = {int(path.name) for path in tmp_path.iterdir()}

        assert len(children) == 2
        assert served_by == children
        assert os.getpid() not in served_by
        assert server.active_associations == []  # they live in the children
        first.release()
        second.release()
        assert wait_until(lambda: not server.child_pids, ENDS_WITHIN)
        assert all(is_collected(pid) for pid in children)
    finally:
        ae.shutdown()


def test_the_association_limit_counts_the_associations_of_the_other_children():
    ae = verification_ae()
    ae.maximum_associations = 1
    server = start(ae)
    port = server.server_address[1]
    try:
        holder = ae.associate(LOOPBACK, port)
        assert holder.is_established
        refused = ae.associate(LOOPBACK, port)
        assert refused.is_rejected
        holder.release()
        assert wait_until(lambda: not server.child_pids, ENDS_WITHIN)
        welcome = ae.associate(LOOPBACK, port)
        assert welcome.is_established
        welcome.release()
    finally:
        ae.shutdown()


def test_shutdown_aborts_the_association_of_every_child():
    ae, server, assoc = one_association()
    child = server.child_pids[0]
    server.shutdown()
    assoc.run_until(lambda: not assoc.is_established, ENDS_WITHIN)

    assert assoc.is_aborted
    assert server.child_pids == []
    assert is_collected(child)
    ae.shutdown()


def test_drain_waits_for_the_children_to_finish():
    ae, server, assoc = one_association()
    result = {}
    drainer = threading.Thread(target=lambda: result.update(finished=server.drain(10)))
    drainer.start()
    try:
        drainer.join(0.3)
        assert drainer.is_alive()  # the child's association is still open
        assert assoc.send_c_echo().Status == SUCCESS
        assoc.release()
        drainer.join(10)
        assert result == {"finished": True}
        assert server.child_pids == []
    finally:
        ae.shutdown()


def test_a_child_that_is_killed_is_collected_and_the_server_goes_on(caplog):
    ae, server, doomed = one_association()
    try:
        child = server.child_pids[0]
        reported = f"The association process {child} ended with status -{signal.SIGKILL}"
        with caplog.at_level(logging.WARNING, logger="router.net"):
            os.kill(child, signal.SIGKILL)
            doomed.run_until(lambda: not doomed.is_established, ENDS_WITHIN)
            assert wait_until(lambda: is_collected(child), ENDS_WITHIN)
            # The server's thread logs just after collecting the child: wait for it, not only for /proc.
            assert wait_until(lambda: reported in caplog.text, ENDS_WITHIN), caplog.text
        assert doomed.is_aborted
        assoc = ae.associate(LOOPBACK, server.server_address[1])
        assert assoc.send_c_echo().Status == SUCCESS
        assoc.release()
    finally:
        ae.shutdown()


def test_forking_where_it_is_not_supported_is_refused(monkeypatch):
    monkeypatch.delattr(os, "pidfd_open")
    ae = verification_ae()
    with pytest.raises(ValueError, match="process of its own"):
        start(ae)


BUFFERED_BEFORE_A_FORK = """
import sys
from router.net import AE
from router.net.presentation import VERIFICATION_SOP_CLASS
ae = AE("BUFFERED")
ae.add_supported_context(VERIFICATION_SOP_CLASS)
ae.add_requested_context(VERIFICATION_SOP_CLASS)
server = ae.start_server(("127.0.0.1", 0), block=False, forking=True)
sys.stdout.write("written once\\n")  # stdout is a pipe: this waits in the buffer while the child forks
assoc = ae.associate("127.0.0.1", server.server_address[1])
assoc.release()
ae.shutdown()
"""


def test_what_the_parent_buffered_before_a_fork_is_written_once():
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    completed = subprocess.run(
        [sys.executable, "-c", BUFFERED_BEFORE_A_FORK], capture_output=True, text=True, timeout=60,
        cwd=REPO_ROOT, env=environment,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "written once\n"


def socket_inode(sock) -> int:
    return os.fstat(sock.fileno()).st_ino


def open_socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets process `pid` holds open."""
    links = (os.readlink(entry.path) for entry in os.scandir(f"/proc/{pid}/fd"))
    return {int(link[len("socket:["):-1]) for link in links if link.startswith("socket:[")}


def test_a_child_does_not_hold_the_other_connections_of_its_ae():
    """Closed in the parent, a socket must close for good: the child keeps no copy of the AE's other
    servers' listening sockets nor of its requestor associations' connections."""
    ae = verification_ae()
    other_server = ae.start_server((LOOPBACK, 0), block=False)
    outgoing = ae.associate(LOOPBACK, other_server.server_address[1])
    assert outgoing.is_established
    try:
        forking_server = start(ae)
        served = ae.associate(LOOPBACK, forking_server.server_address[1])
        assert served.is_established
        held = open_socket_inodes(forking_server.child_pids[0])

        assert socket_inode(other_server.socket) not in held
        assert socket_inode(outgoing.link.sock) not in held
        assert socket_inode(forking_server.socket) not in held
        served.release()
        outgoing.release()
    finally:
        ae.shutdown()
