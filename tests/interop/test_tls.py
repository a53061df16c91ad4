"""DICOM over TLS: our server and requestor with DCMTK's TLS tools and with each other.

The test makes its own CA, server and client certificates (the `openssl`
command if present, else the `cryptography` package if installed; nothing is
installed for it). The server asks for client certificates (mutual TLS, as the
DICOM TLS profiles do). A plain client against the TLS server, or a client
with the wrong trust, must fail cleanly while the server keeps serving.
"""

from __future__ import annotations

import datetime
import logging
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from router.net import evt
from router.net.status import SUCCESS
from tests.conftest import LOOPBACK, in_ci, verification_ae, wait_until

OPENSSL_TIMEOUT = 30.0
HANDSHAKE_BOUND = 5.0  # seconds within which a failed handshake must be over


@dataclass(frozen=True)
class Pki:
    """PEM files: a CA, a server certificate for localhost/127.0.0.1, two client certificates."""

    ca_cert: Path
    server_key: Path
    server_cert: Path
    client_key: Path
    client_cert: Path
    rogue_key: Path  # self-signed, not trusted by anyone
    rogue_cert: Path


# ---- certificates ---------------------------------------------------------------------
def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=OPENSSL_TIMEOUT)


def _make_pki_with_openssl(folder: Path) -> Pki:
    key = ("-newkey", "rsa:2048", "-nodes")
    _openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=Router Test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    leaves = {
        "server": ("/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
        "client": ("/CN=router-test-client", "extendedKeyUsage=clientAuth\n"),
    }
    for serial, (name, (subject, extensions)) in enumerate(leaves.items(), start=2):
        (folder / f"{name}.ext").write_text("basicConstraints=CA:FALSE\n" + extensions)
        _openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=folder)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", str(serial),
                 "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=folder)
    _openssl("req", "-x509", *key, "-keyout", "rogue.key", "-out", "rogue.crt", "-days", "2", "-subj", "/CN=rogue", cwd=folder)
    return _pki(folder)


def _make_pki_with_cryptography(folder: Path) -> Pki:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def write(name: str, key, cert) -> None:
        (folder / f"{name}.key").write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
        )
        (folder / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def issue(subject: str, issuer_name, signing_key, key, serial: int, extensions) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signing_key, hashes.SHA256())

    def new_key():
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    ca_key = new_key()
    ca_cert = issue("Router Test CA", None, ca_key, ca_key, 1, [(x509.BasicConstraints(ca=True, path_length=None), True)])
    write("ca", ca_key, ca_cert)
    server_key = new_key()
    server_names = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))])
    server_extensions = [
        (x509.BasicConstraints(ca=False, path_length=None), False),
        (server_names, False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
    ]
    write("server", server_key, issue("localhost", ca_cert.subject, ca_key, server_key, 2, server_extensions))
    client_key = new_key()
    client_extensions = [
        (x509.BasicConstraints(ca=False, path_length=None), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
    ]
    write("client", client_key, issue("router-test-client", ca_cert.subject, ca_key, client_key, 3, client_extensions))
    rogue_key = new_key()
    write("rogue", rogue_key, issue("rogue", None, rogue_key, rogue_key, 4, []))
    return _pki(folder)


def _pki(folder: Path) -> Pki:
    return Pki(*(folder / name for name in ("ca.crt", "server.key", "server.crt", "client.key", "client.crt", "rogue.key", "rogue.crt")))


def _cryptography_installed() -> bool:
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    if shutil.which("openssl"):
        return _make_pki_with_openssl(folder)
    if _cryptography_installed():
        return _make_pki_with_cryptography(folder)
    message = "neither the openssl command nor the cryptography package is available to make certificates"
    if in_ci():
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def server_context(pki: Pki) -> ssl.SSLContext:
    """Our server's TLS: its certificate, and client certificates required, signed by the test CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(pki.ca_cert)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(pki: Pki, trust_ca: bool = True) -> ssl.SSLContext:
    """Our requestor's TLS: verifies the server (hostname included) and presents the client certificate."""
    context = ssl.create_default_context(cafile=str(pki.ca_cert) if trust_ca else None)
    context.load_cert_chain(pki.client_cert, pki.client_key)
    return context


class PeerCertificates:
    """An EVT_C_ECHO handler that records the TLS peer's certificate subject and protocol."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, event: evt.Event) -> int:
        sock = event.assoc.link.sock
        subject = dict(pair[0] for pair in sock.getpeercert()["subject"])
        self.seen.append((subject["commonName"], sock.version()))
        return SUCCESS


def start_tls_server(our_server, pki: Pki):
    recorder = PeerCertificates()
    server = our_server.start(ssl_context=server_context(pki), evt_handlers=[(evt.EVT_C_ECHO, recorder)])
    return server, server.server_address[1], recorder


def tls_echo(port: int, pki: Pki, hostname: str = "localhost"):
    """One TLS association of ours: (established, status or None, TLS version)."""
    assoc = verification_ae("TLSSCU").associate(LOOPBACK, port, ae_title="OURSCP", tls_args=(client_context(pki), hostname))
    if not assoc.is_established:
        return assoc, None, None
    try:
        version = assoc.link.sock.version()
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    return assoc, status, version


def dcmtk_tls_echoscu(pki: Pki, port: int, key: Path | None = None, cert: Path | None = None) -> list[str]:
    return [
        "echoscu", "-v", "+tls", str(key or pki.client_key), str(cert or pki.client_cert), "+cf", str(pki.ca_cert),
        "-ta", "5", "-to", "5", LOOPBACK, str(port),
    ]


# ---- DCMTK -> our TLS server -----------------------------------------------------------
@pytest.mark.dcmtk
def test_dcmtk_tls_echoscu_to_our_tls_server(our_server, client, pki):
    server, port, recorder = start_tls_server(our_server, pki)

    result = client(dcmtk_tls_echoscu(pki, port) + ["--repeat", "2"])

    assert result.returncode == 0, result.output
    assert result.output.count("Received Echo Response (Success)") == 2, result.output
    assert len(recorder.seen) == 2
    common_name, version = recorder.seen[0]
    assert common_name == "router-test-client"  # DCMTK presented its certificate: mutual TLS
    assert version in ("TLSv1.2", "TLSv1.3")


@pytest.mark.dcmtk
def test_dcmtk_with_untrusted_certificate_is_refused_and_server_stays_up(our_server, client, pki, caplog):
    caplog.set_level(logging.INFO, logger="router.net")
    server, port, recorder = start_tls_server(our_server, pki)

    result = client(dcmtk_tls_echoscu(pki, port, pki.rogue_key, pki.rogue_cert))

    assert result.returncode != 0, result.output
    assert recorder.seen == []
    assert wait_until(lambda: "TLS handshake" in caplog.text, HANDSHAKE_BOUND)
    assert wait_until(lambda: not server.active_associations, HANDSHAKE_BOUND)
    assert tls_echo(port, pki)[1].Status == SUCCESS


@pytest.mark.dcmtk
def test_plain_dcmtk_echoscu_against_our_tls_server_fails_cleanly(our_server, client, pki):
    server, port, recorder = start_tls_server(our_server, pki)

    result = client(["echoscu", "-v", "-ta", "5", LOOPBACK, str(port)])

    assert result.returncode != 0, result.output
    assert result.elapsed < HANDSHAKE_BOUND + 5
    assert recorder.seen == []
    assert tls_echo(port, pki)[1].Status == SUCCESS


# ---- our requestor over TLS ----------------------------------------------------------
def test_our_tls_requestor_to_our_tls_server(our_server, pki):
    server, port, recorder = start_tls_server(our_server, pki)

    assoc, status, version = tls_echo(port, pki)

    assert assoc.is_released
    assert status.Status == SUCCESS
    assert version in ("TLSv1.2", "TLSv1.3")
    assert recorder.seen == [("router-test-client", version)]


def test_our_tls_requestor_to_our_forking_tls_server(our_server, pki):
    """With `forking`, the TLS handshake happens in the child that serves the association."""
    server = our_server.start(ssl_context=server_context(pki), forking=True)

    assoc, status, version = tls_echo(server.server_address[1], pki)

    assert assoc.is_released
    assert status.Status == SUCCESS
    assert version in ("TLSv1.2", "TLSv1.3")
    assert wait_until(lambda: not server.child_pids, HANDSHAKE_BOUND)


@pytest.mark.dcmtk
def test_our_tls_requestor_to_dcmtk_tls_storescp(peers, pki):
    scp = peers.start(
        "storescp-tls",
        lambda port: ["storescp", "-v", "+tls", str(pki.server_key), str(pki.server_cert), "+cf", str(pki.ca_cert), "-od", ".", str(port)],
    )

    assoc = verification_ae("TLSSCU").associate(LOOPBACK, scp.port, tls_args=(client_context(pki), "localhost"))
    try:
        assert assoc.is_established
        assert isinstance(assoc.link.sock, ssl.SSLSocket)
        status = assoc.send_c_echo()
    finally:
        assoc.release()

    assert status.Status == SUCCESS
    assert scp.wait_for_output("Association Release"), scp.output()


def test_plain_requestor_against_tls_server_fails_cleanly(our_server, pki, caplog):
    caplog.set_level(logging.INFO, logger="router.net")
    server, port, recorder = start_tls_server(our_server, pki)

    start = time.monotonic()
    assoc = verification_ae("PLAIN").associate(LOOPBACK, port, ae_title="OURSCP")

    assert time.monotonic() - start < HANDSHAKE_BOUND
    assert not assoc.is_established and not assoc.is_rejected
    assert not assoc.is_alive
    assert "TLS handshake" in caplog.text
    assert wait_until(lambda: not server.active_associations, HANDSHAKE_BOUND)
    assert tls_echo(port, pki)[1].Status == SUCCESS  # the server is still up


@pytest.mark.parametrize("case", ["untrusted-ca", "wrong-hostname"])
def test_tls_requestor_refuses_an_unverified_server(our_server, pki, caplog, case):
    caplog.set_level(logging.INFO, logger="router.net")
    server, port, recorder = start_tls_server(our_server, pki)
    context = client_context(pki, trust_ca=case != "untrusted-ca")
    hostname = "not-this-host" if case == "wrong-hostname" else "localhost"

    assoc = verification_ae("TLSSCU").associate(LOOPBACK, port, tls_args=(context, hostname))

    assert not assoc.is_established and not assoc.is_alive
    assert "TCP Initialisation Error" in caplog.text
    assert "certificate verify failed" in caplog.text
    assert recorder.seen == []
    assert tls_echo(port, pki)[1].Status == SUCCESS


def test_idle_connection_does_not_stall_tls_handshakes(our_server, pki):
    """A client that connects and never starts its handshake must not hold up other clients."""
    server, port, recorder = start_tls_server(our_server, pki)
    idle = socket.create_connection((LOOPBACK, port))
    try:
        start = time.monotonic()
        assoc, status, _ = tls_echo(port, pki)
        elapsed = time.monotonic() - start
    finally:
        idle.close()

    assert status is not None and status.Status == SUCCESS
    assert elapsed < 2.0, f"a TLS association took {elapsed:.1f} s behind an idle connection"
    assert recorder.seen[0][0] == "router-test-client"


def test_shutdown_ends_a_pending_tls_handshake_at_once(our_server, pki):
    server, port, recorder = start_tls_server(our_server, pki)
    idle = socket.create_connection((LOOPBACK, port))
    try:
        assert wait_until(lambda: bool(server._handshaking), HANDSHAKE_BOUND)
        start = time.monotonic()
        server.shutdown()
        elapsed = time.monotonic() - start
        idle.settimeout(HANDSHAKE_BOUND)
        assert idle.recv(1) == b""  # the server closed our half-open connection
    finally:
        idle.close()

    assert elapsed < 1.0, f"shutdown waited {elapsed:.1f} s for a handshake that never came"
