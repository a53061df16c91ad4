"""DIMSE layer examples: command sets byte for byte (cross-checked with pydicom and pynetdicom),
fragmentation into P-DATA-TF and reassembly, every protocol violation as a DimseError."""

from __future__ import annotations

import io

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from router.net.codes import PDV_HEADER_LENGTH
from router.net.dimse import (
    DEFAULT_PDU_LENGTH,
    MAX_COMMAND_LENGTH,
    MIN_PDU_LENGTH,
    AssembledMessage,
    MessageAssembler,
    fragment,
)
from router.net.dimse_messages import (
    MESSAGE_TYPES,
    CCancelRQ,
    CEchoRQ,
    CEchoRSP,
    CFindRSP,
    CommandField,
    CMoveRQ,
    CMoveRSP,
    CStoreRQ,
    CStoreRSP,
    DecodedCommand,
    NActionRQ,
    NEventReportRSP,
    NGetRQ,
    Priority,
    command_dataset,
    decode_command,
    encode_command,
    status_dataset,
)
from router.net.errors import DimseError
from router.net.pdu import PDV

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"


def h(text: str) -> bytes:
    """Bytes from hex written one element per line, with '#' comments."""
    return bytes.fromhex("".join(line.split("#")[0] for line in text.splitlines()))


# Reference section 3.7: C-ECHO-RQ, MessageID 1, no data set.
C_ECHO_RQ = h("""
    00 00 00 00 04 00 00 00 38 00 00 00  # (0000,0000) UL 4: group length 56
    00 00 02 00 12 00 00 00 31 2E 32 2E 38 34 30 2E 31 30 30 30 38 2E 31 2E 31 00
                                         # (0000,0002) UI 18: "1.2.840.10008.1.1" + NUL
    00 00 00 01 02 00 00 00 30 00        # (0000,0100) US: C-ECHO-RQ 0x0030
    00 00 10 01 02 00 00 00 01 00        # (0000,0110) US: MessageID 1
    00 00 00 08 02 00 00 00 01 01        # (0000,0800) US: no data set 0x0101
""")

C_ECHO_RSP = h("""
    00 00 00 00 04 00 00 00 42 00 00 00  # group length 66
    00 00 02 00 12 00 00 00 31 2E 32 2E 38 34 30 2E 31 30 30 30 38 2E 31 2E 31 00
                                         # AffectedSOPClassUID Verification
    00 00 00 01 02 00 00 00 30 80        # CommandField C-ECHO-RSP 0x8030
    00 00 20 01 02 00 00 00 01 00        # (0000,0120) MessageIDBeingRespondedTo 1
    00 00 00 08 02 00 00 00 01 01        # no data set
    00 00 00 09 02 00 00 00 00 00        # (0000,0900) Status 0x0000 success
""")

C_STORE_RQ = h("""
    00 00 00 00 04 00 00 00 74 00 00 00  # group length 116
    00 00 02 00 1A 00 00 00 31 2E 32 2E 38 34 30 2E 31 30 30 30 38 2E 35 2E 31 2E 34 2E
    31 2E 31 2E 32 00                    # UI 26: CT Image Storage (25 chars) + NUL
    00 00 00 01 02 00 00 00 01 00        # CommandField C-STORE-RQ 0x0001
    00 00 10 01 02 00 00 00 07 00        # MessageID 7
    00 00 00 07 02 00 00 00 00 00        # (0000,0700) Priority MEDIUM
    00 00 00 08 02 00 00 00 01 00        # data set present 0x0001
    00 00 00 10 08 00 00 00 31 2E 32 2E 33 2E 34 00
                                         # (0000,1000) AffectedSOPInstanceUID "1.2.3.4" + NUL
    00 00 30 10 08 00 00 00 4D 4F 56 45 53 43 55 20
                                         # (0000,1030) AE "MOVESCU" + space
    00 00 31 10 02 00 00 00 03 00        # (0000,1031) MoveOriginatorMessageID 3
""")

C_STORE_RSP_FAILURE = h("""
    00 00 00 00 04 00 00 00 72 00 00 00  # group length 114
    00 00 02 00 1A 00 00 00 31 2E 32 2E 38 34 30 2E 31 30 30 30 38 2E 35 2E 31 2E 34 2E
    31 2E 31 2E 32 00                    # CT Image Storage
    00 00 00 01 02 00 00 00 01 80        # CommandField C-STORE-RSP 0x8001
    00 00 20 01 02 00 00 00 07 00        # MessageIDBeingRespondedTo 7
    00 00 00 08 02 00 00 00 01 01        # no data set
    00 00 00 09 02 00 00 00 00 A9        # Status 0xA900 data set does not match SOP class
    00 00 01 09 04 00 00 00 10 00 10 00  # (0000,0901) AT OffendingElement (0010,0010)
    00 00 02 09 04 00 00 00 42 61 64 20  # (0000,0902) LO ErrorComment "Bad" + space
    00 00 00 10 08 00 00 00 31 2E 32 2E 33 2E 34 00
                                         # AffectedSOPInstanceUID "1.2.3.4"
""")

C_FIND_RSP_PENDING = h("""
    00 00 00 00 04 00 00 00 4C 00 00 00  # group length 76
    00 00 02 00 1C 00 00 00 31 2E 32 2E 38 34 30 2E 31 30 30 30 38 2E 35 2E 31 2E 34 2E
    31 2E 32 2E 32 2E 31 00              # UI 28: Study Root FIND (27 chars) + NUL
    00 00 00 01 02 00 00 00 20 80        # CommandField C-FIND-RSP 0x8020
    00 00 20 01 02 00 00 00 05 00        # MessageIDBeingRespondedTo 5
    00 00 00 08 02 00 00 00 01 00        # data set (the matching identifier) present
    00 00 00 09 02 00 00 00 00 FF        # Status 0xFF00 pending
""")

C_CANCEL_RQ = h("""
    00 00 00 00 04 00 00 00 1E 00 00 00  # group length 30
    00 00 00 01 02 00 00 00 FF 0F        # CommandField C-CANCEL-RQ 0x0FFF
    00 00 20 01 02 00 00 00 05 00        # MessageIDBeingRespondedTo 5: the C-FIND to cancel
    00 00 00 08 02 00 00 00 01 01        # no data set
""")

N_ACTION_RQ = h("""
    00 00 00 00 04 00 00 00 62 00 00 00  # group length 98
    00 00 03 00 14 00 00 00 31 2E 32 2E 38 34 30 2E 31 30 30 30 38 2E 31 2E 32 30 2E 31
                                         # (0000,0003) RequestedSOPClassUID Storage Commitment
    00 00 00 01 02 00 00 00 30 01        # CommandField N-ACTION-RQ 0x0130
    00 00 10 01 02 00 00 00 09 00        # MessageID 9
    00 00 00 08 02 00 00 00 01 00        # data set (action information) present
    00 00 01 10 16 00 00 00 31 2E 32 2E 38 34 30 2E 31 30 30 30 38 2E 31 2E 32 30 2E 31
    2E 31                                # (0000,1001) RequestedSOPInstanceUID (22 chars)
    00 00 08 10 02 00 00 00 01 00        # (0000,1008) ActionTypeID 1: request commitment
""")

VECTORS = [
    (CEchoRQ(message_id=1), False, C_ECHO_RQ),
    (CEchoRSP(1, 0x0000, "1.2.840.10008.1.1"), False, C_ECHO_RSP),
    (
        CStoreRQ(7, CT_IMAGE_STORAGE, "1.2.3.4", Priority.MEDIUM, "MOVESCU", 3),
        True,
        C_STORE_RQ,
    ),
    (
        CStoreRSP(
            7,
            0xA900,
            CT_IMAGE_STORAGE,
            "1.2.3.4",
            offending_element=(0x00100010,),
            error_comment="Bad",
        ),
        False,
        C_STORE_RSP_FAILURE,
    ),
    (CFindRSP(5, 0xFF00, STUDY_ROOT_FIND), True, C_FIND_RSP_PENDING),
    (CCancelRQ(message_id_being_responded_to=5), False, C_CANCEL_RQ),
    (NActionRQ(9, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE, 1), True, N_ACTION_RQ),
]
VECTOR_IDS = [type(message).__name__ for message, _, _ in VECTORS]


@pytest.mark.parametrize(("message", "has_dataset", "expected"), VECTORS, ids=VECTOR_IDS)
def test_encode_command_is_byte_exact(message, has_dataset, expected):
    assert encode_command(message, has_dataset) == expected


@pytest.mark.parametrize(("message", "has_dataset", "expected"), VECTORS, ids=VECTOR_IDS)
def test_decode_command_gives_the_message_back(message, has_dataset, expected):
    assert decode_command(expected) == DecodedCommand(message, has_dataset)
    assert decode_command(memoryview(expected)) == DecodedCommand(message, has_dataset)


def test_c_echo_rq_wrapped_in_one_p_data_tf():
    from router.net.pdu import encode

    (pdu,) = fragment(1, C_ECHO_RQ, None, 16384)
    assert len(C_ECHO_RQ) == 68
    assert [(p.context_id, p.is_command, p.is_last, bytes(p.data)) for p in pdu.pdvs] == [
        (1, True, True, C_ECHO_RQ)
    ]
    # PDU type 4, length 74 | PDV item length 70, context 1, MCH 0x03 | command set
    assert encode(pdu) == h("04 00 00 00 00 4A  00 00 00 46 01 03") + C_ECHO_RQ


def test_every_message_type_is_registered():
    assert len(MESSAGE_TYPES) == 23
    assert set(MESSAGE_TYPES) == set(CommandField)
    for field, cls in MESSAGE_TYPES.items():
        assert cls.command_field == field


# --- decoding: tolerated input ------------------------------------------------------------


def _element(element: int, value: bytes) -> bytes:
    """One group-0000 element in Implicit VR LE."""
    return b"\x00\x00" + element.to_bytes(2, "little") + len(value).to_bytes(4, "little") + value


def test_element_helper_layout():
    assert _element(0x0100, b"\x30\x00") == h("00 00 00 01 02 00 00 00 30 00")


def test_retired_and_unknown_elements_are_ignored():
    extra = (
        _element(0x0001, b"\x00\x00\x00\x00")  # retired CommandLengthToEnd
        + _element(0x4000, b"retired ")  # retired CommandComments
        + _element(0x5555, b"??")  # not in any dictionary
    )
    data = C_ECHO_RQ[:12] + extra[:12] + C_ECHO_RQ[12:] + extra[12:]
    assert decode_command(data) == DecodedCommand(CEchoRQ(1), False)


def test_any_data_set_type_but_0101_means_a_data_set_follows():
    legacy = C_FIND_RSP_PENDING.replace(h("00 08 02 00 00 00 01 00"), h("00 08 02 00 00 00 02 01"))
    assert decode_command(legacy) == DecodedCommand(CFindRSP(5, 0xFF00, STUDY_ROOT_FIND), True)


def test_zero_length_optional_element_is_absent_and_padding_is_stripped():
    data = C_ECHO_RSP + _element(0x0902, b"") + _element(0x0901, b"")
    assert decode_command(data) == DecodedCommand(CEchoRSP(1, 0, "1.2.840.10008.1.1"), False)
    spaced = C_ECHO_RSP[:20] + b"1.2.840.10008.1.1 " + C_ECHO_RSP[38:]
    assert decode_command(spaced) == decode_command(C_ECHO_RSP)


def test_group_length_and_its_value_are_not_required():
    assert decode_command(C_ECHO_RQ[12:]) == DecodedCommand(CEchoRQ(1), False)
    wrong = C_ECHO_RQ[:8] + b"\xff\x00\x00\x00" + C_ECHO_RQ[12:]
    assert decode_command(wrong) == DecodedCommand(CEchoRQ(1), False)


def test_non_ascii_text_is_kept_byte_for_byte():
    data = C_ECHO_RSP + _element(0x0902, b"Fehler \xe4")  # not the default repertoire
    decoded = decode_command(data)
    assert isinstance(decoded, DecodedCommand)
    assert decoded.message.error_comment == "Fehler \u00e4"
    assert encode_command(decoded.message, False)[12:] == data[12:]


def test_unknown_priority_is_kept():
    data = C_STORE_RQ.replace(h("00 07 02 00 00 00 00 00"), h("00 07 02 00 00 00 07 00"))
    decoded = decode_command(data)
    assert isinstance(decoded, DecodedCommand)
    assert decoded.message.priority == 7
    assert decoded.message.priority.name == "RESERVED_7"


# --- decoding: errors are values --------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (C_ECHO_RQ.replace(h("30 00 00 00 10 01"), h("31 00 00 00 10 01")), "0x0031"),
        (C_ECHO_RQ[:-10], "command_data_set_type"),
        (C_ECHO_RQ[:12] + C_ECHO_RQ[38:], "affected_sop_class_uid"),
        (C_ECHO_RQ[:38] + C_ECHO_RQ[48:], "command_field"),
        (C_STORE_RQ[:86] + C_STORE_RQ[102:], "affected_sop_instance_uid"),
        (C_ECHO_RQ[:-1], "only 1 bytes remain"),
        (C_ECHO_RQ[:-3], "inside an element header"),
        (C_ECHO_RQ[:4] + b"\xff\xff\xff\xff" + C_ECHO_RQ[8:], "4294967295"),
        (C_ECHO_RQ + h("08 00 16 00 02 00 00 00 41 42"), "not a command element"),
        (C_ECHO_RSP[:-10] + _element(0x0900, bytes(4)), "status: US value of 4 bytes"),
        (
            C_STORE_RSP_FAILURE.replace(
                h("00 00 01 09 04 00 00 00 10 00 10 00"), _element(0x0901, h("10 00"))
            ),
            "offending_element: AT value of 2 bytes",
        ),
        (C_ECHO_RQ[:20] + bytes(18) + C_ECHO_RQ[38:], "affected_sop_class_uid"),
        (b"", "command_field"),
    ],
    ids=[
        "unknown-command-field",
        "no-data-set-type",
        "echo-without-sop-class",
        "no-command-field",
        "store-without-instance",
        "value-past-end",
        "truncated-header",
        "undefined-length",
        "data-element-in-command",
        "us-of-four-bytes",
        "at-of-two-bytes",
        "uid-of-padding-only",
        "empty",
    ],
)
def test_bad_command_sets_return_a_dimse_error(data, words):
    result = decode_command(data)
    assert isinstance(result, DimseError)
    assert words in str(result)


# --- encoding: caller errors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "words"),
    [
        (CStoreRQ(1, CT_IMAGE_STORAGE, ""), "affected_sop_instance_uid is mandatory"),
        (CEchoRQ(1, ""), "affected_sop_class_uid is mandatory"),
        (CEchoRQ(65536), "message_id=65536"),
        (CEchoRSP(1, 0, error_comment="10 \u20ac"), "error_comment"),
        (CMoveRQ(1, STUDY_ROOT_MOVE, "A_VERY_LONG_AE_TITLE"), "longer than 16"),
    ],
)
def test_invalid_messages_raise_value_error_on_encode(message, words):
    with pytest.raises(ValueError, match=words):
        encode_command(message, False)


# --- cross-check with pydicom -------------------------------------------------------------

PYDICOM_CASES = [
    (CEchoRQ(1), False, {"MessageID": 1, "AffectedSOPClassUID": "1.2.840.10008.1.1"}),
    (
        CMoveRQ(3, STUDY_ROOT_MOVE, "STORESCP", Priority.HIGH),
        True,
        {
            "MessageID": 3,
            "AffectedSOPClassUID": STUDY_ROOT_MOVE,
            "MoveDestination": "STORESCP",
            "Priority": 1,
        },
    ),
    (
        CMoveRSP(3, 0xFF00, STUDY_ROOT_MOVE, 4, 1, 0, 0),
        False,
        {
            "MessageIDBeingRespondedTo": 3,
            "Status": 0xFF00,
            "AffectedSOPClassUID": STUDY_ROOT_MOVE,
            "NumberOfRemainingSuboperations": 4,
            "NumberOfCompletedSuboperations": 1,
            "NumberOfFailedSuboperations": 0,
            "NumberOfWarningSuboperations": 0,
        },
    ),
    (
        NGetRQ(2, STORAGE_COMMITMENT, "1.2.3", (0x00100010, 0x7FE00010)),
        False,
        {
            "MessageID": 2,
            "RequestedSOPClassUID": STORAGE_COMMITMENT,
            "RequestedSOPInstanceUID": "1.2.3",
            "AttributeIdentifierList": [0x00100010, 0x7FE00010],
        },
    ),
    (
        NEventReportRSP(4, 0x0110, error_comment="disk full", error_id=42, event_type_id=2),
        False,
        {
            "MessageIDBeingRespondedTo": 4,
            "Status": 0x0110,
            "ErrorComment": "disk full",
            "ErrorID": 42,
            "EventTypeID": 2,
        },
    ),
]
PYDICOM_IDS = [type(message).__name__ for message, _, _ in PYDICOM_CASES]


def _pydicom_command(message, has_dataset, keywords) -> bytes:
    """The command set as pydicom writes it (Implicit VR LE), with a group length we compute."""
    dataset = Dataset()
    for keyword, value in keywords.items():
        setattr(dataset, keyword, value)
    dataset.CommandField = message.command_field
    dataset.CommandDataSetType = 0x0001 if has_dataset else 0x0101
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, True
    write_dataset(body, dataset)
    dataset.CommandGroupLength = len(body.getvalue())
    whole = DicomBytesIO()
    whole.is_little_endian, whole.is_implicit_VR = True, True
    write_dataset(whole, dataset)
    return whole.getvalue()


@pytest.mark.parametrize(("message", "has_dataset", "keywords"), PYDICOM_CASES, ids=PYDICOM_IDS)
def test_pydicom_writes_what_we_write(message, has_dataset, keywords):
    reference = _pydicom_command(message, has_dataset, keywords)
    assert encode_command(message, has_dataset) == reference
    assert decode_command(reference) == DecodedCommand(message, has_dataset)


@pytest.mark.parametrize(("message", "has_dataset", "keywords"), PYDICOM_CASES, ids=PYDICOM_IDS)
def test_pydicom_reads_what_we_write(message, has_dataset, keywords):
    read = read_dataset(io.BytesIO(encode_command(message, has_dataset)), True, True)
    assert read.CommandField == message.command_field
    for keyword, value in keywords.items():
        assert read[keyword].value == value
    assert command_dataset(message, has_dataset) == read[0x00000001:]


def test_status_dataset_holds_the_present_response_fields():
    response = CStoreRSP(7, 0xA900, CT_IMAGE_STORAGE, error_comment="Bad", error_id=12)
    status = status_dataset(response)
    assert status.Status == 0xA900
    assert status.MessageIDBeingRespondedTo == 7
    assert status.AffectedSOPClassUID == CT_IMAGE_STORAGE
    assert status.ErrorComment == "Bad"
    assert status.ErrorID == 12
    assert "AffectedSOPInstanceUID" not in status
    assert "OffendingElement" not in status
    assert "CommandField" not in status
    with pytest.raises(TypeError):
        status_dataset(CEchoRQ(1))


def test_command_dataset_includes_field_and_data_set_type():
    dataset = command_dataset(CEchoRQ(1))
    assert dataset.CommandField == CommandField.C_ECHO_RQ
    assert dataset.CommandDataSetType == 0x0101
    assert dataset.MessageID == 1


# --- cross-check with pynetdicom's message layer -------------------------------------------


def test_pynetdicom_decodes_our_fragments():
    from pynetdicom.dimse_messages import DIMSEMessage
    from pynetdicom.pdu_primitives import P_DATA

    dataset = bytes(range(256)) * 40
    message = CStoreRQ(7, CT_IMAGE_STORAGE, "1.2.3.4", Priority.LOW, "MOVESCU", 3)
    peer = DIMSEMessage()
    complete = False
    for pdu in fragment(3, encode_command(message, True), dataset, 4096):
        primitive = P_DATA()
        primitive.presentation_data_value_list = [
            [p.context_id, bytes([p.is_command | p.is_last << 1]) + bytes(p.data)]
            for p in pdu.pdvs
        ]
        complete = peer.decode_msg(primitive)
    assert complete
    assert type(peer).__name__ == "C_STORE_RQ"
    assert peer.context_id == 3
    assert peer.command_set.MoveOriginatorApplicationEntityTitle == "MOVESCU"
    assert peer.command_set.Priority == 2
    assert peer.data_set.getvalue() == dataset


def test_we_decode_pynetdicom_fragments():
    from pynetdicom.dimse_messages import C_FIND_RSP
    from pynetdicom.dimse_primitives import C_FIND

    primitive = C_FIND()
    primitive.MessageIDBeingRespondedTo = 5
    primitive.Status = 0xFF00
    primitive.AffectedSOPClassUID = STUDY_ROOT_FIND
    primitive.Identifier = io.BytesIO(b"\x10\x00\x10\x00\x04\x00\x00\x00DOE^")
    outgoing = C_FIND_RSP()
    outgoing.primitive_to_message(primitive)
    assembler = MessageAssembler()
    results = []
    for p_data in outgoing.encode_msg(1, 64):
        for context_id, data in p_data.presentation_data_value_list:
            pdv = PDV(context_id, bool(data[0] & 1), bool(data[0] & 2), memoryview(data)[1:])
            results.append(assembler.feed(pdv))
    assert results[:-1] == [None] * (len(results) - 1)
    assert results[-1].message == CFindRSP(5, 0xFF00, STUDY_ROOT_FIND)
    assert results[-1].dataset == b"\x10\x00\x10\x00\x04\x00\x00\x00DOE^"


# --- fragmentation -----------------------------------------------------------------------


def _pdu_length(pdu) -> int:
    return sum(PDV_HEADER_LENGTH + len(p.data) for p in pdu.pdvs)


def _pdvs(pdus) -> list:
    return [pdv for pdu in pdus for pdv in pdu.pdvs]


STORE = CStoreRQ(7, CT_IMAGE_STORAGE, "1.2.3.4")
STORE_COMMAND = encode_command(STORE, True)


@pytest.mark.parametrize("max_pdu", [MIN_PDU_LENGTH, 4096, 4097, 16384, 0])
def test_fragments_obey_the_peer_maximum_and_are_even(max_pdu):
    dataset = bytes(range(256)) * 200  # 51200 bytes
    pdus = list(fragment(5, STORE_COMMAND, dataset, max_pdu))
    limit = max_pdu or DEFAULT_PDU_LENGTH
    assert all(_pdu_length(pdu) <= limit for pdu in pdus)
    pdvs = _pdvs(pdus)
    assert all(len(p.data) % 2 == 0 and p.context_id == 5 for p in pdvs)
    commands = [p for p in pdvs if p.is_command]
    assert pdvs[: len(commands)] == commands  # the command set goes first
    assert b"".join(bytes(p.data) for p in commands) == STORE_COMMAND
    assert b"".join(bytes(p.data) for p in pdvs[len(commands) :]) == dataset
    assert [p.is_last for p in commands] == [False] * (len(commands) - 1) + [True]
    data = pdvs[len(commands) :]
    assert [p.is_last for p in data] == [False] * (len(data) - 1) + [True]


def test_full_pdus_are_used_so_the_pdu_count_is_minimal():
    dataset = bytes(100_000)
    pdus = list(fragment(1, STORE_COMMAND, dataset, 16384))
    payload = len(STORE_COMMAND) + len(dataset) + 2 * PDV_HEADER_LENGTH
    assert len(pdus) == -(-payload // (16384 - PDV_HEADER_LENGTH))
    assert [len(pdu.pdvs) for pdu in pdus] == [2] + [1] * (len(pdus) - 1)
    assert all(_pdu_length(pdu) == 16384 for pdu in pdus[:-1])


def test_small_message_travels_in_one_pdu_with_two_pdvs():
    (pdu,) = fragment(1, STORE_COMMAND, b"\x08\x00\x18\x00\x02\x00\x00\x001\x00", 16384)
    assert [(p.is_command, p.is_last) for p in pdu.pdvs] == [(True, True), (False, True)]


def test_data_set_fragments_are_views_of_the_callers_buffer():
    dataset = bytearray(10_000)
    pdvs = _pdvs(fragment(1, STORE_COMMAND, dataset, 4096))
    data = [p.data for p in pdvs if not p.is_command]
    assert all(isinstance(d, memoryview) and d.obj is dataset for d in data)


def test_command_only_message_and_empty_data_set():
    assert _pdvs(fragment(1, C_ECHO_RQ, None, 0)) == [PDV(1, True, True, C_ECHO_RQ)]
    pdvs = _pdvs(fragment(1, STORE_COMMAND, b"", 4096))
    assert [(p.is_command, p.is_last, bytes(p.data)) for p in pdvs[-1:]] == [(False, True, b"")]


@pytest.mark.parametrize(
    ("context_id", "command", "dataset", "max_pdu", "words"),
    [
        (1, STORE_COMMAND, b"abc", 4096, "data set has odd length 3"),
        (1, b"abc", None, 4096, "command set has odd length 3"),
        (2, STORE_COMMAND, None, 4096, "context id 2"),
        (257, STORE_COMMAND, None, 4096, "context id 257"),
        (1, STORE_COMMAND, None, MIN_PDU_LENGTH - 1, "below"),
    ],
)
def test_fragment_rejects_invalid_arguments(context_id, command, dataset, max_pdu, words):
    with pytest.raises(ValueError, match=words):
        fragment(context_id, command, dataset, max_pdu)  # before any PDU is asked for


# --- reassembly --------------------------------------------------------------------------


def _feed_all(assembler, pdvs) -> list:
    return [assembler.feed(pdv) for pdv in pdvs]


@pytest.mark.parametrize("max_pdu", [MIN_PDU_LENGTH + 30, 4096, 0])
def test_reassembly_round_trip(max_pdu):
    dataset = bytes(range(256)) * 50
    assembler = MessageAssembler()
    results = _feed_all(assembler, _pdvs(fragment(3, STORE_COMMAND, dataset, max_pdu)))
    assert results[:-1] == [None] * (len(results) - 1)
    assert results[-1] == AssembledMessage(3, STORE, dataset)
    assert not assembler.in_progress
    echo = _feed_all(assembler, _pdvs(fragment(1, C_ECHO_RQ, None, max_pdu)))
    assert echo[-1] == AssembledMessage(1, CEchoRQ(1), None)


def test_default_sink_joins_the_fragments_it_kept():
    assembler = MessageAssembler()
    assert assembler.feed(PDV(1, True, True, STORE_COMMAND)) is None
    assert assembler.feed(PDV(1, False, False, memoryview(b"\x01\x02"))) is None
    result = assembler.feed(PDV(1, False, True, memoryview(b"\xff\xff")))
    assert result == AssembledMessage(1, STORE, b"\x01\x02\xff\xff")


class RecordingSink:
    """A streaming sink: records what it is given, keeps no reference to the fragments."""

    def __init__(self, context_id, message) -> None:
        self.opened = (context_id, message)
        self.writes: list[bytes] = []
        self.finished = 0

    def write(self, fragment: memoryview) -> None:
        assert isinstance(fragment, memoryview)
        self.writes.append(bytes(fragment))

    def finish(self) -> object:
        self.finished += 1
        return self


def test_streaming_sink_sees_every_byte_once_in_order():
    sinks: list[RecordingSink] = []

    def factory(context_id, message):
        sinks.append(RecordingSink(context_id, message))
        return sinks[-1]

    dataset = bytes(range(256)) * 64
    assembler = MessageAssembler(dataset_sink=factory)
    results = _feed_all(assembler, _pdvs(fragment(5, STORE_COMMAND, dataset, 4096)))
    (sink,) = sinks
    assert sink.opened == (5, STORE)
    assert b"".join(sink.writes) == dataset
    assert len(sink.writes) == 5
    assert sink.finished == 1
    assert results[-1] == AssembledMessage(5, STORE, sink)


VIOLATIONS = [
    ([PDV(1, False, True, b"ab")], "before its command set"),
    ([PDV(1, True, False, C_ECHO_RQ[:12]), PDV(1, False, True, b"ab")], "before its command set"),
    ([PDV(1, True, True, STORE_COMMAND), PDV(1, True, True, C_ECHO_RQ)], "data set is open"),
    ([PDV(1, True, False, C_ECHO_RQ[:12]), PDV(3, True, True, C_ECHO_RQ[12:])], "context 3"),
    ([PDV(1, True, True, STORE_COMMAND), PDV(3, False, True, b"ab")], "context 3"),
    ([PDV(1, True, True, C_ECHO_RQ[:-2])], "undecodable command set"),
    ([PDV(1, True, False, bytes(MAX_COMMAND_LENGTH)), PDV(1, True, True, b"ab")], "longer than"),
]


@pytest.mark.parametrize(("pdvs", "words"), VIOLATIONS)
def test_protocol_violations_return_a_dimse_error_and_reset(pdvs, words):
    assembler = MessageAssembler()
    results = _feed_all(assembler, pdvs)
    assert results[:-1] == [None] * (len(pdvs) - 1)
    assert isinstance(results[-1], DimseError)
    assert words in str(results[-1])
    assert not assembler.in_progress
    assert assembler.feed(PDV(1, True, True, C_ECHO_RQ)) == AssembledMessage(1, CEchoRQ(1), None)


def test_status_datasets_are_ordinary_independent_datasets():
    """status_dataset skips Dataset.__init__ for speed; the result must behave like any Dataset."""
    from pydicom.dataset import Dataset

    response = CEchoRSP(7, 0x0110, affected_sop_class_uid="1.2.840.10008.1.1", error_comment="disk full")
    first, second = status_dataset(response), status_dataset(response)
    expected = Dataset()
    expected.AffectedSOPClassUID = "1.2.840.10008.1.1"
    expected.MessageIDBeingRespondedTo = 7
    expected.Status = 0x0110
    expected.ErrorComment = "disk full"
    assert first == expected and second == expected
    first.PatientName = "CHANGED"
    first.private_block(0x0009, "ROUTER", create=True)
    assert "PatientName" not in second and second == expected
    assert Dataset() == Dataset()  # the empty state the fast path copies is untouched
    assert len(Dataset()) == 0
