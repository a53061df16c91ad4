"""C-FIND attribute matching (PS3.4 C.2.2.2): a key's value compiled once into a `Condition`.

Pure: no database, no bytes. An entity's attribute is a tuple of strings
(`Values`: empty when the attribute has no value, several for e.g. Modalities
in Study); a condition matches when any of them does. The kinds of matching:

- universal: a zero-length value, or `*` alone, matches every entity;
- empty value: `""` matches entities whose attribute has no value;
- single value: equal strings; a Person Name ignores case and trailing `^`/`=`
  (PS3.4 lets PN matching be case-insensitive), numbers compare as numbers;
- wildcard: `*` and `?` in the string VRs of C.2.2.2.4 (never in a UID);
- range: `a-b`, `a-`, `-b` for DA, TM and DT, bounds inclusive, a shorter
  bound covering the whole period it names (`-2020` ends on 2020-12-31);
- list: several values (backslash separated), matching if any does: the list
  of UID matching of C.2.2.2.2, and any other key given several values.

Everything else is case-sensitive, as the standard says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from pydicom.multival import MultiValue

Values = tuple[str, ...]

WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
NUMBER_VRS = frozenset({"IS", "DS", "US", "UL", "SS", "SL", "UV", "SV", "FL", "FD"})
RANGE_WIDTHS = {"DA": 8, "TM": 12, "DT": 20}  # digits in the full form: YYYYMMDD, HHMMSSFFFFFF, both
PERSON_NAME = "PN"
EMPTY_VALUE = '""'
ANY = "*"
RANGE_SEPARATOR = "-"
_WILDCARDS = {"*": ".*", "?": "."}
_DATE_TIME_PUNCTUATION = str.maketrans("", "", ".:")  # ACR-NEMA dates and times, TM fractions
_OFFSET = re.compile(r"[+-]\d{4}$")  # a DT value's offset from UTC


class Condition(Protocol):
    """What every kind of matching provides."""

    def matches(self, values: Values) -> bool:
        """True if an entity whose attribute holds `values` matches."""

    def exact_values(self) -> Values | None:
        """The only stored strings that can match, if so few (for an index look-up), else None."""


@dataclass(frozen=True)
class Universal:
    def matches(self, values: Values) -> bool:
        return True

    def exact_values(self) -> Values | None:
        return None


@dataclass(frozen=True)
class EmptyValue:
    def matches(self, values: Values) -> bool:
        return not values

    def exact_values(self) -> Values | None:
        return None


@dataclass(frozen=True)
class SingleValue:
    value: str
    vr: str

    def matches(self, values: Values) -> bool:
        if self.vr in NUMBER_VRS:
            return any(_same_number(self.value, value) for value in values)
        wanted = _comparable(self.vr, self.value)
        return any(_comparable(self.vr, value) == wanted for value in values)

    def exact_values(self) -> Values | None:
        return None if self.vr in NUMBER_VRS or self.vr == PERSON_NAME else (self.value,)


@dataclass(frozen=True)
class Wildcard:
    pattern: re.Pattern
    vr: str

    def matches(self, values: Values) -> bool:
        return any(self.pattern.fullmatch(_trimmed(self.vr, value)) for value in values)

    def exact_values(self) -> Values | None:
        return None


@dataclass(frozen=True)
class Range:
    low: str  # padded to the VR's full width: "" means no lower bound
    high: str  # padded likewise: "" means no upper bound
    vr: str

    def matches(self, values: Values) -> bool:
        for value in values:
            point = _range_digits(self.vr, value, "0")
            if point and (not self.low or self.low <= point) and (not self.high or point <= self.high):
                return True
        return False

    def exact_values(self) -> Values | None:
        return None


@dataclass(frozen=True)
class AnyOf:
    conditions: tuple[Condition, ...]

    def matches(self, values: Values) -> bool:
        return any(condition.matches(values) for condition in self.conditions)

    def exact_values(self) -> Values | None:
        exact = [condition.exact_values() for condition in self.conditions]
        if any(values is None for values in exact):
            return None
        return tuple(value for values in exact for value in values)  # type: ignore[union-attr]


UNIVERSAL = Universal()


def as_values(value: object) -> Values:
    """A data element's value as strings without padding: () when it has none."""
    if value is None:
        return ()
    items = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
    texts = tuple(str(item).strip(" \0") for item in items)
    return () if texts in ((), ("",)) else texts


def compile_condition(vr: str, value: object) -> Condition:
    """The matching a key of `vr` asks for with `value` (its value in the request identifier)."""
    conditions = tuple(_compile_one(vr, text) for text in as_values(value))
    if not conditions:
        return UNIVERSAL
    return conditions[0] if len(conditions) == 1 else AnyOf(conditions)


def _compile_one(vr: str, text: str) -> Condition:
    if text in ("", ANY):
        return UNIVERSAL
    if text == EMPTY_VALUE:
        return EmptyValue()
    if vr in RANGE_WIDTHS and text.count(RANGE_SEPARATOR) == 1:
        low, high = text.split(RANGE_SEPARATOR)
        return Range(_range_digits(vr, low, "0"), _range_digits(vr, high, "9"), vr)
    if vr in WILDCARD_VRS and any(char in text for char in _WILDCARDS):
        flags = re.IGNORECASE if vr == PERSON_NAME else 0
        regex = "".join(_WILDCARDS.get(char, re.escape(char)) for char in _trimmed(vr, text))
        return Wildcard(re.compile(regex, flags | re.DOTALL), vr)
    return SingleValue(text, vr)


def _trimmed(vr: str, text: str) -> str:
    """A Person Name without its empty trailing components ('Doe^John^^' is 'Doe^John')."""
    return text.rstrip("^=") if vr == PERSON_NAME else text


def _comparable(vr: str, text: str) -> str:
    trimmed = _trimmed(vr, text)
    return trimmed.casefold() if vr == PERSON_NAME else trimmed


def _same_number(wanted: str, stored: str) -> bool:
    try:
        return float(wanted) == float(stored)
    except ValueError:
        return wanted == stored


def _range_digits(vr: str, text: str, fill: str) -> str:
    """A DA/TM/DT value as digits padded with `fill` to the full width ("" stays "")."""
    text = text.strip()
    if vr == "DT":
        text = _OFFSET.sub("", text)
    digits = text.translate(_DATE_TIME_PUNCTUATION)
    return digits.ljust(RANGE_WIDTHS[vr], fill) if digits else ""
