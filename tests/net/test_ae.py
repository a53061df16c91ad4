"""The Application Entity (router.net.ae): titles, contexts, validated settings, and loopback use."""

from __future__ import annotations

import socket

import pytest
from pydicom.uid import UID

from router.net import evt
from router.net.acse import MAX_CONTEXTS
from router.net.ae import (
    AE,
    DEFAULT_ACSE_TIMEOUT,
    DEFAULT_AE_TITLE,
    DEFAULT_DIMSE_TIMEOUT,
    DEFAULT_MAX_PDU,
    DEFAULT_MAXIMUM_ASSOCIATIONS,
    DEFAULT_NETWORK_TIMEOUT,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
)
from router.net.codes import ContextResult
from router.net.dimse import encode_single_pdu
from router.net.dimse_messages import CEchoRQ, encode_command
from router.net.presentation import DEFAULT_TRANSFER_SYNTAXES, build_context
from router.net.values import validate_ae_title, validate_uid

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
LOCALHOST = "127.0.0.1"
TEST_TIMEOUT = 5.0

VALID_TITLES = [
    ("ABC", "ABC"),
    (b"ABC", "ABC"),
    ("  STORE_SCP  ", "STORE_SCP"),
    (b" ANY-SCP", "ANY-SCP"),
    ("MY AE", "MY AE"),
    ("A" * 16, "A" * 16),
    ("  " + "B" * 16 + " ", "B" * 16),
    ("a1!#$%&'()*+,-./", "a1!#$%&'()*+,-./"),
]
INVALID_TITLES = [
    ("", "empty or only spaces"),
    (b"", "empty or only spaces"),
    ("   ", "empty or only spaces"),
    (b"                ", "empty or only spaces"),
    ("A" * 17, "17 characters, at most 16"),
    (b"B" * 17, "17 characters, at most 16"),
    ("AB\\CD", "backslash"),
    ("AB\tCD", "control"),
    ("AB\nCD", "control"),
    ("\x00ABC", "control"),
    ("ABC\x7f", "control"),
    ("ÄBC", "non-ASCII"),
    (b"\xc4BC", "ASCII"),
]


# ---- AE titles -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", VALID_TITLES)
def test_validate_ae_title_accepts_and_normalises(value, expected):
    assert validate_ae_title(value) == expected
    assert isinstance(validate_ae_title(value), str)


@pytest.mark.parametrize("value, message", INVALID_TITLES)
def test_validate_ae_title_rejects_with_a_clear_message(value, message):
    with pytest.raises(ValueError, match="Invalid AE title") as info:
        validate_ae_title(value)
    assert message in str(info.value)


def test_validate_ae_title_rejects_other_types():
    with pytest.raises(TypeError):
        validate_ae_title(123)  # type: ignore[arg-type]


def test_ae_default_title():
    assert AE().ae_title == DEFAULT_AE_TITLE


@pytest.mark.parametrize("value, expected", VALID_TITLES)
def test_ae_title_on_construction_and_assignment(value, expected):
    assert AE(value).ae_title == expected
    ae = AE()
    ae.ae_title = value
    assert ae.ae_title == expected


@pytest.mark.parametrize("value, message", INVALID_TITLES)
def test_invalid_ae_title_on_construction(value, message):
    with pytest.raises(ValueError, match="Invalid AE title"):
        AE(value)


@pytest.mark.parametrize("value, message", INVALID_TITLES)
def test_invalid_ae_title_on_assignment_keeps_the_old_title(value, message):
    ae = AE("KEEP_ME")
    with pytest.raises(ValueError, match="Invalid AE title"):
        ae.ae_title = value
    assert ae.ae_title == "KEEP_ME"


@pytest.mark.parametrize("value, message", INVALID_TITLES)
def test_invalid_called_ae_title_in_associate_raises_before_connecting(value, message):
    ae = AE()
    ae.add_requested_context(VERIFICATION)
    # Port 1 is never contacted: validation comes first.
    with pytest.raises(ValueError, match="Invalid AE title"):
        ae.associate(LOCALHOST, 1, ae_title=value)
    assert ae.active_associations == []


@pytest.mark.parametrize("value, message", INVALID_TITLES)
def test_invalid_ae_title_in_start_server_raises_before_listening(value, message):
    ae = AE()
    ae.add_supported_context(VERIFICATION)
    with pytest.raises(ValueError, match="Invalid AE title"):
        ae.start_server((LOCALHOST, 0), block=False, ae_title=value)
    assert ae._servers == []


# ---- requested contexts ----------------------------------------------------------------------------------


def test_new_ae_has_no_contexts():
    ae = AE()
    assert ae.requested_contexts == []
    assert ae.supported_contexts == []


def test_add_requested_context_uses_the_default_transfer_syntaxes_in_order():
    ae = AE()
    ae.add_requested_context(VERIFICATION)
    (context,) = ae.requested_contexts
    assert context.abstract_syntax == VERIFICATION
    assert context.transfer_syntax == [IMPLICIT, EXPLICIT, DEFLATED, BIG_ENDIAN]
    assert tuple(context.transfer_syntax) == DEFAULT_TRANSFER_SYNTAXES


def test_add_requested_context_with_a_single_syntax_or_a_list():
    ae = AE()
    ae.add_requested_context(CT_IMAGE_STORAGE, transfer_syntax=IMPLICIT)
    ae.add_requested_context(MR_IMAGE_STORAGE, [EXPLICIT, IMPLICIT])
    ae.add_requested_context(UID(VERIFICATION), UID(BIG_ENDIAN))
    ct, mr, verification = ae.requested_contexts
    assert (ct.abstract_syntax, ct.transfer_syntax) == (CT_IMAGE_STORAGE, [IMPLICIT])
    assert (mr.abstract_syntax, mr.transfer_syntax) == (MR_IMAGE_STORAGE, [EXPLICIT, IMPLICIT])
    assert (verification.abstract_syntax, verification.transfer_syntax) == (VERIFICATION, [BIG_ENDIAN])


def test_the_same_abstract_syntax_may_be_requested_twice():
    ae = AE()
    ae.add_requested_context(CT_IMAGE_STORAGE)
    ae.add_requested_context(CT_IMAGE_STORAGE, IMPLICIT)
    first, second = ae.requested_contexts
    assert first.abstract_syntax == second.abstract_syntax == CT_IMAGE_STORAGE
    assert first.transfer_syntax == list(DEFAULT_TRANSFER_SYNTAXES)
    assert second.transfer_syntax == [IMPLICIT]


def test_128_requested_contexts_are_allowed_and_the_129th_raises():
    ae = AE()
    for _ in range(MAX_CONTEXTS):
        ae.add_requested_context(VERIFICATION)
    assert len(ae.requested_contexts) == 128
    with pytest.raises(ValueError, match="128"):
        ae.add_requested_context(CT_IMAGE_STORAGE)
    assert len(ae.requested_contexts) == 128
    assert all(c.abstract_syntax == VERIFICATION for c in ae.requested_contexts)


def test_requested_contexts_setter_replaces_and_copies():
    ae = AE()
    ae.add_requested_context(MR_IMAGE_STORAGE)
    given = [build_context(CT_IMAGE_STORAGE, IMPLICIT), build_context(VERIFICATION, [IMPLICIT, BIG_ENDIAN])]
    ae.requested_contexts = given
    got = ae.requested_contexts
    assert [(c.abstract_syntax, c.transfer_syntax) for c in got] == [
        (CT_IMAGE_STORAGE, [IMPLICIT]),
        (VERIFICATION, [IMPLICIT, BIG_ENDIAN]),
    ]
    assert all(a is not b for a, b in zip(got, given))
    ae.add_requested_context(MR_IMAGE_STORAGE)
    assert [c.abstract_syntax for c in ae.requested_contexts] == [CT_IMAGE_STORAGE, VERIFICATION, MR_IMAGE_STORAGE]


def test_requested_contexts_getter_returns_a_copy_of_the_list():
    ae = AE()
    ae.add_requested_context(VERIFICATION)
    ae.requested_contexts.clear()
    assert len(ae.requested_contexts) == 1


def test_requested_contexts_setter_with_more_than_128_raises_and_keeps_the_old_list():
    ae = AE()
    ae.add_requested_context(VERIFICATION)
    with pytest.raises(ValueError, match="128"):
        ae.requested_contexts = [build_context(CT_IMAGE_STORAGE)] * (MAX_CONTEXTS + 1)
    assert [c.abstract_syntax for c in ae.requested_contexts] == [VERIFICATION]
    ae.requested_contexts = [build_context(CT_IMAGE_STORAGE)] * MAX_CONTEXTS
    assert len(ae.requested_contexts) == 128


def test_remove_requested_context_without_transfer_syntax_removes_every_context_of_the_class():
    ae = AE()
    ae.add_requested_context(CT_IMAGE_STORAGE)
    ae.add_requested_context(VERIFICATION)
    ae.add_requested_context(CT_IMAGE_STORAGE, IMPLICIT)
    ae.remove_requested_context(CT_IMAGE_STORAGE)
    assert [c.abstract_syntax for c in ae.requested_contexts] == [VERIFICATION]
    ae.remove_requested_context(MR_IMAGE_STORAGE)  # not present: nothing happens
    assert len(ae.requested_contexts) == 1


def test_remove_requested_context_with_transfer_syntax():
    ae = AE()
    ae.add_requested_context(CT_IMAGE_STORAGE)
    ae.add_requested_context(CT_IMAGE_STORAGE, IMPLICIT)
    ae.add_requested_context(VERIFICATION)
    ae.remove_requested_context(CT_IMAGE_STORAGE, IMPLICIT)
    # The IMPLICIT-only context goes entirely; the other loses one syntax; Verification is untouched.
    assert [(c.abstract_syntax, c.transfer_syntax) for c in ae.requested_contexts] == [
        (CT_IMAGE_STORAGE, [EXPLICIT, DEFLATED, BIG_ENDIAN]),
        (VERIFICATION, list(DEFAULT_TRANSFER_SYNTAXES)),
    ]
    ae.remove_requested_context(CT_IMAGE_STORAGE, [EXPLICIT, BIG_ENDIAN])
    assert ae.requested_contexts[0].transfer_syntax == [DEFLATED]
    ae.remove_requested_context(CT_IMAGE_STORAGE, [DEFLATED])
    assert [c.abstract_syntax for c in ae.requested_contexts] == [VERIFICATION]


@pytest.mark.parametrize("uid", ["", "1.2.x", "1..2", "1" * 65])
def test_invalid_uids_raise_value_error(uid):
    ae = AE()
    with pytest.raises(ValueError):
        ae.add_requested_context(uid)
    with pytest.raises(ValueError):
        ae.add_requested_context(VERIFICATION, uid)
    with pytest.raises(ValueError):
        ae.add_supported_context(uid)
    with pytest.raises(ValueError):
        ae.add_supported_context(VERIFICATION, [IMPLICIT, uid])
    with pytest.raises(ValueError):
        ae.remove_requested_context(uid)
    with pytest.raises(ValueError):
        ae.remove_supported_context(VERIFICATION, uid)
    assert ae.requested_contexts == [] and ae.supported_contexts == []


# ---- supported contexts ----------------------------------------------------------------------------------


def test_add_supported_context_defaults():
    ae = AE()
    ae.add_supported_context(VERIFICATION)
    (context,) = ae.supported_contexts
    assert context.abstract_syntax == VERIFICATION
    assert context.transfer_syntax == list(DEFAULT_TRANSFER_SYNTAXES)
    assert (context.scu_role, context.scp_role) == (None, None)


def test_add_supported_context_merges_transfer_syntaxes_for_the_same_class():
    ae = AE()
    ae.add_supported_context(CT_IMAGE_STORAGE, IMPLICIT)
    ae.add_supported_context(CT_IMAGE_STORAGE, [JPEG_BASELINE, IMPLICIT, EXPLICIT])
    (context,) = ae.supported_contexts
    assert context.transfer_syntax == [IMPLICIT, JPEG_BASELINE, EXPLICIT]


def test_add_supported_context_sets_and_updates_roles():
    ae = AE()
    ae.add_supported_context(CT_IMAGE_STORAGE, IMPLICIT, scu_role=False, scp_role=True)
    (context,) = ae.supported_contexts
    assert (context.scu_role, context.scp_role) == (False, True)
    ae.add_supported_context(CT_IMAGE_STORAGE, EXPLICIT, scu_role=True, scp_role=True)
    (context,) = ae.supported_contexts
    assert (context.scu_role, context.scp_role) == (True, True)
    assert context.transfer_syntax == [IMPLICIT, EXPLICIT]


def test_supported_contexts_are_one_per_class_sorted_by_uid():
    ae = AE()
    ae.add_supported_context(MR_IMAGE_STORAGE)
    ae.add_supported_context(VERIFICATION)
    ae.add_supported_context(CT_IMAGE_STORAGE)
    ae.add_supported_context(VERIFICATION, JPEG_BASELINE)
    assert [c.abstract_syntax for c in ae.supported_contexts] == [VERIFICATION, CT_IMAGE_STORAGE, MR_IMAGE_STORAGE]


def test_supported_contexts_setter_replaces_and_keeps_roles():
    ae = AE()
    ae.add_supported_context(MR_IMAGE_STORAGE)
    ct = build_context(CT_IMAGE_STORAGE, IMPLICIT)
    ct.scu_role, ct.scp_role = True, False
    ae.supported_contexts = [ct, build_context(VERIFICATION), build_context(CT_IMAGE_STORAGE, EXPLICIT)]
    verification, merged = ae.supported_contexts
    assert verification.abstract_syntax == VERIFICATION
    assert merged.abstract_syntax == CT_IMAGE_STORAGE
    assert merged.transfer_syntax == [IMPLICIT, EXPLICIT]
    assert ct.transfer_syntax == [IMPLICIT]  # the caller's context is not modified


def test_remove_supported_context():
    ae = AE()
    ae.add_supported_context(CT_IMAGE_STORAGE, [IMPLICIT, EXPLICIT, JPEG_BASELINE])
    ae.add_supported_context(VERIFICATION)
    ae.remove_supported_context(CT_IMAGE_STORAGE, JPEG_BASELINE)
    assert ae.supported_contexts[1].transfer_syntax == [IMPLICIT, EXPLICIT]
    ae.remove_supported_context(CT_IMAGE_STORAGE, [IMPLICIT, EXPLICIT])
    assert [c.abstract_syntax for c in ae.supported_contexts] == [VERIFICATION]
    ae.remove_supported_context(VERIFICATION)
    assert ae.supported_contexts == []
    ae.remove_supported_context(VERIFICATION)  # already gone: nothing happens


# ---- validated settings ------------------------------------------------------------------------------------


def test_defaults():
    ae = AE()
    assert ae.acse_timeout == DEFAULT_ACSE_TIMEOUT
    assert ae.dimse_timeout == DEFAULT_DIMSE_TIMEOUT
    assert ae.network_timeout == DEFAULT_NETWORK_TIMEOUT
    assert ae.connection_timeout is None
    assert ae.maximum_associations == DEFAULT_MAXIMUM_ASSOCIATIONS
    assert ae.maximum_pdu_size == DEFAULT_MAX_PDU == 16382
    assert ae.implementation_class_uid == IMPLEMENTATION_CLASS_UID == validate_uid(IMPLEMENTATION_CLASS_UID, "x")
    assert ae.implementation_version_name == IMPLEMENTATION_VERSION_NAME
    assert 1 <= len(IMPLEMENTATION_VERSION_NAME) <= 16
    assert ae.require_calling_aet == []
    assert ae.require_called_aet is False


TIMEOUTS = ["acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"]


@pytest.mark.parametrize("name", TIMEOUTS)
@pytest.mark.parametrize("value", [None, 0, 0.5, 30, 600.0])
def test_timeouts_accept_none_and_non_negative_numbers(name, value):
    ae = AE()
    setattr(ae, name, value)
    assert getattr(ae, name) == (None if value is None else float(value))


@pytest.mark.parametrize("name", TIMEOUTS)
@pytest.mark.parametrize("value", [-1, -0.001, "10", [], float("nan"), float("inf")])
def test_timeouts_reject_other_values(name, value):
    ae = AE()
    before = getattr(ae, name)
    with pytest.raises(ValueError, match=name):
        setattr(ae, name, value)
    assert getattr(ae, name) == before


@pytest.mark.parametrize("value", [1, 2, 100])
def test_maximum_associations_accepts_positive_ints(value):
    ae = AE()
    ae.maximum_associations = value
    assert ae.maximum_associations == value


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", None, True])
def test_maximum_associations_rejects_other_values(value):
    ae = AE()
    with pytest.raises(ValueError, match="maximum_associations"):
        ae.maximum_associations = value
    assert ae.maximum_associations == DEFAULT_MAXIMUM_ASSOCIATIONS


@pytest.mark.parametrize("value", [0, 8, 16382, 1 << 20])
def test_maximum_pdu_size_accepts_no_limit_or_a_usable_length(value):
    ae = AE()
    ae.maximum_pdu_size = value
    assert ae.maximum_pdu_size == value


@pytest.mark.parametrize("value", [-1, 1, 7, 16382.0, "16382", None, False])
def test_maximum_pdu_size_rejects_other_values(value):
    ae = AE()
    with pytest.raises(ValueError, match="maximum_pdu_size"):
        ae.maximum_pdu_size = value
    assert ae.maximum_pdu_size == DEFAULT_MAX_PDU


def test_implementation_class_uid():
    ae = AE()
    ae.implementation_class_uid = "1.2.3.4"
    assert ae.implementation_class_uid == "1.2.3.4"
    ae.implementation_class_uid = b"1.2.3.5\0"
    assert ae.implementation_class_uid == "1.2.3.5"
    for bad in ["", "1.2.x", "1..2", "1." + "2" * 63]:
        with pytest.raises(ValueError, match="implementation class"):
            ae.implementation_class_uid = bad
    assert ae.implementation_class_uid == "1.2.3.5"


@pytest.mark.parametrize("value, expected", [("A", "A"), ("X" * 16, "X" * 16), (b"ROUTER_2", "ROUTER_2"), (None, None)])
def test_implementation_version_name_accepts_1_to_16_characters(value, expected):
    ae = AE()
    ae.implementation_version_name = value
    assert ae.implementation_version_name == expected


@pytest.mark.parametrize("value", ["", "X" * 17, b""])
def test_implementation_version_name_rejects_other_lengths(value):
    ae = AE()
    with pytest.raises(ValueError, match="implementation_version_name"):
        ae.implementation_version_name = value
    assert ae.implementation_version_name == IMPLEMENTATION_VERSION_NAME


def test_require_calling_aet_is_a_list_of_valid_titles():
    ae = AE()
    ae.require_calling_aet = ["FRIEND", b" OTHER ", "  THIRD"]
    assert ae.require_calling_aet == ["FRIEND", "OTHER", "THIRD"]
    ae.require_calling_aet = "SOLO"
    assert ae.require_calling_aet == ["SOLO"]
    ae.require_calling_aet = []
    assert ae.require_calling_aet == []
    for bad in [["OK", ""], ["A" * 17], ["A\\B"], [" "]]:
        with pytest.raises(ValueError, match="Invalid AE title"):
            ae.require_calling_aet = bad
    assert ae.require_calling_aet == []


def test_require_called_aet_is_a_bool():
    ae = AE()
    ae.require_called_aet = True
    assert ae.require_called_aet is True
    ae.require_called_aet = 0
    assert ae.require_called_aet is False


def test_other_attributes_are_left_alone():
    ae = AE()
    ae.custom = "anything"
    assert ae.custom == "anything"


# ---- associate / start_server arguments ------------------------------------------------------------------------


def test_associate_needs_a_requested_context():
    with pytest.raises(RuntimeError, match="presentation context"):
        AE().associate(LOCALHOST, 1)


def test_associate_refuses_more_than_128_contexts():
    ae = AE()
    with pytest.raises(ValueError, match="128"):
        ae.associate(LOCALHOST, 1, contexts=[build_context(VERIFICATION)] * (MAX_CONTEXTS + 1))


@pytest.mark.parametrize("max_pdu", [-1, 1.5, None])
def test_associate_refuses_an_invalid_max_pdu(max_pdu):
    ae = AE()
    ae.add_requested_context(VERIFICATION)
    with pytest.raises(ValueError, match="max_pdu"):
        ae.associate(LOCALHOST, 1, max_pdu=max_pdu)


def test_start_server_needs_a_supported_context():
    with pytest.raises(ValueError, match="supported presentation context"):
        AE().start_server((LOCALHOST, 0), block=False)


# ---- loopback ---------------------------------------------------------------------------------------------------


def fast(ae: AE) -> AE:
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = TEST_TIMEOUT
    return ae


@pytest.fixture
def aes():
    """(scp, scu): two AEs whose servers and associations are shut down afterwards."""
    scp, scu = fast(AE("SCP")), fast(AE("SCU"))
    scp.add_supported_context(VERIFICATION)
    scu.add_requested_context(VERIFICATION)
    yield scp, scu
    scu.shutdown()
    scp.shutdown()


def port_of(server) -> int:
    return server.server_address[1]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(10)
def test_associate_echo_release(aes):
    scp, scu = aes
    server = scp.start_server((LOCALHOST, 0), block=False)
    assoc = scu.associate(LOCALHOST, port_of(server), ae_title="SCP", max_pdu=32000)
    assert assoc.is_established and not assoc.is_rejected and not assoc.is_aborted
    assert assoc.requestor.ae_title == "SCU"
    assert assoc.acceptor.ae_title == "SCP"
    assert assoc.acceptor.maximum_length == scp.maximum_pdu_size
    assert assoc.acceptor.implementation_class_uid == scp.implementation_class_uid
    assert assoc.acceptor.implementation_version_name == scp.implementation_version_name
    (context,) = assoc.accepted_contexts
    assert context.abstract_syntax == VERIFICATION
    assert context.transfer_syntax == [IMPLICIT]
    assert context.result == ContextResult.ACCEPTANCE
    assert assoc in scu.active_associations
    assert [a.requestor.ae_title for a in server.active_associations] == ["SCU"]
    assert server.active_associations[0].requestor.maximum_length == 32000
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    assert assoc.is_released and not assoc.is_established
    assert assoc not in scu.active_associations


@pytest.mark.timeout(10)
def test_a_read_holding_a_bad_message_then_a_good_one_aborts_and_serves_nothing_after(aes, caplog):
    """The acceptor aborts over the first (a context it never accepted); the C-ECHO-RQ read with it
    is dropped, not answered on the aborted association (which raised before)."""
    scp, scu = aes
    echoes: list = []
    server = scp.start_server((LOCALHOST, 0), block=False, evt_handlers=[(evt.EVT_C_ECHO, lambda e: echoes.append(e) or 0)])
    assoc = scu.associate(LOCALHOST, port_of(server), ae_title="SCP")
    command = encode_command(CEchoRQ(7), False)
    assoc.link.sock.sendall(encode_single_pdu(3, command, 0) + encode_single_pdu(1, command, 0))
    assert assoc.run_until(lambda: not assoc.is_established, TEST_TIMEOUT)
    assert assoc.is_aborted and echoes == []
    assert "which was not accepted" in caplog.text
    assert "Unexpected error" not in caplog.text and "UsageError" not in caplog.text


@pytest.mark.timeout(10)
def test_associate_with_contexts_argument_and_rejected_context(aes):
    scp, scu = aes
    server = scp.start_server((LOCALHOST, 0), block=False)
    contexts = [build_context(CT_IMAGE_STORAGE), build_context(VERIFICATION, BIG_ENDIAN)]
    assoc = scu.associate(LOCALHOST, port_of(server), contexts=contexts)
    assert assoc.is_established
    assert [(c.context_id, c.transfer_syntax) for c in assoc.accepted_contexts] == [(3, [BIG_ENDIAN])]
    assert [(c.context_id, c.result) for c in assoc.rejected_contexts] == [(1, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED)]
    assoc.release()


@pytest.mark.timeout(10)
def test_start_server_ae_title_and_require_called_aet(aes):
    scp, scu = aes
    scp.require_called_aet = True
    server = scp.start_server((LOCALHOST, 0), block=False, ae_title=b"  STORE_SCP ")
    assert server.ae_title == "STORE_SCP"
    rejected = scu.associate(LOCALHOST, port_of(server))  # default called title: ANY-SCP
    assert rejected.is_rejected and not rejected.is_established
    reason = rejected.reject_reason
    assert (int(reason.result), int(reason.source), int(reason.reason)) == (1, 1, 7)
    accepted = scu.associate(LOCALHOST, port_of(server), ae_title=" STORE_SCP")
    assert accepted.is_established
    accepted.release()


@pytest.mark.timeout(10)
def test_require_calling_aet(aes):
    scp, scu = aes
    scp.require_calling_aet = ["FRIEND"]
    server = scp.start_server((LOCALHOST, 0), block=False)
    rejected = scu.associate(LOCALHOST, port_of(server))
    reason = rejected.reject_reason
    assert rejected.is_rejected
    assert (int(reason.result), int(reason.source), int(reason.reason)) == (1, 1, 3)
    scu.ae_title = "FRIEND"
    accepted = scu.associate(LOCALHOST, port_of(server))
    assert accepted.is_established
    accepted.release()


@pytest.mark.timeout(10)
def test_maximum_associations_rejects_the_extra_one_as_transient(aes):
    scp, scu = aes
    scp.maximum_associations = 1
    server = scp.start_server((LOCALHOST, 0), block=False)
    first = scu.associate(LOCALHOST, port_of(server))
    assert first.is_established
    second = scu.associate(LOCALHOST, port_of(server))
    assert second.is_rejected
    reason = second.reject_reason
    assert (int(reason.result), int(reason.source), int(reason.reason)) == (2, 3, 2)
    first.release()


@pytest.mark.timeout(10)
def test_connection_failure_returns_an_association_that_is_not_established(aes):
    _, scu = aes
    assoc = scu.associate(LOCALHOST, closed_port())
    assert not assoc.is_established
    assert assoc.is_aborted
    assert scu.active_associations == []


@pytest.mark.timeout(10)
def test_shutdown_stops_servers_and_aborts_associations(aes):
    scp, scu = aes
    server = scp.start_server((LOCALHOST, 0), block=False)
    port = port_of(server)
    assoc = scu.associate(LOCALHOST, port)
    assert assoc.is_established
    assert len(scp.active_associations) == 1
    scp.shutdown()
    assert scp.active_associations == []
    assert scp._servers == []
    # The SCU notices the abort the next time it reads: no response, no status.
    assert "Status" not in assoc.send_c_echo()
    assert assoc.is_aborted and not assoc.is_established
    with pytest.raises(OSError):
        socket.create_connection((LOCALHOST, port), timeout=TEST_TIMEOUT).close()
