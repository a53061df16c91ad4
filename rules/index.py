"""A decision structure in front of the rules: skip, by lookups, the rules whose first key test fails.

Most routing rules test some subject for equality (`Modality: CT`,
`calling_ae: CTLAB`, `sop_class: ...`) or the sender's network (`peer_ip:
10.0.0.0/8`). For each rule with such a test at the top of its `when:` (its
guard), `GuardIndex` files the rule under (subject, value) or (subject,
network); an evaluation reads each indexed subject once and looks its values
up, which yields every rule whose guard holds. Only those, and the rules
without a guard, run their other conditions, so an instance pays for the
rules that may match it rather than for all of them. The result is the same
as testing every condition of every rule in order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from rules.conditions import AllOf, Check, Instance, KeyTest, Read, Subject
from rules.matchers import Block, InNetwork, IsOneOf, parse_address

Rules = int  # rule positions as bits: the rule at position n is bit n (a union is an `|`, no set to build)
Prefix = tuple[int, int]  # IP version and netmask: the networks of one size, looked up by their first address


class Lookup(NamedTuple):
    """An indexed subject: the text its values are kept under, its reader, and the rules by the value or the
    network their guard accepts."""

    key: str
    read: Read
    by_value: Mapping[str, Rules]
    by_network: tuple[tuple[Prefix, Mapping[int, Rules]], ...]


@dataclass(frozen=True, eq=False)
class GuardIndex:
    """Rule positions by the value or network their guard accepts; `unguarded` rules are always candidates."""

    lookups: tuple[Lookup, ...]
    unguarded: Rules

    @classmethod
    def build(cls, conditions: Iterable[AllOf]) -> tuple[GuardIndex, tuple[Check, ...]]:
        """The index for rules with these conditions, and each rule's check of its conditions but the guard."""
        tables: dict[Subject, tuple[defaultdict[str, Rules], defaultdict[Block, Rules]]] = {}
        unguarded, checks = 0, []
        for position, when in enumerate(conditions):
            guard = _guard(when)
            if guard is None:
                unguarded |= 1 << position
                checks.append(when.compile())
                continue
            by_value, by_network = tables.setdefault(guard.subject, (defaultdict(int), defaultdict(int)))
            if isinstance(guard.test, IsOneOf):
                for value in guard.test.values:
                    by_value[value] |= 1 << position
            else:
                for block in guard.test.blocks:  # type: ignore[union-attr]
                    by_network[block] |= 1 << position
            checks.append(AllOf(tuple(c for c in when.conditions if c is not guard)).compile())
        lookups = tuple(Lookup(subject.text, subject.read, dict(by_value), _by_prefix(by_network))
                        for subject, (by_value, by_network) in tables.items())
        return cls(lookups, unguarded), tuple(checks)

    def candidates(self, instance: Instance) -> Rules:
        """The rules whose guard holds for `instance` or that have none."""
        passing, seen, facts = self.unguarded, instance.seen, instance.facts
        for key, read, by_value, by_network in self.lookups:
            values = seen.get(key)  # Instance.values, inlined on this hot path
            if values is None:
                values = seen[key] = read(facts)
            if by_value:
                for value in values:
                    passing |= by_value.get(value, 0)
            if by_network:
                for address in map(parse_address, values):
                    if address is not None:
                        version, number = address
                        for (prefix_version, netmask), table in by_network:
                            if prefix_version == version:
                                passing |= table.get(number & netmask, 0)
        return passing


def _by_prefix(table: Mapping[Block, Rules]) -> tuple[tuple[Prefix, Mapping[int, Rules]], ...]:
    prefixes: defaultdict[Prefix, dict[int, Rules]] = defaultdict(dict)
    for (version, first, netmask), rules in table.items():
        prefixes[version, netmask][first] = rules
    return tuple(prefixes.items())


def _guard(when: AllOf) -> KeyTest | None:
    """The first top-level equality on texts (numbers compare by value: not indexable) or network test."""
    for condition in when.conditions:
        if not isinstance(condition, KeyTest):
            continue
        equality = isinstance(condition.test, IsOneOf) and not condition.subject.numeric
        if equality or isinstance(condition.test, InNetwork):
            return condition
    return None
