"""Maximum PDU length at its edges, both directions: a peer announcing 0 (no limit) or its smallest.

PS3.8 D.1: each side announces the largest PDU-length of the P-DATA-TF PDUs it
will receive; 0 means no limit, and the standard sets no other bound. The
smallest length that can carry anything is 8 (a 6-byte PDV item header and a
2-byte fragment: `router.net.dimse.MIN_PDU_LENGTH`); DCMTK's tools only take
4096..131072, pynetdicom and our AE take 0 and any size. When the peer
announces 0 our engine sends PDUs of at most `DEFAULT_PDU_LENGTH` (1 MiB).

Every byte our side sends (and receives) is watched through EVT_DATA_SENT
(EVT_DATA_RECV) and cut into PDUs by their 6-byte headers, independently of
the engine's encoder: each P-DATA-TF we send must fit what the peer announced.
(EVT_PDU_SENT would not do: it does not fire for a C-STORE's data-set PDUs,
which the engine encodes as bytes while it streams them.)
The data set of several MB must arrive as sent: bit for bit where the receiver
keeps the bytes (DCMTK's `storescp +B`, our SCP), element for element where it
decodes and writes anew (pynetdicom).

Peers that abort mid-transfer: DCMTK's storescp `--abort-during` aborts while
our SCU streams a data set, `--abort-after` once it has it all but before
answering. (An SCU that aborts mid data set is only ours: DCMTK's and
pynetdicom's tools cannot; tests/net/test_storage.py covers our SCP there.)
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from unittest.mock import patch

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from router.net import AE, build_context, evt
from router.net.acse import Implementation, build_request
from router.net.ae import DEFAULT_MAX_PDU, IMPLEMENTATION_CLASS_UID
from router.net.codes import PduType
from router.net.contexts import accept_all_storage
from router.net.dimse import DEFAULT_PDU_LENGTH, MIN_PDU_LENGTH
from router.net.pdu import encode
from router.net.sop_class import StudyRootQueryRetrieveInformationModelFind
from router.net.status import PENDING, SUCCESS
from tests.conftest import LOOPBACK, pynetdicom_app, verification_ae
from tests.interop import store_data
from tests.interop.store_data import Instance
from tests.interop.test_store_dcmtk import SavingHandler, exact_contexts_config
from tests.interop.test_store_pynetdicom import assert_same_instance, stored_file

UNLIMITED = 0
DCMTK_MINIMUM = 4096  # the smallest -pdu DCMTK's tools take
SEVERAL_MB = 6 << 20  # pixel data of the large instance
PAST_SOCKET_BUFFERS = 32 << 20  # more than loopback socket buffers hold (a few MB): an abort lands mid data set
PDU_HEADER = struct.Struct(">BxI")  # PDU-type, reserved, PDU-length (PS3.8 9.3.1)
P_DATA_TF = 0x04
SCP_TITLE = "STORESCP"
TRANSFER_TIMEOUT = 30.0  # one client run: a few MB, under a second here
SETTLE = 5.0  # a peer's log line or our server's end of association, once the client is done
PEER_ABORT_LOG = "Association Aborted (A-ABORT from the peer)"
DCMTK_ABORTS = "ABORT initiated (due to command line options)"
COMMENT_LENGTH = 10_000  # a C-FIND match's Patient Comments (LT): a response over two DCMTK-minimum PDUs


# ---- watching the PDUs on the wire ----------------------------------------------------------
@dataclass
class PduWatcher:
    """An EVT_DATA_SENT/RECV handler: the (PDU-type, PDU-length) of each PDU in the byte stream.

    The bytes come in pieces of any size; only the 6-byte headers are kept.
    """

    pdus: list[tuple[int, int]] = field(default_factory=list)
    _header: bytearray = field(default_factory=bytearray)
    _body_left: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: evt.Event) -> None:
        with self._lock:
            self.feed(memoryview(event.data))

    def feed(self, data: memoryview) -> None:
        position = 0
        while position < len(data):
            if self._body_left:
                step = min(self._body_left, len(data) - position)
                self._body_left -= step
                position += step
                continue
            piece = data[position : position + PDU_HEADER.size - len(self._header)]
            self._header += piece
            position += len(piece)
            if len(self._header) == PDU_HEADER.size:
                pdu_type, length = PDU_HEADER.unpack(self._header)
                self.pdus.append((pdu_type, length))
                self._header.clear()
                self._body_left = length

    @property
    def pdata_lengths(self) -> list[int]:
        with self._lock:
            return [length for pdu_type, length in self.pdus if pdu_type == P_DATA_TF]

    def assert_within(self, limit: int) -> None:
        """Some P-DATA-TF went by and none exceeded `limit`; the stream ended on a PDU boundary."""
        lengths = self.pdata_lengths
        assert lengths, "no P-DATA-TF went by"
        assert max(lengths) <= limit, f"a P-DATA-TF of {max(lengths)} bytes exceeds the {limit} announced"
        assert not self._header and not self._body_left, "the stream ended inside a PDU"


def peer_limit(announced: int) -> int:
    """The largest P-DATA-TF we may send to a peer that announced `announced`."""
    return announced or DEFAULT_PDU_LENGTH


# ---- data --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def large(tmp_path_factory) -> Instance:
    """A multi-frame instance of several MB, Explicit VR Little Endian."""
    folder = tmp_path_factory.mktemp("pdu-limits")
    return store_data.write_streamed_instance(folder / "several-mb.dcm", SEVERAL_MB).instance


@pytest.fixture(scope="module")
def larger(tmp_path_factory) -> Instance:
    """A multi-frame instance that a peer's abort interrupts however fast the kernel takes it."""
    folder = tmp_path_factory.mktemp("pdu-limits-abort")
    return store_data.write_streamed_instance(folder / "past-socket-buffers.dcm", PAST_SOCKET_BUFFERS).instance


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Instance:
    """A CT of about 10 KB: in 8-byte PDUs (2 bytes of data each), that is already some 4500 of them."""
    return store_data.library(tmp_path_factory).get("explicit", (store_data.SMALL,))[0]


def assert_same_data_set(sent: Instance, stored: Path) -> None:
    assert store_data.data_digest(stored) == store_data.data_digest(sent.path), f"{stored.name} differs from {sent.path.name}"


# ---- our SCU, our SCP ---------------------------------------------------------------------------
def store_ae(title: str = "OURSCU") -> AE:
    ae = AE(title)
    ae.acse_timeout = ae.dimse_timeout = 30
    ae.connection_timeout = 5
    return ae


def our_store(port: int, instance: Instance, watcher: PduWatcher, max_pdu: int = DEFAULT_MAX_PDU):
    """Our SCU, announcing `max_pdu`, sends `instance` (streamed from its file); returns (association, status)."""
    ae = store_ae()
    ae.add_requested_context(instance.sop_class_uid, [instance.transfer_syntax])
    assoc = ae.associate(
        LOOPBACK, port, ae_title=SCP_TITLE, max_pdu=max_pdu, evt_handlers=[(evt.EVT_DATA_SENT, watcher)]
    )
    assert assoc.is_established
    try:
        status = assoc.send_c_store(instance.path)
    finally:
        assoc.release()
    return assoc, status


@dataclass
class WatchedScp:
    """Our storage SCP (in process), saving what it receives and watching its own PDUs."""

    port: int
    directory: Path
    handler: SavingHandler
    sent: PduWatcher
    received: PduWatcher
    ended: threading.Event

    def stored(self, instance: Instance) -> Path:
        return self.directory / f"{instance.sop_instance_uid}.dcm"


def start_watched_scp(our_server, tmp_path: Path, maximum_pdu_size: int) -> WatchedScp:
    out = tmp_path / "received"
    out.mkdir()
    ae = store_ae(SCP_TITLE)
    accept_all_storage(ae)
    ae.maximum_pdu_size = maximum_pdu_size
    ae.spool_directory = str(out)
    handler, sent, received, ended = SavingHandler(out), PduWatcher(), PduWatcher(), threading.Event()
    handlers = [
        (evt.EVT_C_STORE, handler),
        (evt.EVT_DATA_SENT, sent),
        (evt.EVT_DATA_RECV, received),
        (evt.EVT_CONN_CLOSE, lambda event: ended.set()),
    ]
    server = our_server.start(ae, evt_handlers=handlers)
    return WatchedScp(server.server_address[1], out, handler, sent, received, ended)


# ---- our SCU -> a peer that announced 0 or its smallest ---------------------------------------
@pytest.mark.dcmtk
def test_our_scu_keeps_to_dcmtk_storescp_at_its_minimum(peers, large, tmp_path):
    out = tmp_path / "received"
    out.mkdir()
    scp = peers.start(
        "dcmtk-storescp",
        lambda port: ["storescp", "-v", "+B", "+xa", "-pdu", str(DCMTK_MINIMUM), "-aet", SCP_TITLE,
                      "-od", str(out), "-uf", "-fe", ".dcm", str(port)],
    )
    watcher = PduWatcher()

    assoc, status = our_store(scp.port, large, watcher)

    assert assoc.acceptor.maximum_length == DCMTK_MINIMUM
    assert status.Status == SUCCESS
    watcher.assert_within(DCMTK_MINIMUM)
    assert len(watcher.pdata_lengths) > large.size // DCMTK_MINIMUM
    (stored,) = out.glob(f"*.{large.sop_instance_uid}.dcm")
    assert_same_data_set(large, stored)


@pytest.mark.pynetdicom
@pytest.mark.parametrize(("announced", "kind"), [(UNLIMITED, "large"), (MIN_PDU_LENGTH, "small")])
def test_our_scu_to_pynetdicom_storescp(peers, request, tmp_path, announced, kind):
    instance = request.getfixturevalue(kind)
    out = tmp_path / "received"
    out.mkdir()
    scp = peers.start(
        "pynetdicom-storescp",
        lambda port: pynetdicom_app("storescp", "-v", "-pdu", str(announced), "-aet", SCP_TITLE, "-od", str(out),
                                    "-ba", LOOPBACK, str(port)),
    )
    watcher = PduWatcher()

    assoc, status = our_store(scp.port, instance, watcher)

    assert assoc.acceptor.maximum_length == announced
    assert status.Status == SUCCESS
    watcher.assert_within(peer_limit(announced))
    if announced == UNLIMITED:
        assert max(watcher.pdata_lengths) == DEFAULT_PDU_LENGTH  # no limit: our largest PDUs
    assert scp.wait_for_output("Association Released", SETTLE), scp.output()
    assert_same_instance(instance, stored_file(out, instance))


@pytest.mark.parametrize(("announced", "kind"), [(UNLIMITED, "large"), (MIN_PDU_LENGTH, "small")])
def test_our_scu_to_our_scp(our_server, request, tmp_path, announced, kind):
    instance = request.getfixturevalue(kind)
    scp = start_watched_scp(our_server, tmp_path, announced)
    watcher = PduWatcher()

    assoc, status = our_store(scp.port, instance, watcher, max_pdu=announced)

    assert assoc.acceptor.maximum_length == announced
    assert status.Status == SUCCESS
    watcher.assert_within(peer_limit(announced))
    assert scp.ended.wait(SETTLE)
    scp.sent.assert_within(peer_limit(announced))  # our SCP's responses, to our SCU's limit
    assert scp.received.pdata_lengths == watcher.pdata_lengths
    assert_same_data_set(instance, scp.stored(instance))


def test_a_limit_too_small_for_any_fragment_is_refused(our_server):
    """Below 8 bytes no PDV fits: our AE refuses such a setting, and a peer announcing one gets no association."""
    too_small = MIN_PDU_LENGTH - 2
    with pytest.raises(ValueError, match=f"maximum_pdu_size must be 0 \\(no limit\\) or an int >= {MIN_PDU_LENGTH}"):
        verification_ae().maximum_pdu_size = too_small
    with pytest.raises(ValueError, match="max_pdu must be 0"):
        verification_ae().associate(LOOPBACK, 1, max_pdu=too_small)

    server = our_server.start(verification_ae())
    with socket.create_connection((LOOPBACK, server.server_address[1]), timeout=5) as raw:
        raw.sendall(announcing(too_small))  # a peer whose A-ASSOCIATE-RQ says 6
        reply = raw.recv(1)
    assert reply == bytes([PduType.ASSOCIATE_RJ])

    peer = our_server.start(verification_ae("PEERSCP"))
    with patch.object(peer.ae, "implementation", lambda max_pdu: Implementation(IMPLEMENTATION_CLASS_UID, None, too_small)):
        ours = verification_ae("OURSCU").associate(LOOPBACK, peer.server_address[1], ae_title="PEERSCP")
    assert not ours.is_established and ours.is_aborted


def announcing(max_pdu: int) -> bytes:
    """An A-ASSOCIATE-RQ for Verification whose Maximum Length item says `max_pdu`."""
    request, _ = build_request(
        "OURSCP", "TINYPDU", [build_context("1.2.840.10008.1.1")], Implementation(IMPLEMENTATION_CLASS_UID, None, max_pdu)
    )
    return encode(request)


# ---- a peer SCU that announced 0 or its smallest -> our SCP -------------------------------------
def dcmtk_storescu(tmp_path: Path, port: int, instance: Instance, *options: str) -> list[str]:
    """DCMTK's storescu sending `instance` in exactly its own transfer syntax (no conversion)."""
    config, profile = exact_contexts_config(tmp_path / "storescu.cfg", [instance])
    return ["storescu", "-v", "-aet", "DCMTKSCU", "-aec", SCP_TITLE, "-xf", config, profile, *options,
            LOOPBACK, str(port), str(instance.path)]


@pytest.mark.dcmtk
@pytest.mark.parametrize("ours", [DCMTK_MINIMUM, UNLIMITED])
def test_dcmtk_storescu_at_its_minimum_to_our_scp(our_server, client, large, tmp_path, ours):
    scp = start_watched_scp(our_server, tmp_path, ours)

    result = client(dcmtk_storescu(tmp_path, scp.port, large, "-pdu", str(DCMTK_MINIMUM)), timeout=TRANSFER_TIMEOUT)

    assert result.returncode == 0, result.output
    assert "Received Store Response (Success)" in result.output
    assert scp.ended.wait(SETTLE)
    scp.sent.assert_within(DCMTK_MINIMUM)
    if ours:
        scp.received.assert_within(ours)  # and our decoder would have aborted on a longer one
    assert scp.handler.calling_titles == ["DCMTKSCU"]
    assert_same_data_set(large, scp.stored(large))


@pytest.mark.pynetdicom
@pytest.mark.parametrize(("announced", "kind"), [(UNLIMITED, "large"), (MIN_PDU_LENGTH, "small")])
def test_pynetdicom_storescu_to_our_scp_announcing_no_limit(our_server, client, request, tmp_path, announced, kind):
    """pynetdicom, told no limit, sends the whole data set in one P-DATA-TF; our answers keep to its limit."""
    instance = request.getfixturevalue(kind)
    scp = start_watched_scp(our_server, tmp_path, UNLIMITED)

    result = client(
        pynetdicom_app("storescu", "-v", "-cx", "-pdu", str(announced), "-aec", SCP_TITLE, LOOPBACK, str(scp.port),
                       str(instance.path)),
        timeout=TRANSFER_TIMEOUT,
    )

    assert result.returncode == 0, result.output
    assert "Received Store Response (Status: 0x0000 - Success)" in result.output
    assert scp.ended.wait(SETTLE)
    scp.sent.assert_within(peer_limit(announced))
    data_length, _ = store_data.data_digest(instance.path)
    assert max(scp.received.pdata_lengths) > data_length  # one PDU held the whole data set
    assert_same_instance(instance, scp.stored(instance))


@pytest.mark.dcmtk
def test_dcmtk_findscu_at_its_minimum_gets_a_large_match_in_pieces(our_server, client, tmp_path):
    comment = "".join(chr(ord("A") + index % 26) for index in range(COMMENT_LENGTH))

    def on_find(event):
        match = Dataset()
        match.QueryRetrieveLevel = "STUDY"
        match.StudyInstanceUID = "1.2.826.0.1.3680043.2.1"
        match.PatientComments = comment
        yield PENDING, match

    ae = store_ae("FINDSCP")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    sent, ended = PduWatcher(), threading.Event()
    handlers = [(evt.EVT_C_FIND, on_find), (evt.EVT_DATA_SENT, sent), (evt.EVT_CONN_CLOSE, lambda event: ended.set())]
    server = our_server.start(ae, evt_handlers=handlers)

    result = client(
        ["findscu", "-v", "-S", "-pdu", str(DCMTK_MINIMUM), "-aec", "FINDSCP", "-X", "-od", str(tmp_path),
         "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", "-k", "PatientComments",
         LOOPBACK, str(server.server_address[1])],
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.output
    assert ended.wait(SETTLE)
    sent.assert_within(DCMTK_MINIMUM)
    assert len(sent.pdata_lengths) > COMMENT_LENGTH // DCMTK_MINIMUM + 1  # the match's 3 or more, the final response
    (extracted,) = tmp_path.glob("rsp*.dcm")
    assert dcmread(extracted).PatientComments == comment


# ---- a peer that aborts mid-transfer -------------------------------------------------------------
@pytest.mark.dcmtk
@pytest.mark.parametrize("when", ["--abort-during", "--abort-after"])
def test_dcmtk_storescp_aborting_ends_our_store_at_once(peers, larger, tmp_path, caplog, when):
    caplog.set_level(logging.INFO, logger="router.net")
    scp = peers.start("dcmtk-storescp", lambda port: ["storescp", "-v", when, "-aet", SCP_TITLE, "-od", str(tmp_path), str(port)])
    watcher = PduWatcher()
    ae = store_ae()
    ae.add_requested_context(larger.sop_class_uid, [larger.transfer_syntax])
    assoc = ae.associate(LOOPBACK, scp.port, ae_title=SCP_TITLE, evt_handlers=[(evt.EVT_DATA_SENT, watcher)])
    assert assoc.is_established

    status = assoc.send_c_store(larger.path)

    assert "Status" not in status  # no response: the abort came instead
    assert assoc.is_aborted and not assoc.is_alive
    assert ae.active_associations == []
    assert scp.wait_for_output(DCMTK_ABORTS, SETTLE), scp.output()
    if when == "--abort-after":
        assert PEER_ABORT_LOG in caplog.text
    else:  # streaming, we read nothing: the A-ABORT is lost with the reset connection, which is what we log
        sent_bytes = sum(watcher.pdata_lengths)
        assert sent_bytes < larger.size, f"the whole data set ({sent_bytes} bytes) went out despite the abort"
