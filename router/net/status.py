"""DIMSE status codes: their names and their class (Success, Warning, Failure, Cancel, Pending).

`classify` places any code, unknown ones included, by the ranges of PS3.7
Annex C; `describe` gives the text logs print ("0x0000 - Success").
"""

from __future__ import annotations

from enum import Enum


class StatusClass(Enum):
    """The category a status code belongs to."""

    SUCCESS = "Success"
    WARNING = "Warning"
    FAILURE = "Failure"
    CANCEL = "Cancel"
    PENDING = "Pending"


SUCCESS = 0x0000
CANCEL = 0xFE00
PENDING = 0xFF00
PENDING_WARNING = 0xFF01
_WARNING_CODES = frozenset({0x0001, 0x0107, 0x0116})
_WARNING_RANGE = 0xB000
_RANGE_MASK = 0xF000

GENERAL_STATUS_NAMES: dict[int, str] = {
    0x0000: "Success",
    0x0001: "Warning: requested optional attributes are not supported",
    0x0105: "No such attribute",
    0x0106: "Invalid attribute value",
    0x0107: "Attribute list error",
    0x0110: "Processing failure",
    0x0111: "Duplicate SOP instance",
    0x0112: "No such SOP instance",
    0x0113: "No such event type",
    0x0114: "No such argument",
    0x0115: "Invalid argument value",
    0x0116: "Attribute value out of range",
    0x0117: "Invalid object instance",
    0x0118: "No such SOP class",
    0x0119: "Class-instance conflict",
    0x0120: "Missing attribute",
    0x0121: "Missing attribute value",
    0x0122: "Refused: SOP class not supported",
    0x0123: "No such action",
    0x0124: "Refused: not authorized",
    0x0210: "Duplicate invocation",
    0x0211: "Unrecognized operation",
    0x0212: "Mistyped argument",
    0x0213: "Resource limitation",
    0xFE00: "Cancel",
    0xFF00: "Pending",
    0xFF01: "Pending: one or more optional keys not supported",
}


def classify(code: int) -> StatusClass:
    """The class of any status code; codes outside every defined range count as failures."""
    if code == SUCCESS:
        return StatusClass.SUCCESS
    if code in (PENDING, PENDING_WARNING):
        return StatusClass.PENDING
    if code == CANCEL:
        return StatusClass.CANCEL
    if code in _WARNING_CODES or code & _RANGE_MASK == _WARNING_RANGE:
        return StatusClass.WARNING
    return StatusClass.FAILURE


def describe(code: int) -> str:
    """'0x0000 - Success', '0xC123 - Failure', ..."""
    name = GENERAL_STATUS_NAMES.get(code, classify(code).value)
    return f"0x{code:04X} - {name}"
