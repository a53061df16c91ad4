"""DIMSE status codes (router.net.status): every range of PS3.7 Annex C and their wording."""

from __future__ import annotations

import pytest

from router.net.status import (
    CANCEL,
    GENERAL_STATUS_NAMES,
    PENDING,
    PENDING_WARNING,
    SUCCESS,
    StatusClass,
    classify,
    describe,
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
