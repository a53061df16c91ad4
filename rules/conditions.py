"""The `when:` of a rule as a tree of conditions, compiled once into closures, and why one failed.

A `KeyTest` applies one value test (`rules.matchers`) to one `Subject`, a
data set element or an association fact; `AllOf`, `AnyOf` and `Not` combine
conditions.

`compile()` turns a condition into a `Check`, a function of an `Instance`
(the facts, the header and the values already read for this evaluation):
regexes are compiled, ranges and networks parsed, tags resolved once, and
each subject is read at most once per instance however many rules name it.
`failures()` says, for a dry run, which tests did not hold and why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Union

from rules.facts import Fact, InstanceFacts, fact_reader
from rules.matchers import Every, Exists, Matcher, ValueNot, Values, ValueTest, quoted
from rules.paths import BadReference, ElementPath, parse_path, reader
from rules.ranges import Kind, kind_of
from rules.source import closest


class Instance:
    """One evaluation's view of an instance; `seen` keeps each subject's values once read."""

    __slots__ = ("facts", "seen")

    def __init__(self, facts: InstanceFacts) -> None:
        self.facts = facts
        self.seen: dict[str, Values] = {}

    def values(self, subject: Subject) -> Values:
        values = self.seen.get(subject.text)
        if values is None:
            values = self.seen[subject.text] = subject.read(self.facts)
        return values


Check = Callable[[Instance], bool]
Read = Callable[[InstanceFacts], Values]


@dataclass(frozen=True)
class Subject:
    """What a test looks at: an association fact, or the element at a path of the header."""

    text: str
    fact: Fact | None = None
    path: ElementPath | None = None
    read: Read = field(init=False, repr=False, compare=False)  # the subject's values for an instance's facts

    def __post_init__(self) -> None:
        object.__setattr__(self, "read", fact_reader(self.fact) if self.fact is not None
                           else reader(self.path))  # type: ignore[arg-type]

    @property
    def numeric(self) -> bool:
        """True for elements whose dictionary VR holds numbers (IS, DS, US...): equality compares numbers."""
        return self.path is not None and self.path.vr != "" and kind_of(self.path.vr) is Kind.NUMBER

    @property
    def cost(self) -> int:
        """How dear the subject is to read: a fact, an element, an element inside sequences."""
        return 0 if self.path is None else len(self.path.steps)


# ---- conditions --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyTest:
    """One key of a `when:` mapping: `subject` passes `test`."""

    subject: Subject
    test: ValueTest

    def compile(self) -> Check:
        return compile_all((self,))

    def failures(self, instance: Instance) -> list[str]:
        if self.compile()(instance):
            return []
        values = instance.values(self.subject)
        if values:
            return [f"{self.subject.text}: {quoted(values)} {self._denied(values)}"]
        if self.test == Exists(True) or isinstance(self.test, ValueNot):
            return [f"{self.subject.text} is missing"]
        return [f"{self.subject.text} is missing, so it {self.test.denies()}"]

    def _denied(self, values: Values) -> str:
        """What failed: for several operators on one key, only those that did not hold."""
        if isinstance(self.test, Every):
            failing = [test for test in self.test.tests if not test.matcher(self.subject)(values)]
            return " and ".join(test.denies() for test in failing)
        return self.test.denies()

    def describe(self) -> str:
        return f"{self.subject.text} {self.test.says()}"


@dataclass(frozen=True)
class AllOf:
    """Every condition holds (a `when:` mapping, an `all:` list). No condition: always true."""

    conditions: tuple[Condition, ...]

    def compile(self) -> Check:
        return compile_all(self.conditions)

    def failures(self, instance: Instance) -> list[str]:
        return [failure for condition in self.conditions for failure in condition.failures(instance)]

    def describe(self) -> str:
        return " and ".join(condition.describe() for condition in self.conditions) or "always"


@dataclass(frozen=True)
class AnyOf:
    """At least one condition holds (an `any:` list)."""

    conditions: tuple[Condition, ...]

    def compile(self) -> Check:
        checks = tuple(condition.compile() for condition in self.conditions)

        def check(instance: Instance) -> bool:
            for one in checks:
                if one(instance):
                    return True
            return False

        return check

    def failures(self, instance: Instance) -> list[str]:
        reasons = [condition.failures(instance) for condition in self.conditions]
        if any(not reason for reason in reasons):
            return []
        return ["none of 'any' held: " + " | ".join("; ".join(reason) for reason in reasons)]

    def describe(self) -> str:
        return "(" + " or ".join(condition.describe() for condition in self.conditions) + ")"


@dataclass(frozen=True)
class Not:
    """The condition does not hold (a `not:` block)."""

    condition: Condition

    def compile(self) -> Check:
        inner = self.condition.compile()
        return lambda instance: not inner(instance)

    def failures(self, instance: Instance) -> list[str]:
        return [] if self.compile()(instance) else [f"'not' failed: {self.condition.describe()}"]

    def describe(self) -> str:
        return f"not ({self.condition.describe()})"


Condition = Union[KeyTest, AllOf, AnyOf, Not]


def compile_all(conditions: tuple[Condition, ...]) -> Check:
    """One check for a conjunction: its tests in one loop (the hot path), cheapest subjects first, then its blocks."""
    keyed = sorted((test for test in conditions if isinstance(test, KeyTest)), key=lambda test: test.subject.cost)
    tests = tuple((test.subject.text, test.subject.read, test.test.matcher(test.subject)) for test in keyed)
    blocks = tuple(condition.compile() for condition in conditions if not isinstance(condition, KeyTest))
    if not blocks and len(tests) <= 1:
        return _single(tests[0]) if tests else _always

    def check(instance: Instance) -> bool:
        seen = instance.seen
        for key, read, matches in tests:
            values = seen.get(key)
            if values is None:
                values = seen[key] = read(instance.facts)
            if not matches(values):
                return False
        for block in blocks:
            if not block(instance):
                return False
        return True

    return check


def _single(test: tuple[str, Read, Matcher]) -> Check:
    """The check of one test (most rules once the index has tested their guard): compile_all's loop unrolled."""
    key, read, matches = test

    def check(instance: Instance) -> bool:
        values = instance.seen.get(key)
        if values is None:
            values = instance.seen[key] = read(instance.facts)
        return matches(values)

    return check


def _always(instance: Instance) -> bool:
    return True


def subjects(condition: Condition) -> list[Subject]:
    """Every subject a condition looks at."""
    if isinstance(condition, KeyTest):
        return [condition.subject]
    inner = (condition.condition,) if isinstance(condition, Not) else condition.conditions
    return [subject for one in inner for subject in subjects(one)]


FACT_NAMES = tuple(fact.value for fact in Fact)


def subject_of(text: str) -> Subject:
    """The subject a key names: an association fact, else an element path; BadReference if neither."""
    if text in FACT_NAMES:
        return Subject(text, fact=Fact(text))
    try:
        return Subject(text, path=parse_path(text))
    except BadReference as error:
        raise BadReference(str(error), closest(text, FACT_NAMES) or error.hint) from None
