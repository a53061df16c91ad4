"""DIMSE status codes (router.net.status): every range of PS3.7 Annex C, their wording, and each service's own names."""

from __future__ import annotations

import pytest

from router.net import sop_class
from router.net.status import (
    CANCEL,
    CANNOT_UNDERSTAND,
    COERCION_OF_DATA_ELEMENTS,
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING,
    DOES_NOT_MATCH_SOP_CLASS,
    DUPLICATE_TRANSACTION_UID,
    ELEMENTS_DISCARDED,
    GENERAL_STATUS_NAMES,
    MOVE_DESTINATION_UNKNOWN,
    OUT_OF_RESOURCES,
    OUT_OF_RESOURCES_NUMBER_OF_MATCHES,
    OUT_OF_RESOURCES_SUB_OPERATIONS,
    PENDING,
    PENDING_WARNING,
    PROCESSING_FAILURE,
    SERVICE_STATUS_NAMES,
    SOP_CLASS_NOT_SUPPORTED,
    SUB_OPERATIONS_WITH_FAILURES,
    SUCCESS,
    UNABLE_TO_PROCESS,
    UNRECOGNIZED_OPERATION,
    Service,
    StatusClass,
    classify,
    describe,
    service_of,
    status_name,
)

WARNING_CODES = (0x0001, 0x0107, 0x0116)


def test_named_constants_have_their_standard_values():
    assert (SUCCESS, CANCEL, PENDING, PENDING_WARNING) == (0x0000, 0xFE00, 0xFF00, 0xFF01)


def test_success():
    assert classify(0x0000) is StatusClass.SUCCESS


@pytest.mark.parametrize("code", [0xFF00, 0xFF01])
def test_pending(code):
    assert classify(code) is StatusClass.PENDING


def test_cancel():
    assert classify(0xFE00) is StatusClass.CANCEL


@pytest.mark.parametrize("code", WARNING_CODES)
def test_general_warnings(code):
    assert classify(code) is StatusClass.WARNING


@pytest.mark.parametrize("code", [0xB000, 0xB007, 0xB123, 0xBFFF])
def test_bxxx_is_warning(code):
    assert classify(code) is StatusClass.WARNING


@pytest.mark.parametrize("code", [0xA000, 0xA700, 0xA801, 0xAFFF])
def test_axxx_is_failure(code):
    assert classify(code) is StatusClass.FAILURE


@pytest.mark.parametrize("code", [0xC000, 0xC001, 0xC123, 0xCFFF])
def test_cxxx_is_failure(code):
    assert classify(code) is StatusClass.FAILURE


@pytest.mark.parametrize("code", [0x0100, 0x0105, 0x0106, 0x0110, 0x0112, 0x0122, 0x0124, 0x01FF])
def test_01xx_is_failure_except_the_listed_warnings(code):
    assert code not in WARNING_CODES
    assert classify(code) is StatusClass.FAILURE


@pytest.mark.parametrize("code", [0x0200, 0x0210, 0x0211, 0x0212, 0x0213, 0x02FF])
def test_02xx_is_failure(code):
    assert classify(code) is StatusClass.FAILURE


@pytest.mark.parametrize("code", [0x0002, 0x0300, 0x1234, 0x9000, 0xD000, 0xE000, 0xFE01, 0xFF02, 0xFFFF])
def test_unknown_codes_count_as_failures(code):
    assert classify(code) is StatusClass.FAILURE


def test_every_named_code_is_classified_consistently_with_its_name():
    for code, name in GENERAL_STATUS_NAMES.items():
        category = classify(code)
        if name.startswith("Warning") or code in WARNING_CODES:
            assert category is StatusClass.WARNING, hex(code)
        elif name.startswith("Pending"):
            assert category is StatusClass.PENDING, hex(code)
        elif code in (SUCCESS, CANCEL):
            assert category in (StatusClass.SUCCESS, StatusClass.CANCEL), hex(code)
        else:
            assert category is StatusClass.FAILURE, hex(code)


@pytest.mark.parametrize(
    "code, text",
    [
        (0x0000, "0x0000 - Success"),
        (0x0110, "0x0110 - Processing failure"),
        (0x0211, "0x0211 - Unrecognized operation"),
        (0x0122, "0x0122 - Refused: SOP class not supported"),
        (0xFE00, "0xFE00 - Cancel"),
        (0xFF00, "0xFF00 - Pending"),
        (0xFF01, "0xFF01 - Pending: one or more optional keys not supported"),
        (0xB000, "0xB000 - Warning"),
        (0xA700, "0xA700 - Failure"),
        (0xC123, "0xC123 - Failure"),
        (0x1234, "0x1234 - Failure"),
        (0x0001, "0x0001 - Warning: requested optional attributes are not supported"),
    ],
)
def test_describe(code, text):
    assert describe(code) == text


def test_describe_pads_to_four_upper_case_hex_digits():
    assert describe(0xb00a) == "0xB00A - Warning"
    assert describe(0x7) == "0x0007 - Failure"


# Service-specific names (PS3.4 B.2.3, C.4.1.1.4, C.4.2.1.5, C.4.3.1.4; PS3.3 C.14.1.1).

NAME_PREFIX_CLASS = {
    "Success": StatusClass.SUCCESS,
    "Warning": StatusClass.WARNING,
    "Pending": StatusClass.PENDING,
    "Cancel": StatusClass.CANCEL,
    "Refused": StatusClass.FAILURE,
    "Error": StatusClass.FAILURE,
    "Failed": StatusClass.FAILURE,
}


def test_service_specific_constants_have_their_standard_values():
    assert (OUT_OF_RESOURCES, OUT_OF_RESOURCES_NUMBER_OF_MATCHES, OUT_OF_RESOURCES_SUB_OPERATIONS) == (
        0xA700,
        0xA701,
        0xA702,
    )
    assert (MOVE_DESTINATION_UNKNOWN, DOES_NOT_MATCH_SOP_CLASS) == (0xA801, 0xA900)
    assert (CANNOT_UNDERSTAND, UNABLE_TO_PROCESS) == (0xC000, 0xC000)
    assert (COERCION_OF_DATA_ELEMENTS, SUB_OPERATIONS_WITH_FAILURES) == (0xB000, 0xB000)
    assert (ELEMENTS_DISCARDED, DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING) == (0xB006, 0xB007)
    assert (PROCESSING_FAILURE, SOP_CLASS_NOT_SUPPORTED, UNRECOGNIZED_OPERATION) == (0x0110, 0x0122, 0x0211)
    assert DUPLICATE_TRANSACTION_UID == 0x0131


@pytest.mark.parametrize(
    "code, text",
    [
        (0xA700, "0xA700 - Refused: out of resources"),
        (0xA7FF, "0xA7FF - Refused: out of resources"),
        (0xA900, "0xA900 - Error: data set does not match SOP class"),
        (0xA9AB, "0xA9AB - Error: data set does not match SOP class"),
        (0xC000, "0xC000 - Error: cannot understand"),
        (0xC211, "0xC211 - Error: cannot understand"),
        (0xCFFF, "0xCFFF - Error: cannot understand"),
        (0xB000, "0xB000 - Warning: coercion of data elements"),
        (0xB006, "0xB006 - Warning: elements discarded"),
        (0xB007, "0xB007 - Warning: data set does not match SOP class"),
        (0x0122, "0x0122 - Refused: SOP class not supported"),
        (0x0000, "0x0000 - Success"),
        (0xA800, "0xA800 - Failure"),
        (0xB001, "0xB001 - Warning"),
    ],
)
def test_storage_names(code, text):
    assert describe(code, Service.STORAGE) == text


OUT_OF_RESOURCES_TEXT = "Refused: out of resources"
MATCHES_TEXT = "Refused: out of resources, unable to calculate number of matches"
SUB_OPERATIONS_TEXT = "Refused: out of resources, unable to perform sub-operations"
IDENTIFIER_TEXT = "Failed: identifier does not match SOP class"
UNABLE_TEXT = "Failed: unable to process"
CONTINUING_TEXT = "Pending: sub-operations are continuing"
NO_FAILURES_TEXT = "Success: sub-operations complete, no failures"
SUB_CANCEL_TEXT = "Cancel: sub-operations terminated"


@pytest.mark.parametrize(
    "code, find, move, get",
    [
        (0xA700, OUT_OF_RESOURCES_TEXT, "Failure", "Failure"),
        (0xA701, "Failure", MATCHES_TEXT, MATCHES_TEXT),
        (0xA702, "Failure", SUB_OPERATIONS_TEXT, SUB_OPERATIONS_TEXT),
        (0xA801, "Failure", "Refused: move destination unknown", "Failure"),
        (0xA900, IDENTIFIER_TEXT, IDENTIFIER_TEXT, IDENTIFIER_TEXT),
        (
            0xB000,
            "Warning",
            "Warning: sub-operations complete, one or more failures",
            "Warning: sub-operations complete, one or more failures or warnings",
        ),
        (0xC000, UNABLE_TEXT, UNABLE_TEXT, UNABLE_TEXT),
        (0xC123, UNABLE_TEXT, UNABLE_TEXT, UNABLE_TEXT),
        (0xCFFF, UNABLE_TEXT, UNABLE_TEXT, UNABLE_TEXT),
        (0xFE00, "Cancel: matching terminated", SUB_CANCEL_TEXT, SUB_CANCEL_TEXT),
        (0x0000, "Success: matching complete", NO_FAILURES_TEXT, NO_FAILURES_TEXT),
        (
            0xFF00,
            "Pending: match supplied, optional keys supported like required keys",
            CONTINUING_TEXT,
            CONTINUING_TEXT,
        ),
    ],
)
def test_query_retrieve_names(code, find, move, get):
    assert status_name(code, Service.QR_FIND) == find
    assert status_name(code, Service.QR_MOVE) == move
    assert status_name(code, Service.QR_GET) == get


def test_find_names_the_pending_warning():
    text = "0xFF01 - Pending: match supplied, one or more optional keys not supported"
    assert describe(0xFF01, Service.QR_FIND) == text


@pytest.mark.parametrize("code", [0xA700, 0xA900, 0xC001, 0xFE00, 0xFF00, 0xFF01, 0x0000])
def test_modality_worklist_uses_the_find_names(code):
    assert status_name(code, Service.MODALITY_WORKLIST) == status_name(code, Service.QR_FIND)


@pytest.mark.parametrize("code", [0xAA00, 0xAA01, 0xAA02, 0xAA03, 0xAA04])
def test_frame_level_retrieve_failures_are_named_for_move_and_get(code):
    for service in (Service.QR_MOVE, Service.QR_GET):
        assert status_name(code, service).startswith("Failed: ")
    assert status_name(code) == "Failure"


@pytest.mark.parametrize(
    "code, name",
    [
        (0x0110, "Processing failure"),
        (0x0112, "No such object instance"),
        (0x0119, "Class-instance conflict"),
        (0x0122, "Referenced SOP class not supported"),
        (0x0131, "Duplicate transaction UID"),
        (0x0213, "Resource limitation"),
    ],
)
def test_storage_commitment_failure_reasons(code, name):
    assert status_name(code, Service.STORAGE_COMMITMENT) == name
    assert classify(code) is StatusClass.FAILURE


def test_procedure_step_names_its_processing_failure():
    assert "may no longer be updated" in status_name(0x0110, Service.PROCEDURE_STEP)


@pytest.mark.parametrize("code", sorted(GENERAL_STATUS_NAMES))
def test_verification_uses_the_general_names(code):
    assert status_name(code, Service.VERIFICATION) == GENERAL_STATUS_NAMES[code]


@pytest.mark.parametrize("service", list(Service))
def test_general_codes_keep_their_names_unless_the_service_renames_them(service):
    table = SERVICE_STATUS_NAMES[service]
    for code, general in GENERAL_STATUS_NAMES.items():
        assert status_name(code, service) == (table.name(code) or general)


@pytest.mark.parametrize("service", list(Service))
def test_every_service_name_agrees_with_the_class_of_its_codes(service):
    table = SERVICE_STATUS_NAMES[service]
    named = [(code, name) for code, name in table.codes.items()]
    named += [(code, block.name) for block in table.ranges for code in (block.first, block.last)]
    for code, name in named:
        prefix = name.split(":")[0]
        expected = NAME_PREFIX_CLASS.get(prefix, StatusClass.FAILURE)
        assert classify(code) is expected, (service, hex(code), name)


@pytest.mark.parametrize("service", ["storage", "STORAGE", "Storage", "qr_move", "Query/Retrieve MOVE"])
def test_service_by_name_or_value(service):
    assert describe(0xC001, service).startswith("0xC001 - ")
    assert describe(0xC001, service) != "0xC001 - Failure"


def test_unknown_service_raises_naming_the_choices():
    with pytest.raises(ValueError, match="qr_find"):
        describe(0x0000, "print")


def test_describe_without_a_service_is_unchanged():
    assert describe(0xC211) == "0xC211 - Failure"
    assert describe(0xC211, None) == "0xC211 - Failure"


@pytest.mark.parametrize(
    "uid, service",
    [
        (sop_class.Verification, Service.VERIFICATION),
        (sop_class.CTImageStorage, Service.STORAGE),
        (sop_class.HardcopyColorImageStorage, Service.STORAGE),
        (sop_class.StudyRootQueryRetrieveInformationModelFind, Service.QR_FIND),
        (sop_class.PatientRootQueryRetrieveInformationModelMove, Service.QR_MOVE),
        (sop_class.CompositeInstanceRetrieveWithoutBulkDataGet, Service.QR_GET),
        (sop_class.ModalityWorklistInformationFind, Service.MODALITY_WORKLIST),
        (sop_class.StorageCommitmentPushModel, Service.STORAGE_COMMITMENT),
        (sop_class.ModalityPerformedProcedureStep, Service.PROCEDURE_STEP),
        ("1.2.3.4", None),
    ],
)
def test_service_of_a_sop_class(uid, service):
    assert service_of(uid) is service


@pytest.mark.parametrize(
    "table, service",
    [
        ("STORAGE_SERVICE_CLASS_STATUS", Service.STORAGE),
        ("QR_FIND_SERVICE_CLASS_STATUS", Service.QR_FIND),
        ("QR_MOVE_SERVICE_CLASS_STATUS", Service.QR_MOVE),
        ("QR_GET_SERVICE_CLASS_STATUS", Service.QR_GET),
        ("MODALITY_WORKLIST_SERVICE_CLASS_STATUS", Service.MODALITY_WORKLIST),
    ],
)
def test_pynetdicom_agrees_on_the_class_of_every_code_it_names(table, service):
    codes = getattr(pytest.importorskip("pynetdicom.status"), table)
    for code, (category, _) in codes.items():
        assert classify(code).value == category, hex(code)
        assert status_name(code, service), hex(code)
