"""Evaluating the rules for one instance: compiled once into a `RuleSet`, evaluated many times.

`RuleSet.compile(rules)` turns every rule's conditions into closures once; the
result is immutable (but for the decisions it remembers: the same matching
rules make the same decision, unless a prefetch is filled in), so a reload
swaps one RuleSet for another atomically and any thread may evaluate it.
The candidates of an evaluation are the bits of an int, a rule's position
being its bit (see `rules.index`). `evaluate(facts)` runs the rules in order on an
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
from dataclasses import dataclass, field, replace
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
KEPT_DECISIONS = 1024  # a RuleSet remembers the decisions of this many sets of matching rules


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
    checks: tuple[Check, ...] = field(init=False, repr=False)  # each rule's check, by position
    stops: int = field(init=False, repr=False)  # the bits of the rules that stop the evaluation
    decisions: dict[int, Decision] = field(default_factory=dict, init=False, repr=False)  # by the matching rules' bits

    def __post_init__(self) -> None:
        object.__setattr__(self, "checks", tuple(compiled.check for compiled in self.rules))
        object.__setattr__(self, "stops", sum(1 << position for position, compiled in enumerate(self.rules)
                                              if compiled.rule.stop))

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
        checks, stops, matched = self.checks, self.stops, 0
        candidates = self.index.candidates(instance)
        while candidates:  # the candidates in order: the lowest bit is the first rule
            lowest = candidates & -candidates
            candidates ^= lowest
            if checks[lowest.bit_length() - 1](instance):
                matched |= lowest
                if lowest & stops:
                    break
        decision = self.decisions.get(matched)
        if decision is None:
            decision = self._decide(matched, instance)
        return decision

    def _decide(self, matched: int, instance: Instance) -> Decision:
        """The decision of the rules whose bits are set in `matched`; remembered for the next instances that
        match the same rules when nothing else goes into it (no prefetch filled in from the instance)."""
        matching = [compiled for position, compiled in enumerate(self.rules) if matched >> position & 1]
        decision = _decision(matching, instance)[0]
        if all(compiled.rule.prefetch is None for compiled in matching) and len(self.decisions) < KEPT_DECISIONS:
            self.decisions[matched] = decision
        return decision

    def trace(self, facts: InstanceFacts) -> tuple[Decision, tuple[RuleOutcome, ...]]:
        """The decision, and what became of each rule and why (for dry runs: slower than `evaluate`)."""
        instance = Instance(facts)
        candidates = self.index.candidates(instance)
        reached, matching, positions = len(self.rules), [], []
        for position, compiled in enumerate(self.rules):
            if candidates >> position & 1 and compiled.check(instance):
                matching.append(compiled)
                positions.append(position)
                if compiled.rule.stop:
                    reached = position + 1
                    break
        decision, unfilled = _decision(matching, instance)
        not_fired = dict(zip(positions, unfilled))
        outcomes = [_outcome(compiled, instance, not_fired.get(position))
                    for position, compiled in enumerate(self.rules[:reached])]
        if reached < len(self.rules):
            stopped = (f"rule '{self.rules[reached - 1].rule.name}' stopped the evaluation",)
            outcomes.extend(RuleOutcome(other.rule.name, Outcome.NOT_REACHED, stopped) for other in self.rules[reached:])
        return decision, tuple(outcomes)


def _outcome(compiled: CompiledRule, instance: Instance, not_fired: str | None) -> RuleOutcome:
    """What became of a rule the evaluation reached; `not_fired` is None if it did not match, else why its
    prefetch did not fire ('' if it did or it has none)."""
    rule = compiled.rule
    if not_fired is None:
        return RuleOutcome(rule.name, Outcome.FAILED, tuple(rule.when.failures(instance)))
    return RuleOutcome(rule.name, Outcome.MATCHED, (f"prefetch not fired: {not_fired}",) if not_fired else ())


def _decision(matching: list[CompiledRule], instance: Instance) -> tuple[Decision, list[str]]:
    """The actions of the matching rules, in order, and why each one's prefetch did not fire ('' if it did or it has
    none). A destination named by several rules gets one copy: the first rule that forwards there decides its morphs.
    """
    forwards: dict[str, Forward] = {}
    prefetches: list[Prefetch] = []
    names: list[str] = []
    unfilled: list[str] = []
    dropped = False
    for compiled in matching:
        rule = compiled.rule
        names.append(rule.name)
        dropped = dropped or rule.drop
        for forward in compiled.forwards:
            forwards.setdefault(forward.destination, forward)
        filled = rule.prefetch.fill(rule.name, instance) if rule.prefetch is not None else None
        if isinstance(filled, Prefetch):
            prefetches.append(filled)
        unfilled.append(filled.reason if isinstance(filled, Unfilled) else "")
    return Decision(tuple(forwards.values()), tuple(prefetches), tuple(names), dropped), unfilled


def _needs_header(rule: Rule) -> bool:
    looked_at = subjects(rule.when) + (rule.prefetch.subjects if rule.prefetch is not None else [])
    return any(subject.path is not None for subject in looked_at)


@lru_cache(maxsize=COMPILED_RULE_SETS)
def _compiled(rules: tuple[Rule, ...]) -> RuleSet:
    return RuleSet.compile(rules)


def evaluate(rules: Iterable[Rule], facts: InstanceFacts) -> Decision:
    """Run `rules` in order on `facts` (RuleSet.compile(rules).evaluate(facts), compiled once per rule tuple)."""
    return _compiled(tuple(rules)).evaluate(facts)
