"""Evaluating the rules for one instance: which rules matched and where the instance goes.

`evaluate(rules, facts)` is a pure function. Rules run in order; a rule with
no conditions matches every instance (conditions arrive with the rules
language); `forward` adds its destinations (each destination once, in the
order first named), `drop` adds none, and `stop` ends the evaluation after
the rule that says it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rules.load import Rule


@dataclass(frozen=True)
class InstanceFacts:
    """What the rules may look at: the instance's identity and the association it came on."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    calling_ae: str
    called_ae: str
    peer_address: str


@dataclass(frozen=True)
class Decision:
    """The destinations an instance goes to, and the names of the rules that matched it."""

    destinations: tuple[str, ...]
    matched: tuple[str, ...]


def evaluate(rules: Iterable[Rule], facts: InstanceFacts) -> Decision:
    """Run `rules` in order on `facts`."""
    destinations: dict[str, None] = {}
    matched = []
    for rule in rules:  # a rule has no conditions yet: each one matches
        matched.append(rule.name)
        if not rule.drop:
            destinations.update(dict.fromkeys(rule.forward))
        if rule.stop:
            break
    return Decision(tuple(destinations), tuple(matched))
