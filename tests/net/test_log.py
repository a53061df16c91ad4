"""Logging (router.net.log): debug_logger output over a loopback association, PDU summaries, reject wording."""

from __future__ import annotations

import logging
import socket

import pytest

from router.net import debug_logger
from router.net.acse import Implementation, build_request
from router.net.ae import AE, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from router.net.codes import ContextResult, RejectResult, RejectSource, UserIdentityType
from router.net.log import (
    LOGGER,
    log_lines,
    reject_text,
    summarize_accept,
    summarize_request,
)
from router.net.pdu import AssociateAC, AssociateRJ
from router.net.pdu_items import (
    AsyncOperationsWindow,
    PresentationContextAC,
    RoleSelection,
    SOPClassCommonExtended,
    SOPClassExtended,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from router.net.presentation import PresentationContext, build_context

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
LOCALHOST = "127.0.0.1"
WAIT = 5.0
IMPLEMENTATION = Implementation("1.2.826.0.1.3680043.9.3811.2.0.0", "PYNETDICOM_200", 16382)


@pytest.fixture
def restore_logger():
    """Undo debug_logger() after the test so other tests see the logger as it was."""
    handlers, level = list(LOGGER.handlers), LOGGER.level
    yield
    LOGGER.handlers = handlers
    LOGGER.setLevel(level)


def output_lines(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


# ---- debug_logger -----------------------------------------------------------------------------------


def test_debug_logger_writes_level_prefixed_lines_to_stderr(capsys, restore_logger):
    logger = debug_logger()
    assert logger is logging.getLogger("router.net")
    assert logger.level == logging.DEBUG
    logger.debug("a debug line")
    logger.info("an info line")
    logger.error("an error line")
    assert output_lines(capsys) == ["D: a debug line", "I: an info line", "E: an error line"]


def test_debug_logger_twice_does_not_duplicate_lines(capsys, restore_logger):
    debug_logger()
    debug_logger()
    LOGGER.info("once")
    assert output_lines(capsys) == ["I: once"]


def test_log_lines_logs_each_line_with_its_prefix(capsys, restore_logger):
    debug_logger()
    log_lines(logging.DEBUG, lambda *words: list(words), "first", "second")
    assert output_lines(capsys) == ["D: first", "D: second"]
    LOGGER.setLevel(logging.INFO)
    built = []
    log_lines(logging.DEBUG, lambda: built.append("built") or ["hidden"])
    assert output_lines(capsys) == []
    assert built == []  # a description for a disabled level is never built


@pytest.fixture
def pair():
    scp, scu = AE("SCP"), AE("SCU")
    for ae in (scp, scu):
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = WAIT
    scp.add_supported_context(VERIFICATION)
    scu.add_requested_context(VERIFICATION)
    yield scp, scu
    scu.shutdown()
    scp.shutdown()


@pytest.mark.timeout(10)
def test_loopback_association_output_has_the_documented_layout(pair, capsys, restore_logger):
    scp, scu = pair
    debug_logger()
    server = scp.start_server((LOCALHOST, 0), block=False)
    assoc = scu.associate(LOCALHOST, server.server_address[1])
    assert assoc.is_established
    assoc.send_c_echo()
    assoc.release()
    scp.shutdown()
    lines = output_lines(capsys)

    # The requestor's summary is written before the request is sent, so nothing interleaves it.
    assert [line.strip() for line in lines[:23]] == [
        "I: Requesting Association",
        "D: Request Parameters:",
        "D: ======================= OUTGOING A-ASSOCIATE-RQ PDU ========================",
        f"D: Our Implementation Class UID: {IMPLEMENTATION_CLASS_UID}",
        f"D: Our Implementation Version Name: {IMPLEMENTATION_VERSION_NAME}",
        "D: Application Context Name: 1.2.840.10008.3.1.1.1",
        "D: Calling Application Name: SCU",
        "D: Called Application Name: ANY-SCP",
        "D: Our Max PDU Receive Size: 16382",
        "D: Presentation Context:",
        "D:   Context ID:        1 (Proposed)",
        "D:     Abstract Syntax: =Verification SOP Class",
        "D:     Proposed SCP/SCU Role: Default",
        "D:     Proposed Transfer Syntaxes:",
        "D:       =Implicit VR Little Endian",
        "D:       =Explicit VR Little Endian",
        "D:       =Deflated Explicit VR Little Endian",
        "D:       =Explicit VR Big Endian",
        "D: Requested Extended Negotiation: None",
        "D: Requested Common Extended Negotiation: None",
        "D: Requested Asynchronous Operations Window Negotiation: None",
        "D: Requested User Identity Negotiation: None",
        "D: ========================== END A-ASSOCIATE-RQ PDU ==========================",
    ]
    for expected in [
        "I: Association Received",
        "D: ======================= INCOMING A-ASSOCIATE-RQ PDU ========================",
        "D: Their Max PDU Receive Size: 16382",
        "D: Accept Parameters:",
        "D: ======================= INCOMING A-ASSOCIATE-AC PDU ========================",
        "D: ======================= OUTGOING A-ASSOCIATE-AC PDU ========================",
        "D: Presentation Contexts:",
        "D:   Context ID:        1 (Accepted)",
        "D:     Accepted SCP/SCU Role: Default",
        "D:     Accepted Transfer Syntax: =Implicit VR Little Endian",
        "D: User Identity Negotiation Response: None",
        "I: Received Echo Request (MsgID 1)",
        "I: Association Released",
    ]:
        assert expected in lines, expected
    assert lines.count("I: Association Accepted") == 2  # once per side

    # The requestor's own lines come in the documented order.
    requestor_lines = [
        "I: Requesting Association",
        "I: Sending Echo Request: MsgID 1",
        "I: Received Echo Response (Status: 0x0000 - Success)",
        "I: Releasing Association",
    ]
    positions = [lines.index(line) for line in requestor_lines]
    assert positions == sorted(positions)
    accepted = [i for i, line in enumerate(lines) if line == "I: Association Accepted"]
    assert accepted[0] < positions[1]


@pytest.mark.timeout(10)
def test_rejection_is_logged_with_its_reason(pair, capsys, restore_logger):
    scp, scu = pair
    scp.require_calling_aet = ["FRIEND"]
    debug_logger()
    server = scp.start_server((LOCALHOST, 0), block=False)
    assoc = scu.associate(LOCALHOST, server.server_address[1])
    assert assoc.is_rejected
    scp.shutdown()
    lines = output_lines(capsys)
    reason = "Result: Rejected Permanent, Source: Service User, Reason: calling-AE-title-not-recognized"
    assert "E: Association Rejected" in lines
    assert f"E: {reason}" in lines
    assert f"I: {reason}" in lines  # the acceptor's side


@pytest.mark.timeout(10)
def test_connection_failure_is_logged(capsys, restore_logger):
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        port = sock.getsockname()[1]
    ae = AE()
    ae.add_requested_context(VERIFICATION)
    debug_logger()
    assoc = ae.associate(LOCALHOST, port)
    assert not assoc.is_established
    lines = output_lines(capsys)
    assert lines[0] == "I: Requesting Association"
    assert "E: Association request failed: unable to connect to remote" in lines
    assert any(line.startswith("E: TCP Initialisation Error:") for line in lines)


# ---- summaries -----------------------------------------------------------------------------------------


def test_summarize_request_with_roles_and_extended_negotiation():
    ext_neg = [
        RoleSelection(CT_IMAGE_STORAGE, False, True),
        SOPClassExtended(CT_IMAGE_STORAGE, b"\x01"),
        AsyncOperationsWindow(5, 4),
        UserIdentityRQ(UserIdentityType.USERNAME, False, b"user"),
    ]
    contexts = [build_context(CT_IMAGE_STORAGE, IMPLICIT), build_context(VERIFICATION, [IMPLICIT, EXPLICIT])]
    request, _ = build_request("STORE_SCP", "PYNETDICOM", contexts, IMPLEMENTATION, ext_neg)
    assert summarize_request(request, outgoing=False) == [
        "======================= INCOMING A-ASSOCIATE-RQ PDU ========================",
        "Their Implementation Class UID: 1.2.826.0.1.3680043.9.3811.2.0.0",
        "Their Implementation Version Name: PYNETDICOM_200",
        "Application Context Name: 1.2.840.10008.3.1.1.1",
        "Calling Application Name: PYNETDICOM",
        "Called Application Name: STORE_SCP",
        "Their Max PDU Receive Size: 16382",
        "Presentation Contexts:",
        "  Context ID:        1 (Proposed)",
        "    Abstract Syntax: =CT Image Storage",
        "    Proposed SCP/SCU Role: SCP",
        "    Proposed Transfer Syntax:",
        "      =Implicit VR Little Endian",
        "  Context ID:        3 (Proposed)",
        "    Abstract Syntax: =Verification SOP Class",
        "    Proposed SCP/SCU Role: Default",
        "    Proposed Transfer Syntaxes:",
        "      =Implicit VR Little Endian",
        "      =Explicit VR Little Endian",
        "Requested Extended Negotiation:",
        "  SOP Class: =CT Image Storage",
        "Requested Common Extended Negotiation: None",
        "Requested Asynchronous Operations Window Negotiation: invoked 5, performed 4",
        "Requested User Identity Negotiation: UserIdentityRQ",
        "========================== END A-ASSOCIATE-RQ PDU ==========================",
    ]


def test_summarize_accept_lists_results_and_roles():
    accepted = PresentationContext(CT_IMAGE_STORAGE, [EXPLICIT], context_id=1)
    accepted.result, accepted.scu_role, accepted.scp_role = ContextResult.ACCEPTANCE, False, True
    rejected = PresentationContext(VERIFICATION, [], context_id=3)
    rejected.result = ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED
    items = (
        PresentationContextAC(1, ContextResult.ACCEPTANCE, EXPLICIT),
        PresentationContextAC(3, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, ""),
    )
    user = UserInformation(tuple(IMPLEMENTATION.user_items()) + (UserIdentityAC(b"token"),))
    accept = AssociateAC("STORE_SCP", "PYNETDICOM", items, user)
    assert summarize_accept(accept, [accepted, rejected], outgoing=True) == [
        "======================= OUTGOING A-ASSOCIATE-AC PDU ========================",
        "Our Implementation Class UID: 1.2.826.0.1.3680043.9.3811.2.0.0",
        "Our Implementation Version Name: PYNETDICOM_200",
        "Application Context Name: 1.2.840.10008.3.1.1.1",
        "Calling Application Name: PYNETDICOM",
        "Called Application Name: STORE_SCP",
        "Our Max PDU Receive Size: 16382",
        "Presentation Contexts:",
        "  Context ID:        1 (Accepted)",
        "    Abstract Syntax: =CT Image Storage",
        "    Accepted SCP/SCU Role: SCP",
        "    Accepted Transfer Syntax: =Explicit VR Little Endian",
        "  Context ID:        3 (Abstract Syntax Not Supported)",
        "    Abstract Syntax: =Verification SOP Class",
        "Accepted Extended Negotiation: None",
        "Accepted Asynchronous Operations Window Negotiation: None",
        "User Identity Negotiation Response: UserIdentityAC",
        "========================== END A-ASSOCIATE-AC PDU ==========================",
    ]


def test_summary_role_text_for_both_and_neither():
    request, _ = build_request(
        "A", "B", [build_context(CT_IMAGE_STORAGE, IMPLICIT)], IMPLEMENTATION, [RoleSelection(CT_IMAGE_STORAGE, True, True)]
    )
    assert "    Proposed SCP/SCU Role: SCU/SCP" in summarize_request(request, outgoing=True)
    request, _ = build_request(
        "A", "B", [build_context(CT_IMAGE_STORAGE, IMPLICIT)], IMPLEMENTATION, [RoleSelection(CT_IMAGE_STORAGE, False, False)]
    )
    assert "    Proposed SCP/SCU Role: N/A" in summarize_request(request, outgoing=True)


def test_missing_version_name_reads_none():
    request, _ = build_request("A", "B", [build_context(VERIFICATION)], Implementation("1.2.3", None, 0))
    lines = summarize_request(request, outgoing=True)
    assert "Our Implementation Version Name: None" in lines
    assert "Our Max PDU Receive Size: 0" in lines


# ---- reject_text -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "result, source, reason, text",
    [
        (1, 1, 1, "Result: Rejected Permanent, Source: Service User, Reason: no-reason-given"),
        (1, 1, 2, "Result: Rejected Permanent, Source: Service User, Reason: application-context-name-not-supported"),
        (1, 1, 3, "Result: Rejected Permanent, Source: Service User, Reason: calling-AE-title-not-recognized"),
        (1, 1, 7, "Result: Rejected Permanent, Source: Service User, Reason: called-AE-title-not-recognized"),
        (1, 2, 1, "Result: Rejected Permanent, Source: Service Provider (ACSE), Reason: no-reason-given"),
        (1, 2, 2, "Result: Rejected Permanent, Source: Service Provider (ACSE), Reason: protocol-version-not-supported"),
        (2, 3, 1, "Result: Rejected Transient, Source: Service Provider (Presentation), Reason: temporary-congestion"),
        (2, 3, 2, "Result: Rejected Transient, Source: Service Provider (Presentation), Reason: local-limit-exceeded"),
        (1, 1, 5, "Result: Rejected Permanent, Source: Service User, Reason: reserved (5)"),
        (2, 9, 1, "Result: Rejected Transient, Source: Reserved (9), Reason: reserved (1)"),
    ],
)
def test_reject_text(result, source, reason, text):
    assert reject_text(AssociateRJ(RejectResult(result), RejectSource(source), reason)) == text


def test_extended_negotiation_headers_have_no_trailing_space():
    ext_neg = [
        SOPClassExtended(CT_IMAGE_STORAGE, b"\x01"),
        SOPClassCommonExtended(CT_IMAGE_STORAGE, "1.2.840.10008.4.2"),
    ]
    request, _ = build_request("A", "B", [build_context(CT_IMAGE_STORAGE)], IMPLEMENTATION, ext_neg)
    lines = summarize_request(request, outgoing=True)
    start = lines.index("Requested Extended Negotiation:")
    assert lines[start : start + 4] == [
        "Requested Extended Negotiation:",
        "  SOP Class: =CT Image Storage",
        "Requested Common Extended Negotiation:",
        "  SOP Class: =CT Image Storage",
    ]
    items = (PresentationContextAC(1, ContextResult.ACCEPTANCE, IMPLICIT),)
    user = UserInformation(tuple(IMPLEMENTATION.user_items()) + (SOPClassExtended(CT_IMAGE_STORAGE, b"\x01"),))
    accepted = PresentationContext(CT_IMAGE_STORAGE, [IMPLICIT], context_id=1)
    accepted.result = ContextResult.ACCEPTANCE
    accept_lines = summarize_accept(AssociateAC("A", "B", items, user), [accepted], outgoing=False)
    assert "Accepted Extended Negotiation:" in accept_lines
    assert "Accepted SCP/SCU Role: Default" in [line.strip() for line in accept_lines]
    for line in lines + accept_lines:
        assert line == line.rstrip(), repr(line)
