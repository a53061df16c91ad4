"""Value tests: what a rule's key asks of its subject's values (`CT`, `[CT, MR]`, `{regex: ...}`, `{gt: 5}`...).

Each test is a frozen dataclass made once by `rules.when` from the rules
file; `matcher(subject)` compiles it (a regex compiled, a network parsed)
into a function of the subject's values, all texts: a multi-valued element
matches when any value does, and a missing or empty element has no values,
so only `Exists(False)` holds for it. `says()` and `denies()` put the test in
words for dry runs (`is 'CT'`, `is not 'CT'`).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Union

from rules.ranges import Comparable, Kind, parse

if TYPE_CHECKING:
    from rules.conditions import Subject

Values = tuple[str, ...]
Matcher = Callable[[Values], bool]
Block = tuple[int, int, int]  # a network: IP version, first address, netmask
PARSED_ADDRESSES = 1024
ABOVE = {True: operator.ge, False: operator.gt}  # a lower bound holds, by whether it is inclusive
BELOW = {True: operator.le, False: operator.lt}  # an upper bound holds, by whether it is inclusive


def some_value(predicate: Callable[[str], object]) -> Matcher:
    """A matcher that holds when `predicate` does for some value (multi-valued elements match on any value)."""

    def matches(values: Values) -> bool:
        for value in values:  # a loop: cheaper than any() over a generator on this hot path
            if predicate(value):
                return True
        return False

    return matches


def quoted(values: tuple[str, ...]) -> str:
    """'A', 'B': values as a dry run shows them."""
    return ", ".join(f"'{value}'" for value in values)


@dataclass(frozen=True)
class IsOneOf:
    """Equal to one of `values` (case-sensitive; numbers compare as numbers on numeric elements)."""

    values: tuple[str, ...]

    def matcher(self, subject: Subject) -> Matcher:
        numbers = {parse(Kind.NUMBER, value) for value in self.values} - {None}
        if subject.numeric and numbers:
            return some_value(lambda value: parse(Kind.NUMBER, value) in numbers)
        if len(self.values) == 1:
            expected = self.values[0]
            return lambda values: expected in values
        wanted = frozenset(self.values)
        return lambda values: not wanted.isdisjoint(values)

    def says(self) -> str:
        return f"is {quoted(self.values)}" if len(self.values) == 1 else f"is one of {quoted(self.values)}"

    def denies(self) -> str:
        return f"is not {quoted(self.values)}" if len(self.values) == 1 else f"is none of {quoted(self.values)}"


@dataclass(frozen=True)
class Regex:
    """Some value contains a match of `pattern` (`re.search`)."""

    pattern: str

    def matcher(self, subject: Subject) -> Matcher:
        return some_value(re.compile(self.pattern).search)

    def says(self) -> str:
        return f"matches regex '{self.pattern}'"

    def denies(self) -> str:
        return f"does not match regex '{self.pattern}'"


@dataclass(frozen=True)
class Glob:
    """Some value matches the shell pattern `pattern` as a whole (`*`, `?`, `[...]`; case-sensitive)."""

    pattern: str

    def matcher(self, subject: Subject) -> Matcher:
        return some_value(re.compile(fnmatch.translate(self.pattern)).match)

    def says(self) -> str:
        return f"matches glob '{self.pattern}'"

    def denies(self) -> str:
        return f"does not match glob '{self.pattern}'"


@dataclass(frozen=True)
class Exists:
    """The subject has a non-empty value (`present`), or has none."""

    present: bool

    def matcher(self, subject: Subject) -> Matcher:
        return bool if self.present else _empty

    def says(self) -> str:
        return "exists" if self.present else "is missing"

    def denies(self) -> str:
        return "is missing" if self.present else "exists"


def _empty(values: Values) -> bool:
    return not values


@dataclass(frozen=True)
class InRange:
    """Some value, read as `kind`, lies between the bounds (None: unbounded on that side)."""

    kind: Kind
    low: Comparable | None = None
    low_inclusive: bool = True
    high: Comparable | None = None
    high_inclusive: bool = True

    def matcher(self, subject: Subject) -> Matcher:
        kind, low, high = self.kind, self.low, self.high
        above, below = ABOVE[self.low_inclusive], BELOW[self.high_inclusive]

        def matches(values: Values) -> bool:  # some_value of `contains`, in one call per value
            for text in values:
                value = parse(kind, text)
                if value is not None and (low is None or above(value, low)) and (high is None or below(value, high)):
                    return True
            return False

        return matches

    def contains(self, value: Comparable) -> bool:
        low, high = self.low, self.high
        return ((low is None or ABOVE[self.low_inclusive](value, low))
                and (high is None or BELOW[self.high_inclusive](value, high)))

    @property
    def empty(self) -> bool:
        """True if no value can lie within the bounds: the lower one above the upper one, or both
        the same and one of them exclusive. (Values are compared, not enumerated: > 5 and < 6 holds
        for 5.5, so it is not empty.)"""
        if self.low is None or self.high is None:
            return False
        if self.low == self.high:
            return not (self.low_inclusive and self.high_inclusive)
        return self.low > self.high

    def bounds(self) -> str:
        low = None if self.low is None else f"{'>=' if self.low_inclusive else '>'} {_shown(self.low)}"
        high = None if self.high is None else f"{'<=' if self.high_inclusive else '<'} {_shown(self.high)}"
        return " and ".join(bound for bound in (low, high) if bound)

    def says(self) -> str:
        return f"is {self.bounds()}"

    def denies(self) -> str:
        return f"is not {self.bounds()}"


def _shown(value: Comparable) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return value.isoformat()


@dataclass(frozen=True)
class InNetwork:
    """The subject is an IP address inside one of `networks` (addresses or CIDR blocks)."""

    networks: tuple[str, ...]

    def matcher(self, subject: Subject) -> Matcher:
        blocks = self.blocks

        def inside(text: str) -> bool:
            address = parse_address(text)
            return address is not None and any(
                address[0] == version and address[1] & netmask == first for version, first, netmask in blocks)

        return some_value(inside)

    @property
    def blocks(self) -> tuple[Block, ...]:
        """The networks as (IP version, first address, netmask), compared as integers."""
        networks = (ipaddress.ip_network(network, strict=False) for network in self.networks)
        return tuple((network.version, int(network.network_address), int(network.netmask)) for network in networks)

    def says(self) -> str:
        return f"is in {', '.join(self.networks)}"

    def denies(self) -> str:
        return f"is not in {', '.join(self.networks)}"


@lru_cache(maxsize=PARSED_ADDRESSES)
def parse_address(text: str) -> tuple[int, int] | None:
    """The address `text` names as (IP version, integer), parsed once for all the rules that test it; or None."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    address = getattr(address, "ipv4_mapped", None) or address  # '::ffff:10.0.0.1' is 10.0.0.1
    return address.version, int(address)


@dataclass(frozen=True)
class ValueNot:
    """The subject has values and `test` does not hold for them (`{not: ...}` on one key)."""

    test: ValueTest

    def matcher(self, subject: Subject) -> Matcher:
        inner = self.test.matcher(subject)
        return lambda values: bool(values) and not inner(values)

    def says(self) -> str:
        return self.test.denies()

    def denies(self) -> str:
        return f"{self.test.says()}, which the rule excludes"


@dataclass(frozen=True)
class Every:
    """Several operators on one key (`{ge: 1, lt: 5}`, `{exists: true, not: X}`): all must hold."""

    tests: tuple[ValueTest, ...]

    def matcher(self, subject: Subject) -> Matcher:
        matchers = tuple(test.matcher(subject) for test in self.tests)
        return lambda values: all(matches(values) for matches in matchers)

    def says(self) -> str:
        return " and ".join(test.says() for test in self.tests)

    def denies(self) -> str:
        return f"does not hold: {self.says()}"


ValueTest = Union[IsOneOf, Regex, Glob, Exists, InRange, InNetwork, ValueNot, Every]
