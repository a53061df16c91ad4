"""Reading DICOM values as numbers, dates, times and date-times, so ranges compare them as such.

An element's VR decides how its values compare: DA as dates, TM as times of
day, DT as date-times (a UTC offset is ignored: wall-clock time), IS, DS and
the binary number VRs as numbers. A bound written in a rule may use the
DICOM form (`20240131`, `0830`, `20240131083000`) or the ISO one
(`2024-01-31`, `08:30`, `2024-01-31T08:30:00`). `parse` returns None for a
text that is not a value of the kind, never raises.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time
from enum import Enum
from functools import lru_cache
from typing import Union

Comparable = Union[float, date, time, datetime]


class Kind(str, Enum):
    NUMBER = "number"
    DATE = "date"
    TIME = "time"
    DATETIME = "date-time"


KIND_OF_VR = {
    "DA": Kind.DATE, "TM": Kind.TIME, "DT": Kind.DATETIME,
    "IS": Kind.NUMBER, "DS": Kind.NUMBER, "US": Kind.NUMBER, "SS": Kind.NUMBER, "UL": Kind.NUMBER,
    "SL": Kind.NUMBER, "UV": Kind.NUMBER, "SV": Kind.NUMBER, "FL": Kind.NUMBER, "FD": Kind.NUMBER,
}
FORMS = {
    Kind.NUMBER: "a number",
    Kind.DATE: "a date (DA) such as 20240131 or 2024-01-31",
    Kind.TIME: "a time (TM) such as 083000, 0830 or 08:30",
    Kind.DATETIME: "a date-time (DT) such as 20240131083000 or 2024-01-31T08:30",
}
DATE = re.compile(r"^(\d{4})[-.]?(\d{2})[-.]?(\d{2})$")
TIME = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?$")
DATETIME = re.compile(
    r"^(\d{4})(?:-?(\d{2})(?:-?(\d{2})(?:[T ]?(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?)?)?)?"
    r"(?:[+-]\d{4}|Z)?$"
)
MICROSECOND_DIGITS = 6
PARSED_VALUES = 4096


def kind_of(vr: str) -> Kind | None:
    """How values of `vr` compare in a range; None for a VR that has no order ('' : unknown, compared as numbers)."""
    return Kind.NUMBER if vr == "" else KIND_OF_VR.get(vr)


@lru_cache(maxsize=PARSED_VALUES)
def parse(kind: Kind, text: str) -> Comparable | None:
    """`text` as a value of `kind`, or None (the last few thousand answers are remembered: rules share values)."""
    text = text.strip()
    try:
        return PARSERS[kind](text)
    except (ValueError, OverflowError):  # a month 13, a time 25:00, a number too large
        return None


def _number(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def _date(text: str) -> date | None:
    match = DATE.match(text)
    return date(*(int(part) for part in match.groups())) if match else None


def _time(text: str) -> time | None:
    match = TIME.match(text)
    if match is None:
        return None
    hour, minute, second, fraction = match.groups()
    return time(int(hour), int(minute or 0), int(second or 0), _microseconds(fraction))


def _datetime(text: str) -> datetime | None:
    match = DATETIME.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction = match.groups()
    return datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0),
                    _microseconds(fraction))


def _microseconds(fraction: str | None) -> int:
    return int((fraction or "0").ljust(MICROSECOND_DIGITS, "0"))


PARSERS = {Kind.NUMBER: _number, Kind.DATE: _date, Kind.TIME: _time, Kind.DATETIME: _datetime}
