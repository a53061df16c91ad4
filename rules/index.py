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

from rules.conditions import AllOf, Check, Instance, KeyTest, Subject
from rules.matchers import Block, InNetwork, IsOneOf, parse_address

Rules = frozenset[int]  # rule positions
Prefix = tuple[int, int]  # IP version and netmask: the networks of one size, looked up by their first address


@dataclass(frozen=True, eq=False)
class GuardIndex:
    """Rule positions by the value or network their guard accepts; `unguarded` rules are always candidates."""

    equal: tuple[tuple[Subject, Mapping[str, Rules]], ...]
    networks: tuple[tuple[Subject, tuple[tuple[Prefix, Mapping[int, Rules]], ...]], ...]
    unguarded: Rules

    @classmethod
    def build(cls, conditions: Iterable[AllOf]) -> tuple[GuardIndex, tuple[Check, ...]]:
        """The index for rules with these conditions, and each rule's check of its conditions but the guard."""
        equal: dict[Subject, defaultdict[str, set[int]]] = {}
        networks: dict[Subject, defaultdict[Block, set[int]]] = {}  # by (version, first address, netmask)
        unguarded, checks = set(), []
        for position, when in enumerate(conditions):
            guard = _guard(when)
            if guard is None:
                unguarded.add(position)
                checks.append(when.compile())
                continue
            if isinstance(guard.test, IsOneOf):
                keys: Iterable[str | Block] = guard.test.values
                table: defaultdict = equal.setdefault(guard.subject, defaultdict(set))
            else:
                keys = guard.test.blocks  # type: ignore[union-attr]
                table = networks.setdefault(guard.subject, defaultdict(set))
            for key in keys:
                table[key].add(position)
            checks.append(AllOf(tuple(c for c in when.conditions if c is not guard)).compile())
        return cls(
            tuple((subject, {value: frozenset(rules) for value, rules in table.items()})
                  for subject, table in equal.items()),
            tuple((subject, _by_prefix(table)) for subject, table in networks.items()),
            frozenset(unguarded),
        ), tuple(checks)

    def candidates(self, instance: Instance) -> list[int]:
        """The positions, in order, of the rules whose guard holds for `instance` or that have none."""
        passing = set(self.unguarded)
        for subject, table in self.equal:
            for value in instance.values(subject):
                rules = table.get(value)
                if rules:
                    passing.update(rules)
        for subject, prefixes in self.networks:
            for address in map(parse_address, instance.values(subject)):
                for (version, netmask), table in prefixes:
                    rules = table.get(address[1] & netmask) if address and address[0] == version else None
                    if rules:
                        passing.update(rules)
        return sorted(passing)


def _by_prefix(table: Mapping[Block, set[int]]) -> tuple[tuple[Prefix, Mapping[int, Rules]], ...]:
    prefixes: defaultdict[Prefix, dict[int, Rules]] = defaultdict(dict)
    for (version, first, netmask), rules in table.items():
        prefixes[version, netmask][first] = frozenset(rules)
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
