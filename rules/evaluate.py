"""Evaluating the rules for one instance: compiled once into a `RuleSet`, evaluated many times.

`RuleSet.compile(rules)` turns every rule's conditions into closures once; the
result is immutable, so a reload swaps one RuleSet for another atomically and
any thread may evaluate it. `evaluate(facts)` runs the rules in order on an
instance's facts and header: each matching rule adds one `Forward` per
destination (with its morphs; a destination already named by an earlier rule
keeps that rule's copy) and its filled-in prefetch, `drop` forwards
nothing, and `stop` ends the evaluation after the rule that says it. With
`explain=True` (dry runs), the decision also says why each rule did or did
not match; `trace` gives the same per rule, as data. Evaluation reads only the
header (`read_header` stops before the pixel data) and never raises on
unusual data: an element that cannot be read is missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum
from functools import lru_cache
from pathlib import Path

from pydicom import Dataset, dcmread

from rules.conditions import Check, Instance, subjects
from rules.decision import Decision, Forward, Prefetch
from rules.facts import InstanceFacts
from rules.index import GuardIndex
from rules.load import Rule
from rules.prefetch import Unfilled

__all__ = ["Decision", "InstanceFacts", "Outcome", "RuleOutcome", "RuleSet", "evaluate", "read_header"]

DEFER_SIZE = 64 * 1024  # larger elements (overlays, private blobs) are read only if a rule looks at them
COMPILED_RULE_SETS = 4  # `evaluate` keeps the rule sets of the last few configs compiled


def read_header(path: str | Path) -> Dataset:
    """The data set of the Part 10 file at `path` without its pixel data (pydicom's errors if it is none)."""
    return dcmread(path, stop_before_pixels=True, defer_size=DEFER_SIZE)


class Outcome(str, Enum):
    MATCHED = "matched"
    FAILED = "failed"  # a condition did not hold
    NOT_REACHED = "not reached"  # an earlier rule stopped the evaluation


@dataclass(frozen=True)
class RuleOutcome:
    """What became of one rule for one instance; `reasons` say why (failed conditions, a prefetch not fired)."""

    rule: str
    outcome: Outcome
    reasons: tuple[str, ...] = ()

    def __str__(self) -> str:
        reasons = f": {'; '.join(self.reasons)}" if self.reasons else ""
        return f"rule '{self.rule}' {self.outcome.value}{reasons}"


@dataclass(frozen=True)
class CompiledRule:
    """A rule with the check of its conditions (but the guard the index tests) and its forwards made once."""

    rule: Rule
    check: Check
    forwards: tuple[Forward, ...]


@dataclass(frozen=True, eq=False)
class RuleSet:
    """Rules compiled for evaluation; `needs_header` is False when no rule looks at data set elements."""

    rules: tuple[CompiledRule, ...]
    index: GuardIndex
    needs_header: bool

    @classmethod
    def compile(cls, rules: Iterable[Rule]) -> RuleSet:
        rules = tuple(rules)
        index, checks = GuardIndex.build(rule.when for rule in rules)
        compiled = tuple(
            CompiledRule(rule, check, tuple(Forward(name, rule.morphs, rule.name) for name in rule.forward))
            for rule, check in zip(rules, checks)
        )
        return cls(compiled, index, any(_needs_header(rule) for rule in rules))

    def evaluate(self, facts: InstanceFacts, explain: bool = False) -> Decision:
        """What the rules decide for the instance described by `facts`."""
        if explain:
            decision, outcomes = self.trace(facts)
            return replace(decision, explanation=tuple(str(outcome) for outcome in outcomes))
        instance = Instance(facts)
        decision = _DecisionBuilder(instance)
        for position in self.index.candidates(instance):
            compiled = self.rules[position]
            if compiled.check(instance) and decision.act(compiled).rule.stop:
                break
        return decision.build()

    def trace(self, facts: InstanceFacts) -> tuple[Decision, tuple[RuleOutcome, ...]]:
        """The decision, and what became of each rule and why (for dry runs: slower than `evaluate`)."""
        instance = Instance(facts)
        decision = _DecisionBuilder(instance)
        candidates = set(self.index.candidates(instance))
        outcomes: list[RuleOutcome] = []
        for position, compiled in enumerate(self.rules):
            rule = compiled.rule
            if position not in candidates or not compiled.check(instance):
                outcomes.append(RuleOutcome(rule.name, Outcome.FAILED, tuple(rule.when.failures(instance))))
                continue
            unfilled = decision.act(compiled).unfilled
            reasons = (f"prefetch not fired: {unfilled}",) if unfilled else ()
            outcomes.append(RuleOutcome(rule.name, Outcome.MATCHED, reasons))
            if rule.stop:
                stopped = (f"rule '{rule.name}' stopped the evaluation",)
                later = self.rules[position + 1:]
                outcomes.extend(RuleOutcome(other.rule.name, Outcome.NOT_REACHED, stopped) for other in later)
                break
        return decision.build(), tuple(outcomes)


@dataclass(frozen=True)
class _Acted:
    rule: Rule
    unfilled: str  # why the rule's prefetch did not fire ('' if it did or it has none)


class _DecisionBuilder:
    """The actions of the matching rules, gathered in order."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.forwards: list[Forward] = []
        self.prefetches: list[Prefetch] = []
        self.matched: list[str] = []
        self.dropped = False

    def act(self, compiled: CompiledRule) -> _Acted:
        rule = compiled.rule
        self.matched.append(rule.name)
        self.forwards.extend(compiled.forwards)
        self.dropped = self.dropped or rule.drop
        filled = rule.prefetch.fill(rule.name, self.instance) if rule.prefetch is not None else None
        if isinstance(filled, Prefetch):
            self.prefetches.append(filled)
        return _Acted(rule, filled.reason if isinstance(filled, Unfilled) else "")

    def build(self) -> Decision:
        forwards = _first_per_destination(self.forwards)
        return Decision(forwards, tuple(self.prefetches), tuple(self.matched), self.dropped)


def _first_per_destination(forwards: list[Forward]) -> tuple[Forward, ...]:
    """One copy per destination: the first rule that forwards there decides its morphs."""
    chosen: dict[str, Forward] = {}
    for forward in forwards:
        chosen.setdefault(forward.destination, forward)
    return tuple(chosen.values())


def _needs_header(rule: Rule) -> bool:
    looked_at = subjects(rule.when) + (rule.prefetch.subjects if rule.prefetch is not None else [])
    return any(subject.path is not None for subject in looked_at)


@lru_cache(maxsize=COMPILED_RULE_SETS)
def _compiled(rules: tuple[Rule, ...]) -> RuleSet:
    return RuleSet.compile(rules)


def evaluate(rules: Iterable[Rule], facts: InstanceFacts) -> Decision:
    """Run `rules` in order on `facts` (RuleSet.compile(rules).evaluate(facts), compiled once per rule tuple)."""
    return _compiled(tuple(rules)).evaluate(facts)
