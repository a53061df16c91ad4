"""Reading a rule's `when:` into a condition tree, each problem at its line and column with a hint.

Keys are DICOM keywords, tags `(gggg,eeee)`, sequence paths or the facts
`calling_ae`, `called_ae`, `peer_ip`, `sop_class`, `transfer_syntax`; the
blocks `any:`, `all:` and `not:` nest. A key's value is a single value
(equality), a list (any of) or a mapping of operators (`regex`, `glob`,
`exists`, `not`, `gt`, `ge`, `lt`, `le`, `between`; several operators on one
key must all hold). Everything is checked here, once: regexes compile, range
bounds read as the element's kind (dates as dates...), names resolve; a
condition that cannot be read is left out and reported.
"""

from __future__ import annotations

import ipaddress
import re

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rules.conditions import AllOf, AnyOf, Condition, KeyTest, Not, Subject, subject_of
from rules.facts import UID_FACTS, Fact, resolve_uid
from rules.matchers import (
    Every,
    Exists,
    Glob,
    InNetwork,
    InRange,
    IsOneOf,
    Regex,
    ValueNot,
    ValueTest,
)
from rules.paths import PADDING, SEQUENCE_VR, BadReference
from rules.ranges import FORMS, Comparable, Kind, kind_of, parse
from rules.source import NULL_TAG, Reader

BLOCKS = ("any", "all", "not")
LOWER_BOUNDS = {"gt": False, "ge": True}  # operator: inclusive
UPPER_BOUNDS = {"lt": False, "le": True}
RANGE_OPERATORS = (*LOWER_BOUNDS, *UPPER_BOUNDS, "between")
OPERATORS = ("regex", "glob", "exists", "not", *RANGE_OPERATORS)
EXAMPLE = "e.g. {Modality: CT}"
MISSING_HINT = "use {exists: false} for a missing element"


def read_when(reader: Reader, node: Node) -> AllOf:
    """The conditions of a `when:` mapping (all must hold)."""
    return AllOf(tuple(_conditions(reader, node, "when")))


def _conditions(reader: Reader, node: Node, what: str) -> list[Condition]:
    if not isinstance(node, MappingNode):
        reader.problem(node, f"{what} must be a mapping of conditions", EXAMPLE)
        return []
    key_nodes = {key.value: key for key, _ in node.value if isinstance(key, ScalarNode)}
    conditions = (_condition(reader, key, key_nodes[key], value) for key, value in reader.mapping(node, what).items())
    return [condition for condition in conditions if condition is not None]


def _condition(reader: Reader, key: str, key_node: Node, node: Node) -> Condition | None:
    if key == "not":
        return Not(AllOf(tuple(_conditions(reader, node, "not"))))
    if key in BLOCKS:
        items = reader.sequence(node, key)
        if not items:
            reader.problem(node, f"'{key}' needs a list of conditions",
                           f"e.g. {key}: [{{Modality: CT}}, {{Modality: MR}}]")
        branches = tuple(AllOf(tuple(_conditions(reader, item, f"each entry of {key}"))) for item in items)
        return AnyOf(branches) if key == "any" else AllOf(branches)
    try:
        subject = subject_of(key)
    except BadReference as error:
        reader.problem(key_node, str(error), error.hint)
        return None
    test = _value_test(reader, node, subject)
    return None if test is None else KeyTest(subject, test)


def _value_test(reader: Reader, node: Node, subject: Subject) -> ValueTest | None:
    if subject.path is not None and subject.path.vr == SEQUENCE_VR and not _is_exists(node):
        reader.problem(node, f"{subject.text} is a sequence: only 'exists' applies to it",
                       f"name an element inside it, e.g. {subject.text}[*].Keyword")
        return None
    if isinstance(node, MappingNode):
        return _operators(reader, node, subject)
    items = node.value if isinstance(node, SequenceNode) else [node]
    if not items or (isinstance(node, ScalarNode) and node.tag == NULL_TAG):
        reader.problem(node, f"{subject.text} needs a value to compare with", MISSING_HINT)
        return None
    return _equals(reader, items, subject)


def _is_exists(node: Node) -> bool:
    return isinstance(node, MappingNode) and [key.value for key, _ in node.value] == ["exists"]


def _equals(reader: Reader, items: list[Node], subject: Subject) -> ValueTest | None:
    """A value or a list of values: equality with any of them (containment for `peer_ip`)."""
    values = [_literal(reader, item, subject) for item in items]
    if None in values:
        return None
    texts = tuple(dict.fromkeys(value for value in values if value is not None))
    return InNetwork(texts) if subject.fact is Fact.PEER_IP else IsOneOf(texts)


def _literal(reader: Reader, node: Node, subject: Subject) -> str | None:
    if not isinstance(node, ScalarNode) or node.tag == NULL_TAG:
        reader.problem(node, f"each value {subject.text} is compared with must be a single value")
        return None
    text = node.value.rstrip(PADDING) if subject.fact is None else node.value.strip()
    if not text:
        reader.problem(node, f"an empty value never matches {subject.text}", MISSING_HINT)
        return None
    if subject.fact is Fact.PEER_IP:
        return _network(reader, node, text)
    if subject.fact not in UID_FACTS:
        return text
    try:
        return resolve_uid(subject.fact, text)  # type: ignore[arg-type]
    except BadReference as error:
        reader.problem(node, str(error), error.hint)
        return None


def _network(reader: Reader, node: Node, text: str) -> str | None:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError as error:
        reader.problem(node, f"peer_ip: {error}", "an address such as 10.1.2.3 or a network such as 10.0.0.0/8")
        return None


def _operators(reader: Reader, node: MappingNode, subject: Subject) -> ValueTest | None:
    entries = reader.mapping(node, f"the test of {subject.text}", OPERATORS)
    if not entries:
        if not node.value:
            reader.problem(node, f"the test of {subject.text} names no operator", f"one of {', '.join(OPERATORS)}")
        return None
    tests: list[ValueTest | None] = []
    if set(entries) & set(RANGE_OPERATORS):
        tests.append(_range(reader, node, entries, subject))
    for operator, value in entries.items():
        if operator == "regex":
            tests.append(_regex(reader, value))
        elif operator == "glob":
            tests.append(_glob(reader, value))
        elif operator == "exists":
            present = reader.boolean(value, "exists")
            tests.append(None if present is None else Exists(present))
        elif operator == "not":
            inner = _value_test(reader, value, subject)
            tests.append(None if inner is None else ValueNot(inner))
    if None in tests:
        return None
    return tests[0] if len(tests) == 1 else Every(tuple(tests))  # type: ignore[arg-type]


def _regex(reader: Reader, node: Node) -> Regex | None:
    pattern = reader.text(node, "regex")
    if pattern is None:
        return None
    try:
        re.compile(pattern)
    except re.error as error:
        reader.problem(node, f"bad regex '{pattern}': {error}")
        return None
    return Regex(pattern)


def _glob(reader: Reader, node: Node) -> Glob | None:
    pattern = reader.text(node, "glob")
    if pattern is None:
        return None
    if re.search(r"\[[^\]]*$", pattern):
        reader.problem(node, f"bad glob '{pattern}': a '[' is never closed", "write [[] for a literal '['")
        return None
    return Glob(pattern)


def _range(reader: Reader, node: Node, entries: dict[str, Node], subject: Subject) -> InRange | None:
    """One range from `between` or the gt/ge/lt/le operators of a key."""
    operators = [operator for operator in entries if operator in RANGE_OPERATORS]
    kind = kind_of(subject.path.vr) if subject.path is not None else None
    if kind is None:
        what = f"is {subject.path.vr}" if subject.path is not None else "is text"
        reader.problem(entries[operators[0]],
                       f"'{operators[0]}' compares dates, times and numbers; {subject.text} {what}",
                       "ranges apply to DA, TM, DT, IS, DS and the binary number VRs")
        return None
    lows, highs = sum(op in LOWER_BOUNDS for op in operators), sum(op in UPPER_BOUNDS for op in operators)
    if lows > 1 or highs > 1 or ("between" in operators and len(operators) > 1):
        reader.problem(node, f"conflicting bounds for {subject.text}: {', '.join(operators)}",
                       "give 'between: [low, high]', or at most one of gt/ge and one of lt/le")
        return None
    if "between" in entries:
        return _between(reader, entries["between"], kind, subject)
    low = _bound_of(reader, entries, LOWER_BOUNDS, kind)
    high = _bound_of(reader, entries, UPPER_BOUNDS, kind)
    if low is None or high is None:
        return None
    return _non_empty(reader, node, InRange(kind, low[0], low[1], high[0], high[1]), subject)


def _bound_of(reader: Reader, entries: dict[str, Node], operators: dict[str, bool], kind: Kind
              ) -> tuple[Comparable | None, bool] | None:
    """(value, inclusive) of the one operator of `operators` given; (None, True) if none is; None if unreadable."""
    operator = next((op for op in entries if op in operators), None)
    if operator is None:
        return None, True
    value = _bound(reader, entries[operator], kind)
    return None if value is None else (value, operators[operator])


def _between(reader: Reader, node: Node, kind: Kind, subject: Subject) -> InRange | None:
    items = node.value if isinstance(node, SequenceNode) else []
    if len(items) != 2:
        reader.problem(node, "between needs two values: [low, high]")
        return None
    low, high = (_bound(reader, item, kind) for item in items)
    if low is None or high is None:
        return None
    return _non_empty(reader, node, InRange(kind, low, True, high, True), subject)


def _bound(reader: Reader, node: Node, kind: Kind) -> Comparable | None:
    text = node.value if isinstance(node, ScalarNode) and node.tag != NULL_TAG else ""
    value = parse(kind, str(text))
    if value is None:
        reader.problem(node, f"'{text}' is not {FORMS[kind]}")
    return value


def _non_empty(reader: Reader, node: Node, test: InRange, subject: Subject) -> InRange | None:
    if test.empty:
        reader.problem(node, f"{subject.text} can never be {test.bounds()}", "no value lies between these bounds")
        return None
    return test
