"""Association refusals, each seen by the peer with the right result, source and reason.

Our server refuses DCMTK's and pynetdicom's echoscu (calling title unknown,
called title wrong, no acceptable presentation context, local limit exceeded)
and each peer must print the reason; our requestor, refused by DCMTK's storescp
or by a pynetdicom SCP, must report `is_rejected` and the reason.
"""

from __future__ import annotations

import logging
import sys

import pytest

from router.net import AE, build_context, evt
from router.net.codes import ContextResult, PresentationRejectReason, RejectResult, RejectSource, UserRejectReason
from router.net.presentation import VERIFICATION_SOP_CLASS
from router.net.status import SUCCESS
from tests.conftest import LOOPBACK, pynetdicom_app, verification_ae, wait_until

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EVENT_BOUND = 2.0  # seconds for our server's event handler to run after the peer is done

# (result, source, reason) of each A-ASSOCIATE-RJ our server must send.
CALLING_AE_REJECT = (RejectResult.PERMANENT, RejectSource.SERVICE_USER, UserRejectReason.CALLING_AE_NOT_RECOGNIZED)
CALLED_AE_REJECT = (RejectResult.PERMANENT, RejectSource.SERVICE_USER, UserRejectReason.CALLED_AE_NOT_RECOGNIZED)
LIMIT_REJECT = (RejectResult.TRANSIENT, RejectSource.SERVICE_PROVIDER_PRESENTATION, PresentationRejectReason.LOCAL_LIMIT_EXCEEDED)
VERIFICATION_NOT_SUPPORTED = [[(VERIFICATION_SOP_CLASS, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED)]]

# What DCMTK 3.6.7's echoscu -v prints for an A-ASSOCIATE-RJ.
DCMTK_PERMANENT_USER = "Result: Rejected Permanent, Source: Service User"
DCMTK_TRANSIENT_PRESENTATION = "Result: Rejected Transient, Source: Service Provider (Presentation Related)"
# pynetdicom is run with -d and checked on its dump of the A-ASSOCIATE-RJ PDU it received: its
# "Association Rejected" line is racy against a fast acceptor (its ACSE thread checks that the
# socket is still connected after its DUL thread has already handled the RJ and closed it, and
# then logs "Aborting Association" instead; seen about once in 30 runs against our server).
PYNETDICOM_RJ = "INCOMING A-ASSOCIATE-RJ PDU"
PYNETDICOM_PERMANENT_USER = ("Result:    Rejected (Permanent)", "Source:    DUL service-user")
PYNETDICOM_TRANSIENT_PRESENTATION = ("Result:    Rejected (Transient)", "Source:    DUL service-provider (presentation related)")


def assert_pynetdicom_saw_reject(output: str, result_and_source: tuple[str, str], reason: str) -> None:
    assert PYNETDICOM_RJ in output, output
    dump = output[output.index(PYNETDICOM_RJ):]
    for line in (*result_and_source, f"Reason:    {reason}"):
        assert f"D: {line}" in dump, output

# A pynetdicom SCP that refuses: run as its own process, argv = port mode.
PYNETDICOM_REFUSING_SCP = """
import logging, sys
from pynetdicom import AE
logging.basicConfig(level=logging.INFO, format="%(levelname).1s: %(message)s")
ae = AE(ae_title="PYNSCP")
ae.add_supported_context("1.2.840.10008.1.1")
if sys.argv[2] == "calling":
    ae.require_calling_aet = ["GOOD"]
elif sys.argv[2] == "called":
    ae.require_called_aet = True
ae.start_server(("127.0.0.1", int(sys.argv[1])), block=True)
"""


class RejectRecorder:
    """Remembers the A-ASSOCIATE-RJ our server sent, as (result, source, reason).

    The event fires just after the RJ is on the wire: the peer may have exited before it
    runs, so tests wait (briefly) for it.
    """

    def __init__(self) -> None:
        self.rejects: list[tuple[int, int, int]] = []

    def __call__(self, event: evt.Event) -> None:
        reject = event.assoc.reject_reason
        self.rejects.append((reject.result, reject.source, reject.reason))

    def saw(self, expected: list[tuple[int, int, int]]) -> bool:
        return wait_until(lambda: self.rejects == expected, EVENT_BOUND)


def start_refusing(our_server, ae: AE):
    recorder = RejectRecorder()
    server = our_server.start(ae, evt_handlers=[(evt.EVT_REJECTED, recorder)])
    return server, server.server_address[1], recorder


# ---- calling AE title not recognised (permanent, source 1, reason 3) --------------------
@pytest.mark.dcmtk
def test_dcmtk_sees_calling_ae_not_recognized(our_server, client):
    ae = verification_ae()
    ae.require_calling_aet = ["GOOD"]
    _, port, recorder = start_refusing(our_server, ae)

    refused = client(["echoscu", "-v", "-aet", "BAD", LOOPBACK, str(port)])
    welcome = client(["echoscu", "-v", "-aet", "GOOD", LOOPBACK, str(port)])

    assert refused.returncode != 0
    assert DCMTK_PERMANENT_USER in refused.output, refused.output
    assert "Reason: Calling AE Title Not Recognized" in refused.output
    assert recorder.saw([CALLING_AE_REJECT]), recorder.rejects
    assert welcome.returncode == 0, welcome.output


@pytest.mark.pynetdicom
def test_pynetdicom_sees_calling_ae_not_recognized(our_server, client):
    ae = verification_ae()
    ae.require_calling_aet = ["GOOD"]
    _, port, recorder = start_refusing(our_server, ae)

    refused = client(pynetdicom_app("echoscu", "-d", "-aet", "BAD", LOOPBACK, str(port)))

    assert refused.returncode != 0
    assert_pynetdicom_saw_reject(refused.output, PYNETDICOM_PERMANENT_USER, "Calling AE title not recognised")
    assert recorder.saw([CALLING_AE_REJECT]), recorder.rejects


# ---- called AE title not recognised (permanent, source 1, reason 7) -----------------------
@pytest.mark.dcmtk
def test_dcmtk_sees_called_ae_not_recognized(our_server, client):
    ae = verification_ae("OURSCP")
    ae.require_called_aet = True
    _, port, recorder = start_refusing(our_server, ae)

    refused = client(["echoscu", "-v", "-aec", "WRONG", LOOPBACK, str(port)])
    welcome = client(["echoscu", "-v", "-aec", "OURSCP", LOOPBACK, str(port)])

    assert refused.returncode != 0
    assert DCMTK_PERMANENT_USER in refused.output, refused.output
    assert "Reason: Called AE Title Not Recognized" in refused.output
    assert recorder.saw([CALLED_AE_REJECT]), recorder.rejects
    assert welcome.returncode == 0, welcome.output


@pytest.mark.pynetdicom
def test_pynetdicom_sees_called_ae_not_recognized(our_server, client):
    ae = verification_ae("OURSCP")
    ae.require_called_aet = True
    _, port, recorder = start_refusing(our_server, ae)

    refused = client(pynetdicom_app("echoscu", "-d", "-aec", "WRONG", LOOPBACK, str(port)))

    assert refused.returncode != 0
    assert_pynetdicom_saw_reject(refused.output, PYNETDICOM_PERMANENT_USER, "Called AE title not recognised")
    assert recorder.saw([CALLED_AE_REJECT]), recorder.rejects


# ---- no acceptable presentation context -------------------------------------------------
def ct_only_ae() -> AE:
    """An AE that supports CT Image Storage only: Verification is not supported."""
    ae = AE("OURSCP")
    ae.add_supported_context(CT_IMAGE_STORAGE)
    ae.acse_timeout = 10
    return ae


class ContextRecorder:
    """Remembers the results our server gave each proposed context, per association."""

    def __init__(self) -> None:
        self.results: list[list[tuple[str, int]]] = []

    def __call__(self, event: evt.Event) -> None:
        contexts = event.assoc.accepted_contexts + event.assoc.rejected_contexts
        self.results.append([(c.abstract_syntax, c.result) for c in contexts])

    def saw(self, expected: list[list[tuple[str, int]]]) -> bool:
        return wait_until(lambda: self.results == expected, EVENT_BOUND)


@pytest.mark.dcmtk
def test_dcmtk_sees_no_acceptable_presentation_context(our_server, client):
    recorder = ContextRecorder()
    server = our_server.start(ct_only_ae(), evt_handlers=[(evt.EVT_ACCEPTED, recorder)])

    result = client(["echoscu", "-d", LOOPBACK, str(server.server_address[1])])

    assert result.returncode != 0
    assert "Context ID:        1 (Abstract Syntax Not Supported)" in result.output, result.output
    assert "No Acceptable Presentation Contexts" in result.output
    assert recorder.saw(VERIFICATION_NOT_SUPPORTED), recorder.results
    assert wait_until(lambda: not server.active_associations, 5.0)


@pytest.mark.pynetdicom
def test_pynetdicom_sees_no_acceptable_presentation_context(our_server, client):
    recorder = ContextRecorder()
    server = our_server.start(ct_only_ae(), evt_handlers=[(evt.EVT_ACCEPTED, recorder)])

    result = client(pynetdicom_app("echoscu", "-d", LOOPBACK, str(server.server_address[1])))

    assert result.returncode != 0
    assert "(Rejected - Abstract Syntax Not Supported)" in result.output, result.output
    assert "No accepted presentation contexts" in result.output
    assert recorder.saw(VERIFICATION_NOT_SUPPORTED), recorder.results
    assert wait_until(lambda: not server.active_associations, 5.0)


@pytest.mark.dcmtk
def test_our_ae_gets_no_acceptable_context_from_dcmtk(peers, caplog):
    """storescp does not serve Modality Worklist FIND: the context comes back rejected."""
    caplog.set_level(logging.INFO, logger="router.net")
    scp = peers.start("storescp", lambda port: ["storescp", "-v", "-od", ".", str(port)])
    ae = AE("OURSCU")
    ae.acse_timeout = 10
    worklist_find = "1.2.840.10008.5.1.4.31"

    assoc = ae.associate(LOOPBACK, scp.port, contexts=[build_context(worklist_find)])

    assert not assoc.is_established and not assoc.is_rejected
    assert [c.result for c in assoc.rejected_contexts] == [ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED]
    assert assoc.accepted_contexts == []
    assert "No Acceptable Presentation Contexts" in caplog.text
    assert not assoc.is_alive
    assert scp.wait_for_output("Association Aborted"), scp.output()


# ---- local limit exceeded (transient, source 3, reason 2) ----------------------------
def hold_one_association(our_server):
    """Our server with maximum_associations=1, and one association of ours holding the slot."""
    ae = verification_ae()
    ae.maximum_associations = 1
    server, port, recorder = start_refusing(our_server, ae)
    holder_ae = verification_ae("HOLDER")
    holder = holder_ae.associate(LOOPBACK, port, ae_title="OURSCP")
    assert holder.is_established
    return server, port, recorder, holder


@pytest.mark.dcmtk
def test_dcmtk_sees_local_limit_exceeded(our_server, client):
    server, port, recorder, holder = hold_one_association(our_server)
    try:
        refused = client(["echoscu", "-v", LOOPBACK, str(port)])
        assert holder.send_c_echo().Status == SUCCESS  # the held association is unharmed
    finally:
        holder.release()
    assert wait_until(lambda: not server.active_associations, 5.0)
    welcome = client(["echoscu", "-v", LOOPBACK, str(port)])

    assert refused.returncode != 0
    assert DCMTK_TRANSIENT_PRESENTATION in refused.output, refused.output
    assert "Reason: Local Limit Exceeded" in refused.output
    assert recorder.saw([LIMIT_REJECT]), recorder.rejects
    assert welcome.returncode == 0, welcome.output  # the slot is free again


@pytest.mark.pynetdicom
def test_pynetdicom_sees_local_limit_exceeded(our_server, client):
    server, port, recorder, holder = hold_one_association(our_server)
    try:
        refused = client(pynetdicom_app("echoscu", "-d", LOOPBACK, str(port)))
    finally:
        holder.release()

    assert refused.returncode != 0
    assert_pynetdicom_saw_reject(refused.output, PYNETDICOM_TRANSIENT_PRESENTATION, "Local limit exceeded")
    assert recorder.saw([LIMIT_REJECT]), recorder.rejects


def test_our_requestor_sees_our_local_limit(our_server):
    server, port, recorder, holder = hold_one_association(our_server)
    try:
        second = verification_ae("SECOND").associate(LOOPBACK, port, ae_title="OURSCP")
    finally:
        holder.release()

    assert second.is_rejected and not second.is_established
    reject = second.reject_reason
    assert (reject.result, reject.source, reject.reason) == (2, 3, 2)


# ---- our requestor refused by a peer ----------------------------------------------------
@pytest.mark.dcmtk
def test_our_requestor_refused_by_dcmtk_storescp(peers, caplog):
    caplog.set_level(logging.INFO, logger="router.net")
    scp = peers.start("storescp", lambda port: ["storescp", "-v", "--refuse", "-od", ".", str(port)])
    ae = verification_ae("OURSCU")

    assoc = ae.associate(LOOPBACK, scp.port)

    assert assoc.is_rejected
    assert not assoc.is_established and not assoc.is_aborted
    reject = assoc.reject_reason
    assert (reject.result, reject.source, reject.reason) == (
        RejectResult.PERMANENT, RejectSource.SERVICE_USER, UserRejectReason.USER_NO_REASON,
    )
    assert "Association Rejected" in caplog.text
    assert "Result: Rejected Permanent, Source: Service User" in caplog.text
    assert scp.wait_for_output("Refusing Association (forced via command line)"), scp.output()
    assert not assoc.is_alive
    assert ae.active_associations == []


@pytest.mark.pynetdicom
@pytest.mark.parametrize(
    ("mode", "calling", "called", "reason"),
    [
        ("calling", "BAD", "PYNSCP", UserRejectReason.CALLING_AE_NOT_RECOGNIZED),
        ("called", "GOOD", "WRONG", UserRejectReason.CALLED_AE_NOT_RECOGNIZED),
    ],
)
def test_our_requestor_refused_by_pynetdicom(peers, caplog, mode, calling, called, reason):
    caplog.set_level(logging.INFO, logger="router.net")
    scp = peers.start("pynetdicom-scp", lambda port: [sys.executable, "-c", PYNETDICOM_REFUSING_SCP, str(port), mode])

    refused = verification_ae(calling).associate(LOOPBACK, scp.port, ae_title=called)
    welcome = verification_ae("GOOD").associate(LOOPBACK, scp.port, ae_title="PYNSCP")
    try:
        assert welcome.is_established
        assert welcome.send_c_echo().Status == SUCCESS
    finally:
        welcome.release()

    assert refused.is_rejected and not refused.is_established
    reject = refused.reject_reason
    assert (reject.result, reject.source, reject.reason) == (RejectResult.PERMANENT, RejectSource.SERVICE_USER, reason)
    assert "Association Rejected" in caplog.text
