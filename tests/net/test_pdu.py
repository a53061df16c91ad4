"""Byte-exact vectors for the PDU codec (router.net.pdu, router.net.pdu_items, router.net.codes).

Every vector is written as hex with its decoded meaning beside it; ``"text"`` inside a vector
stands for the ASCII bytes of that text. Offsets in comments are 0-based.
"""

import re

import pytest

from router.net.codes import (
    AbortReason, AbortSource, AcseRejectReason, ContextResult, ItemType, PduType,
    PresentationRejectReason, RejectReason, RejectResult, RejectSource, UserIdentityType,
    reject_reason_text,
)  # fmt: skip
from router.net.errors import PduError, PduTooLarge
from router.net.pdu import (
    INCOMPLETE, PDV, Abort, AssociateAC, AssociateRJ, AssociateRQ, Decoded, PDataTF, ReleaseRP,
    ReleaseRQ, decode, decode_body, encode, pdata_header, pdv_header, read_header,
)  # fmt: skip
from router.net.pdu_items import (
    AsyncOperationsWindow, ImplementationClassUID, ImplementationVersionName, MaximumLength,
    PresentationContextAC, PresentationContextRQ, RoleSelection, SOPClassCommonExtended,
    SOPClassExtended, UnknownItem, UserIdentityAC, UserIdentityRQ, UserInformation,
)  # fmt: skip

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MAX_PDATA = 16384
INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE


def wire(vector: str) -> bytes:
    """Hex pairs and ``"ASCII"`` strings, with ``#`` comments, to bytes."""
    code = "\n".join(line.split("#")[0] for line in vector.splitlines())
    tokens = re.findall(r'"([^"]*)"|([0-9A-Fa-f]{2})', code)
    return b"".join(text.encode() if text else bytes.fromhex(pair) for text, pair in tokens)


def decoded(data: bytes, max_pdata: int = MAX_PDATA):
    result = decode(data, max_pdata)
    assert isinstance(result, Decoded), result
    assert result.size == len(data)
    return result.pdu


def error(data: bytes, max_pdata: int = MAX_PDATA) -> PduError:
    result = decode(data, max_pdata)
    assert isinstance(result, PduError), result
    return result


# Worked example 1.11 of the shared reference (dicom-network-protocol.md), as printed: 187 bytes.
EXAMPLE_RQ_BYTES = wire("""
    01 00 00 00 00 B5 00 01 00 00 41 4E 59 2D 53 43   # type, len=181, ver=1, "ANY-SC
    50 20 20 20 20 20 20 20 20 20 45 43 48 4F 53 43   # P         ECHOSC
    55 20 20 20 20 20 20 20 20 20 00 00 00 00 00 00   # U         + 32 reserved zero bytes
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
    00 00 00 00 00 00 00 00 00 00 10 00 00 15 31 2E   # item 0x10 len 21 "1.2.840.10008.3.1.1.1"
    32 2E 38 34 30 2E 31 30 30 30 38 2E 33 2E 31 2E
    31 2E 31 20 00 00 2E 01 00 00 00 30 00 00 11 31   # item 0x20 len 46, ctx 1; 0x30 len 17
    2E 32 2E 38 34 30 2E 31 30 30 30 38 2E 31 2E 31   # "1.2.840.10008.1.1"
    40 00 00 11 31 2E 32 2E 38 34 30 2E 31 30 30 30   # 0x40 len 17 "1.2.840.10008.1.2"
    38 2E 31 2E 32 50 00 00 22 51 00 00 04 00 00 40   # 0x50 len 34; 0x51 len 4 = 16384
    00 52 00 00 09 31 2E 32 2E 33 2E 34 2E 35 55 00   # 0x52 len 9 "1.2.3.4.5"; 0x55
    00 09 45 58 41 4D 50 4C 45 5F 31                  # len 9 "EXAMPLE_1"
""")
EXAMPLE_RQ = AssociateRQ(
    called_ae_title="ANY-SCP",
    calling_ae_title="ECHOSCU",
    presentation_contexts=(PresentationContextRQ(1, VERIFICATION, (IMPLICIT_LE,)),),
    user_information=UserInformation((
        MaximumLength(16384), ImplementationClassUID("1.2.3.4.5"),
        ImplementationVersionName("EXAMPLE_1"),
    )),  # fmt: skip
)

AC_BYTES = wire("""
    02 00 000000BE                      # A-ASSOCIATE-AC, PDU-length 190
    0001 0000                           # protocol version 1, reserved
    "ANY-SCP         " "ECHOSCU         "   # echoed called / calling AE titles
    00000000000000000000000000000000 00000000000000000000000000000000   # 32 reserved bytes
    10 00 0015 "1.2.840.10008.3.1.1.1"  # application context, length 21
    21 00 0019 01 00 00 00              # context 1: acceptance
      40 00 0011 "1.2.840.10008.1.2"    #   transfer syntax Implicit VR LE
    21 00 0008 03 00 03 00              # context 3: abstract-syntax-not-supported
      40 00 0000                        #   empty transfer syntax (meaningless)
    21 00 001B 05 00 01 00              # context 5: user-rejection
      40 00 0013 "1.2.840.10008.1.2.1"  #   transfer syntax not tested on rejection
    50 00 0015                          # user information, length 21
      51 00 0004 00004000               #   maximum length 16384
      52 00 0009 "1.2.3.4.5"            #   implementation class UID
""")
AC = AssociateAC(
    called_ae_title="ANY-SCP",
    calling_ae_title="ECHOSCU",
    presentation_contexts=(
        PresentationContextAC(1, ContextResult.ACCEPTANCE, IMPLICIT_LE),
        PresentationContextAC(3, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, ""),
        PresentationContextAC(5, ContextResult.USER_REJECTION, EXPLICIT_LE),
    ),
    user_information=UserInformation((MaximumLength(16384), ImplementationClassUID("1.2.3.4.5"))),
)

PDATA_BYTES = wire("""
    04 00 00000026                      # P-DATA-TF, PDU-length 38
    0000000E 01 03                      # PDV length 14, context 1, command + last
      00000000 04000000 38000000        #   (0000,0000) UL 4 = 56: command group length
    00000010 01 02                      # PDV length 16, context 1, data set + last
      08005200 06000000 "STUDY "        #   (0008,0052) length 6 "STUDY "
""")
PDATA = PDataTF((
    PDV(1, is_command=True, is_last=True, data=wire("00000000 04000000 38000000")),
    PDV(1, is_command=False, is_last=True, data=wire('08005200 06000000 "STUDY "')),
))  # fmt: skip

VECTORS = [
    (EXAMPLE_RQ_BYTES, EXAMPLE_RQ),
    (AC_BYTES, AC),
    (PDATA_BYTES, PDATA),
    (wire("04 00 00000006  00000002 01 02"),  # PDV: empty fragment, data set, last
     PDataTF((PDV(1, False, True, b""),))),
    (wire("04 00 0000000E  00000004 07 01 AA BB  00000002 07 00"),  # command, more follows x2
     PDataTF((PDV(7, True, False, b"\xaa\xbb"), PDV(7, False, False, b"")))),
    (wire("05 00 00000004 00000000"), ReleaseRQ()),  # A-RELEASE-RQ
    (wire("06 00 00000004 00000000"), ReleaseRP()),  # A-RELEASE-RP
]  # fmt: skip

PERMANENT, TRANSIENT = RejectResult.PERMANENT, RejectResult.TRANSIENT
USER, ACSE = RejectSource.SERVICE_USER, RejectSource.SERVICE_PROVIDER_ACSE
PRESENTATION = RejectSource.SERVICE_PROVIDER_PRESENTATION
REJECTS = [  # bytes 7-9: result, source, reason; decoded; standard wording
    ("01 01 01", PERMANENT, USER, RejectReason.USER_NO_REASON, "no-reason-given"),
    ("01 01 02", PERMANENT, USER, RejectReason.APPLICATION_CONTEXT_NOT_SUPPORTED,
     "application-context-name-not-supported"),
    ("01 01 03", PERMANENT, USER, RejectReason.CALLING_AE_NOT_RECOGNIZED,
     "calling-AE-title-not-recognized"),
    ("01 01 07", PERMANENT, USER, RejectReason.CALLED_AE_NOT_RECOGNIZED,
     "called-AE-title-not-recognized"),
    ("01 01 05", PERMANENT, USER, RejectReason(5), "reserved (5)"),
    ("01 02 01", PERMANENT, ACSE, AcseRejectReason.PROVIDER_NO_REASON, "no-reason-given"),
    ("01 02 02", PERMANENT, ACSE, AcseRejectReason.PROTOCOL_VERSION_NOT_SUPPORTED,
     "protocol-version-not-supported"),
    ("02 03 01", TRANSIENT, PRESENTATION, PresentationRejectReason.TEMPORARY_CONGESTION,
     "temporary-congestion"),
    ("02 03 02", TRANSIENT, PRESENTATION, PresentationRejectReason.LOCAL_LIMIT_EXCEEDED,
     "local-limit-exceeded"),
    ("02 03 00", TRANSIENT, PRESENTATION, PresentationRejectReason(0), "reserved (0)"),
]  # fmt: skip
VECTORS += [
    (wire(f"03 00 00000004 00 {value}"), AssociateRJ(result, source, reason))
    for value, result, source, reason, _ in REJECTS
]

ABORTS = [  # bytes 8-9: source, reason
    ("00 00", AbortSource.SERVICE_USER, AbortReason.NOT_SPECIFIED),
    ("01 00", AbortSource.RESERVED, AbortReason.NOT_SPECIFIED),  # seen from old pynetdicom
    ("02 00", AbortSource.SERVICE_PROVIDER, AbortReason.NOT_SPECIFIED),
    ("02 01", AbortSource.SERVICE_PROVIDER, AbortReason.UNRECOGNIZED_PDU),
    ("02 02", AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU),
    ("02 04", AbortSource.SERVICE_PROVIDER, AbortReason.UNRECOGNIZED_PDU_PARAMETER),
    ("02 05", AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU_PARAMETER),
    ("02 06", AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER_VALUE),
]
VECTORS += [
    (wire(f"07 00 00000004 0000 {value}"), Abort(source, reason))
    for value, source, reason in ABORTS
]

SUB_ITEMS = [
    ("51 00 0004 00004000", MaximumLength(16384)),  # maximum length 16384
    ("51 00 0004 00000000", MaximumLength(0)),  # no limit
    ('52 00 0009 "1.2.3.4.5"', ImplementationClassUID("1.2.3.4.5")),
    ("53 00 0004 0005 0003", AsyncOperationsWindow(5, 3)),  # invoked 5, performed 3
    ('54 00 001D 0019 "1.2.840.10008.5.1.4.1.1.2" 00 01',  # uid length 25, SCU=0 then SCP=1
     RoleSelection(CT_IMAGE, scu_role=False, scp_role=True)),
    ('54 00 001D 0019 "1.2.840.10008.5.1.4.1.1.2" 01 00', RoleSelection(CT_IMAGE, True, False)),
    ('55 00 0009 "EXAMPLE_1"', ImplementationVersionName("EXAMPLE_1")),
    ('56 00 001F 001B "1.2.840.10008.5.1.4.1.2.2.1" 01 01',  # Study Root FIND, relational + dt
     SOPClassExtended("1.2.840.10008.5.1.4.1.2.2.1", b"\x01\x01")),
    ('57 00 004D 0019 "1.2.840.10008.5.1.4.1.1.2"'  # sub-item-version 0, SOP class CT
     '  0011 "1.2.840.10008.4.2"'  # service class: Storage
     '  001D 001B "1.2.840.10008.5.1.4.1.1.2.1"',  # related classes: Enhanced CT
     SOPClassCommonExtended(CT_IMAGE, "1.2.840.10008.4.2", ("1.2.840.10008.5.1.4.1.1.2.1",))),
    ('57 00 0030 0019 "1.2.840.10008.5.1.4.1.1.2" 0011 "1.2.840.10008.4.2" 0000',  # none related
     SOPClassCommonExtended(CT_IMAGE, "1.2.840.10008.4.2")),
    ('58 00 000B 01 00 0005 "alice" 0000',  # username, no response requested
     UserIdentityRQ(UserIdentityType.USERNAME, False, b"alice")),
    ('58 00 0011 02 01 0005 "alice" 0006 "secret"',  # username + passcode, response requested
     UserIdentityRQ(UserIdentityType.USERNAME_PASSCODE, True, b"alice", b"secret")),
    ('58 00 001E 05 01 0018 "eyJhbGciOiJub25lIn0.e30." 0000',  # JSON web token
     UserIdentityRQ(UserIdentityType.JWT, True, b"eyJhbGciOiJub25lIn0.e30.")),
    ("59 00 0002 0000", UserIdentityAC(b"")),  # empty server response (types 1, 2)
    ('59 00 0007 0005 "<ok/>"', UserIdentityAC(b"<ok/>")),  # SAML response
    ("60 00 0003 01 02 03", UnknownItem(0x60, b"\x01\x02\x03")),  # unknown type: kept
]  # fmt: skip


# Building blocks for hand-made association PDUs.
APP = wire('10 00 0015 "1.2.840.10008.3.1.1.1"')
CTX = wire('20 00 002E 01 00 00 00 30 00 0011 "1.2.840.10008.1.1" 40 00 0011 "1.2.840.10008.1.2"')
USER = wire("50 00 0008 51 00 0004 00004000")


def association(pdu_type: str, items: bytes, called=b"ANY-SCP", calling=b"ECHOSCU") -> bytes:
    """An A-ASSOCIATE-RQ/AC: version 1, the AE titles, 32 zero bytes, then ``items`` as given."""
    fixed = wire("0001 0000") + called.ljust(16, b" ") + calling.ljust(16, b" ") + bytes(32)
    return wire(pdu_type + " 00") + (len(fixed) + len(items)).to_bytes(4, "big") + fixed + items


@pytest.mark.parametrize(("data", "pdu"), VECTORS, ids=lambda v: type(v).__name__)
def test_vector_encodes_and_decodes(data, pdu):
    assert encode(pdu) == data
    assert decoded(data) == pdu


@pytest.mark.parametrize(("data", "pdu"), VECTORS, ids=lambda v: type(v).__name__)
def test_every_truncation_is_incomplete(data, pdu):
    for size in range(len(data)):
        assert decode(data[:size], MAX_PDATA) is INCOMPLETE


@pytest.mark.parametrize(("value", "item"), SUB_ITEMS)
def test_sub_item_vectors(value, item):
    data = wire(value)
    assert UserInformation((item,)).encode_value() == data
    assert UserInformation.decode_value(memoryview(data), 0, len(data)) == UserInformation((item,))


@pytest.mark.parametrize(("value", "result", "source", "reason", "text"), REJECTS)
def test_reject_reason_typed_by_source_with_wording(value, result, source, reason, text):
    reject = decoded(wire(f"03 00 00000004 00 {value}"))
    assert type(reject.reason) is type(reason)
    assert reject_reason_text(reject.source, reject.reason) == text


def test_example_rq_meaning():
    user = EXAMPLE_RQ.user_information
    assert len(EXAMPLE_RQ_BYTES) == 187
    assert (user.maximum_length, user.implementation_class_uid) == (16384, "1.2.3.4.5")
    assert user.implementation_version_name == "EXAMPLE_1"
    assert user.async_ops_window is None and user.user_identity is None
    assert read_header(EXAMPLE_RQ_BYTES) == (PduType.ASSOCIATE_RQ, 181)
    assert decode_body(PduType.ASSOCIATE_RQ, EXAMPLE_RQ_BYTES[6:]) == EXAMPLE_RQ


def test_user_information_sorted_on_encode_and_convenience_properties():
    window, role = AsyncOperationsWindow(1, 1), RoleSelection(CT_IMAGE, True, True)
    identity, unknown = UserIdentityAC(b""), UnknownItem(0x5A, b"")
    extended = SOPClassExtended(CT_IMAGE, b"\x01")
    common = SOPClassCommonExtended(CT_IMAGE, "1.2.840.10008.4.2")
    items = (unknown, identity, common, extended, role, window, ImplementationClassUID("1.2"),
             MaximumLength(0))  # fmt: skip
    user = UserInformation(items)
    data = user.encode_value()
    assert UserInformation.decode_value(memoryview(data), 0, len(data)).items == items[::-1]
    assert (user.maximum_length, user.implementation_class_uid) == (0, "1.2")
    assert user.implementation_version_name is None
    assert (user.async_ops_window, user.user_identity) == (window, identity)
    assert (user.role_selections, user.sop_class_extended, user.sop_class_common_extended) == (
        (role,), (extended,), (common,))  # fmt: skip


def test_unknown_top_level_item_kept_in_place():
    data = EXAMPLE_RQ_BYTES[:2] + (181 + 7).to_bytes(4, "big") + EXAMPLE_RQ_BYTES[6:]
    data += wire("60 00 0003 AA BB CC")  # unknown item type 0x60 after user information
    rq = decoded(data)
    assert rq.unknown_items == (UnknownItem(0x60, b"\xaa\xbb\xcc"),)
    assert encode(rq) == data


def test_ac_rejected_context_without_transfer_syntax():
    ac = decoded(association("02", APP + wire("21 00 0004 03 00 04 00") + USER))
    rejected = PresentationContextAC(3, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, "")
    assert ac.presentation_contexts == (rejected,)


def test_uid_and_ae_padding_stripped():
    ctx = wire('''20 00 0030 01 00 00 00   # context 1
                  30 00 0012 "1.2.840.10008.1.1" 00   # abstract syntax, NUL padded
                  40 00 0012 "1.2.840.10008.1.2 "''')  # transfer syntax, space padded
    rq = decoded(association("01", APP + ctx + USER, called=b"  ANY\0\0", calling=b"X"))
    assert rq.presentation_contexts == (PresentationContextRQ(1, VERIFICATION, (IMPLICIT_LE,)),)
    assert (rq.called_ae_title, rq.calling_ae_title) == ("ANY", "X")


def test_encode_rejects_what_does_not_fit():
    with pytest.raises(ValueError):
        encode(AssociateRQ("A" * 17, "B", EXAMPLE_RQ.presentation_contexts, UserInformation()))
    with pytest.raises(ValueError):
        encode(AssociateRQ("A", "B", (), UserInformation((UnknownItem(0x60, bytes(0x10000)),))))
    with pytest.raises(TypeError):
        encode("not a PDU")


def test_pdata_scatter_gather_headers_match_encode():
    gather = []
    for pdv in PDATA.pdvs:
        gather += [pdv_header(pdv.context_id, pdv.is_command, pdv.is_last, len(pdv.data)), pdv.data]
    assert pdata_header(sum(map(len, gather))) + b"".join(gather) == PDATA_BYTES


def test_pdata_fragments_are_views_of_the_buffer():
    buf = bytearray(PDATA_BYTES + wire("05 00 00000004 00000000"))
    result = decode(buf, MAX_PDATA)
    assert all(pdv.data.obj is buf for pdv in result.pdu.pdvs)
    assert result.size == len(PDATA_BYTES)  # the following release request is left in place
    del result
    del buf[:len(PDATA_BYTES)]  # views released: the buffer can shrink
    assert decoded(bytes(buf)) == ReleaseRQ()


def test_error_result_keeps_no_view_of_the_buffer():
    buf = bytearray(wire("04 00 00000006 00000001 01 02"))
    result = decode(buf, MAX_PDATA)
    assert isinstance(result, PduError)
    buf.clear()  # would raise BufferError if a traceback still held a view


# Malformed input ------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "reason", "offset"), [
    (wire("03 00 00000005 0001010100"), INVALID, 2),  # A-ASSOCIATE-RJ length must be 4
    (wire("05 00 00000003 000000"), INVALID, 2),  # A-RELEASE-RQ length must be 4
    (wire("06 00 00000000"), INVALID, 2),  # A-RELEASE-RP length must be 4
    (wire("07 00 00000008 0000020600000000"), INVALID, 2),  # A-ABORT length must be 4
    (wire("04 00 00000000"), INVALID, 6),  # P-DATA-TF without PDV
    (wire("04 00 00000006 00000001 01 02"), INVALID, 6),  # PDV item-length < 2
    (wire("04 00 00000006 00000003 01 02"), INVALID, 6),  # PDV overruns the PDU
    (wire("04 00 00000009 00000002 01 02 000000"), INVALID, 12),  # truncated second PDV header
    (wire("04 00 00000006 00000002 00 02"), INVALID, 10),  # context id 0
    (wire("04 00 00000006 00000002 02 02"), INVALID, 10),  # context id even
    (EXAMPLE_RQ_BYTES[:0x4D] + b"\xff" + EXAMPLE_RQ_BYTES[0x4E:], INVALID, 0x4C),  # item overrun
    (association("01", APP + USER), INVALID, 74 + 37),  # no presentation context
    (association("01", CTX + USER), INVALID, 74 + 62),  # no application context
    (association("01", APP + CTX), INVALID, 74 + 75),  # no user information
    (association("01", APP + APP + CTX + USER), AbortReason.UNEXPECTED_PDU_PARAMETER, 74 + 29),
    (association("01", APP + CTX + USER + USER), AbortReason.UNEXPECTED_PDU_PARAMETER, 74 + 91),
    (association("01", APP + CTX[:4] + b"\x02" + CTX[5:] + USER), INVALID, 74 + 29),  # even ctx
    (association("01", APP + CTX + USER + b"\x60\x00\x00"), INVALID, 74 + 87),  # truncated item
    (association("01", APP + wire("20 00 0004 01000000") + USER), INVALID, 74 + 29),  # no abstract
    (association("02", APP + wire("21 00 0004 01 00 00 00") + USER), INVALID, 74 + 29),  # no TS
    (association("01", b""), INVALID, 74),  # no items at all
    (wire("01 00 00000004 00010000"), INVALID, 10),  # shorter than the fixed fields
    (association("01", APP + CTX + wire("50 00 0006 51 00 0002 0000")), INVALID, 74 + 83),  # short
    (association("01", APP + CTX + wire('50 00 0009 54 00 0005 0010 "1." 01')), INVALID, 74 + 83),
])  # fmt: skip
def test_malformed_pdu_is_an_error_value(data, reason, offset):
    result = error(data)
    assert (result.reason, result.offset) == (reason, offset), str(result)


@pytest.mark.parametrize("pdu_type", [0x00, 0x08, 0x10, 0xFF])
def test_unknown_pdu_type(pdu_type):
    result = error(bytes([pdu_type]) + wire("00 00000004 00000000"))
    assert (result.reason, result.offset) == (AbortReason.UNRECOGNIZED_PDU, 0)
    assert isinstance(decode_body(pdu_type, b"\0\0\0\0"), PduError)


def test_too_large_is_reported_from_the_header_alone():
    result = decode(wire("04 00 00004001"), MAX_PDATA)  # 16385 announced, nothing else yet
    assert isinstance(result, PduTooLarge)
    assert (result.length, result.maximum) == (16385, MAX_PDATA)
    assert (result.reason, result.offset) == (INVALID, 2)
    assert decode(wire("04 00 00004000"), MAX_PDATA) is INCOMPLETE  # exactly the maximum
    assert decode(wire("04 00 FFFFFFFF"), 0) is INCOMPLETE  # 0 = no limit
    assert isinstance(decode(wire("01 00 00100001"), MAX_PDATA), PduTooLarge)  # 1 MiB + 1
    assert decode(wire("01 00 00100001"), MAX_PDATA, 0) is INCOMPLETE
    assert isinstance(decode(wire("05 00 00000004"), MAX_PDATA, 3), PduTooLarge)


def test_open_enums_keep_unknown_values():
    assert AbortReason(99) == 99 and AbortReason(99).name == "RESERVED_99"
    assert AbortReason(99) is AbortReason(99)
    assert ItemType(0x60).name == "RESERVED_96" and ContextResult(9) == 9
    assert AbortReason(6) is AbortReason.INVALID_PDU_PARAMETER_VALUE
    assert AbortReason.of(6) is AbortReason.INVALID_PDU_PARAMETER_VALUE  # the call-free lookup agrees
    assert AbortReason.of(98) is AbortReason(98) and AbortReason.of(98).name == "RESERVED_98"
    assert len(AbortReason) == 7  # pseudo-members are not listed
    with pytest.raises(ValueError):
        AbortReason("x")
    abort = decoded(wire("07 00 00000004 0000 09 63"))
    assert abort == Abort(AbortSource(9), AbortReason(99))
    assert encode(abort) == wire("07 00 00000004 0000 09 63")
    reject = decoded(wire("03 00 00000004 00 07 09 0B"))  # result 7, source 9, reason 11
    assert reject == AssociateRJ(RejectResult(7), RejectSource(9), 11)


# Cross-check with pynetdicom (a test peer only) -----------------------------------------------


def _pynetdicom_request():
    primitives = pytest.importorskip("pynetdicom.pdu_primitives")
    from pynetdicom.presentation import PresentationContext

    request = primitives.A_ASSOCIATE()
    request.application_context_name = "1.2.840.10008.3.1.1.1"
    request.calling_ae_title, request.called_ae_title = "ECHOSCU", "ANY-SCP"
    context = PresentationContext()
    context.context_id, context.abstract_syntax = 3, VERIFICATION
    context.transfer_syntax = [IMPLICIT_LE, EXPLICIT_LE]
    request.presentation_context_definition_list = [context]
    maximum = primitives.MaximumLengthNotification()
    maximum.maximum_length_received = 16382
    class_uid = primitives.ImplementationClassUIDNotification()
    class_uid.implementation_class_uid = "1.2.3.4"
    role = primitives.SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid, role.scu_role, role.scp_role = CT_IMAGE, False, True
    identity = primitives.UserIdentityNegotiation()
    identity.user_identity_type, identity.positive_response_requested = 2, True
    identity.primary_field, identity.secondary_field = b"alice", b"secret"
    request.user_information = [maximum, class_uid, role, identity]
    return request


PYNETDICOM_VIEW = AssociateRQ(
    "ANY-SCP",
    "ECHOSCU",
    (PresentationContextRQ(3, VERIFICATION, (IMPLICIT_LE, EXPLICIT_LE)),),
    UserInformation((
        MaximumLength(16382), ImplementationClassUID("1.2.3.4"),
        RoleSelection(CT_IMAGE, False, True),
        UserIdentityRQ(UserIdentityType.USERNAME_PASSCODE, True, b"alice", b"secret"),
    )),
)  # fmt: skip


def test_we_read_pynetdicom_associate_rq():
    request = _pynetdicom_request()
    from pynetdicom.pdu import A_ASSOCIATE_RQ

    assert decoded(A_ASSOCIATE_RQ(request).encode()) == PYNETDICOM_VIEW


def test_pynetdicom_reads_our_associate_rq_and_pdata():
    pdu_module = pytest.importorskip("pynetdicom.pdu")
    theirs = pdu_module.A_ASSOCIATE_RQ()
    theirs.decode(encode(PYNETDICOM_VIEW))
    assert theirs.encode() == encode(PYNETDICOM_VIEW)
    request = theirs.to_primitive()
    assert (request.called_ae_title, request.calling_ae_title) == ("ANY-SCP", "ECHOSCU")
    [context] = request.presentation_context_definition_list
    assert (context.context_id, context.abstract_syntax, context.transfer_syntax) == (
        3, VERIFICATION, [IMPLICIT_LE, EXPLICIT_LE])  # fmt: skip
    maximum, class_uid, role, identity = request.user_information
    assert maximum.maximum_length_received == 16382
    assert class_uid.implementation_class_uid == "1.2.3.4"
    assert (role.sop_class_uid, role.scu_role, role.scp_role) == (CT_IMAGE, False, True)
    assert (identity.user_identity_type, identity.primary_field, identity.secondary_field) == (
        2, b"alice", b"secret")  # fmt: skip
    pdata = pdu_module.P_DATA_TF()
    pdata.decode(PDATA_BYTES)
    values = [(item.context_id, item.data) for item in pdata.presentation_data_value_items]
    assert values == [(1, b"\x03" + PDATA.pdvs[0].data), (1, b"\x02" + PDATA.pdvs[1].data)]
