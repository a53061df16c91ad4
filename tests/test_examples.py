"""The tutorial programs in examples/ run unchanged against real peers on 127.0.0.1:11112."""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from router.net import AE, evt
from router.net.sop_class import Verification

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PORT = 11112
RUN_TIMEOUT = 30


def run_example(name: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=cwd or EXAMPLES,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


@pytest.fixture
def established():
    """A list the fixture's server appends to on every EVT_ESTABLISHED."""
    return []


@pytest.fixture
def echo_scp(established):
    ae = AE("ECHOSCP")
    ae.add_supported_context(Verification)
    handlers = [(evt.EVT_ESTABLISHED, lambda event: established.append(event.assoc))]
    server = ae.start_server(("127.0.0.1", PORT), block=False, evt_handlers=handlers)
    yield server
    ae.shutdown()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    """Self-signed server and client certificates for 127.0.0.1, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the TLS examples' certificates")
    folder = tmp_path_factory.mktemp("certs")
    for name in ("server", "client"):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            cwd=folder, check=True, capture_output=True, timeout=RUN_TIMEOUT,
        )
    return folder


def test_first_scu(echo_scp, established):
    result = run_example("first_scu.py")
    assert result.returncode == 0, result.stderr
    assert "Association established with Echo SCP!" in result.stdout
    assert len(established) == 1


def test_first_scu_without_a_peer_fails_cleanly():
    result = run_example("first_scu.py")
    assert result.returncode == 0
    assert "Failed to associate" in result.stdout
    assert "Traceback" not in result.stderr


def test_echo_scu(echo_scp):
    result = run_example("echo_scu.py")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    for expected in (
        "I: Requesting Association",
        "D: Called Application Name: ANY-SCP",
        "D: Our Max PDU Receive Size: 16382",
        "I: Association Accepted",
        "I: Sending Echo Request: MsgID 1",
        "I: Received Echo Response (Status: 0x0000 - Success)",
        "I: Releasing Association",
    ):
        assert expected in lines, f"missing {expected!r} in:\n{result.stderr}"


def test_evt_handlers(echo_scp):
    result = run_example("evt_handlers.py")
    assert result.returncode == 0, result.stderr
    assert f"I: Connected with remote at ('127.0.0.1', {PORT})" in result.stderr
    assert "I: Extra args: 'optional' and 'parameters'" in result.stderr


def test_bind_unbind(echo_scp):
    result = run_example("bind_unbind.py")
    assert result.returncode == 0, result.stderr
    assert f"I: Connected with remote at ('127.0.0.1', {PORT})" in result.stderr
    assert f"I: Disconnected from remote at ('127.0.0.1', {PORT})" in result.stderr


def test_tls_scu(certificates, established):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(certfile=certificates / "server.crt", keyfile=certificates / "server.key")
    context.load_verify_locations(cafile=certificates / "client.crt")
    ae = AE("TLSSCP")
    ae.add_supported_context(Verification)
    handlers = [(evt.EVT_ESTABLISHED, lambda event: established.append(event.assoc))]
    ae.start_server(("127.0.0.1", PORT), block=False, ssl_context=context, evt_handlers=handlers)
    try:
        result = run_example("tls_scu.py", cwd=certificates)
    finally:
        ae.shutdown()
    assert result.returncode == 0, result.stderr
    assert len(established) == 1


def test_tls_scp(certificates):
    script = f"exec(open({str(EXAMPLES / 'tls_scp.py')!r}).read()); import time; time.sleep({RUN_TIMEOUT})"
    process = subprocess.Popen([sys.executable, "-c", script], cwd=certificates, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(PORT)
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=certificates / "server.crt")
        context.load_cert_chain(certfile=certificates / "client.crt", keyfile=certificates / "client.key")
        ae = AE()
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", PORT, tls_args=(context, "localhost"))
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assoc.release()
        assert assoc.is_released
    finally:
        process.kill()
        process.wait(RUN_TIMEOUT)


def test_storage_commitment_reports_on_the_same_and_on_a_new_association():
    result = run_example("storage_commitment.py")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines.count("N-ACTION status: 0x0000") == 2, result.stdout
    assert "Report on the same association: event type 1, 2 committed, 0 failed" in lines, result.stdout
    assert "Report on the new association: event type 2, 1 committed, 1 failed" in lines, result.stdout


def test_start_server_blocking_serves_until_interrupted():
    process = subprocess.Popen([sys.executable, str(EXAMPLES / "start_server.py")], stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(PORT)
        ae = AE()
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", PORT)
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assoc.release()
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
    finally:
        process.kill()
        process.wait(RUN_TIMEOUT)


@pytest.mark.timeout(90)
def test_start_server_nonblocking_rebinds_while_running():
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "start_server_nonblocking.py")], stderr=subprocess.PIPE, text=True
    )
    started = time.monotonic()
    try:
        wait_for_port(PORT)
        ae = AE()
        ae.add_requested_context(Verification)
        ae.associate("127.0.0.1", PORT).release()  # bound: EVT_CONN_OPEN
        time.sleep(max(0.0, 22 - (time.monotonic() - started)))  # the example rebinds after 20 s
        ae.associate("127.0.0.1", PORT).release()  # bound: EVT_CONN_CLOSE
        _, stderr = process.communicate(timeout=40)
    finally:
        process.kill()
        process.wait(RUN_TIMEOUT)
    assert process.returncode == 0, stderr
    lines = stderr.splitlines()
    bindings_changed = lines.index("I: Bindings changed")
    assert any(line.startswith("I: Connected with remote at") for line in lines[:bindings_changed])
    assert not any(line.startswith("I: Disconnected") for line in lines[:bindings_changed])
    assert any(line.startswith("I: Disconnected from remote at") for line in lines[bindings_changed:])
    assert not any(line.startswith("I: Connected") for line in lines[bindings_changed:])
