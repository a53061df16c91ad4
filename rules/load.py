"""The `rules:` section of a config file: read and check it into `Rule` values.

A rule has a `name`, conditions (`when:`, read by `rules.when`; none: it
matches every instance) and actions: `forward` to destinations, `drop`,
`morph` the copies it forwards (`rules.morph`), `prefetch` priors from a Q/R
node (`rules.prefetch`, with `once_per`), and `stop: true` to end the
evaluation after it. Every destination a rule names must exist; conflicting
actions, duplicate names and rules that can never run because an earlier rule
matches everything and stops are problems too. Problems are collected, never
raised one by one, so `router check` shows them all, each at its line and
column.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from yaml.nodes import MappingNode, Node, ScalarNode

from rules.conditions import AllOf
from rules.decision import Morph
from rules.morph import read_morphs
from rules.prefetch import OncePer, PrefetchSpec, read_prefetch
from rules.source import Position, Problem, Reader, closest
from rules.when import read_when

RULE_KEYS = ("name", "when", "forward", "drop", "morph", "prefetch", "once_per", "stop")


@dataclass(frozen=True)
class Rule:
    """One routing rule as written; `position` is where it starts in its file."""

    name: str
    forward: tuple[str, ...] = ()
    drop: bool = False
    stop: bool = False
    position: Position | None = None
    when: AllOf = field(default_factory=lambda: AllOf(()))
    morphs: tuple[Morph, ...] = ()
    prefetch: PrefetchSpec | None = None


def read_rules(reader: Reader, node: Node | None, destinations: set[str],
               folders: frozenset[str] | set[str] = frozenset()) -> tuple[Rule, ...]:
    """The rules of a `rules:` list, in order; problems go to `reader`.

    `destinations` are the names the config declares, `folders` those of them
    that are folders (a prefetch needs a DICOM node).
    """
    if node is None:
        return ()
    rules: list[Rule] = []
    stopper: Rule | None = None
    for index, item in enumerate(reader.sequence(node, "rules"), start=1):
        rule = _read_rule(reader, item, index, destinations, set(folders))
        if rule is None:
            continue
        if stopper is not None:
            reader.problem(item, f"rule '{rule.name}' can never match: rule '{stopper.name}' "
                                 f"(line {_line(stopper)}) matches every instance and stops",
                           "move this rule above it, or give that rule conditions")
        elif rule.stop and _matches_everything(item):
            stopper = rule
        rules.append(rule)
    _check_names(reader, rules)
    return tuple(rules)


def _read_rule(reader: Reader, node: Node, index: int, destinations: set[str], folders: set[str]) -> Rule | None:
    if not isinstance(node, MappingNode):
        reader.problem(node, f"rule {index} must be a mapping with a name and what to do")
        return None
    entries = reader.mapping(node, f"rule {index}", RULE_KEYS)
    name = (reader.text(entries["name"], "a rule's name") if "name" in entries else None) or f"rule {index}"
    forward = _destinations(reader, entries.get("forward"), name, destinations)
    drop = bool("drop" in entries and reader.boolean(entries["drop"], "drop"))
    stop = bool("stop" in entries and reader.boolean(entries["stop"], "stop"))
    when = read_when(reader, entries["when"]) if "when" in entries else AllOf(())
    morphs = read_morphs(reader, entries["morph"]) if "morph" in entries else ()
    once_per = reader.choice(entries["once_per"], "once_per", OncePer) if "once_per" in entries else None
    prefetch = None
    if "prefetch" in entries:
        prefetch = read_prefetch(reader, entries["prefetch"], once_per, destinations, folders)
    _check_actions(reader, node, name, entries, drop, stop)
    return Rule(name, forward, drop, stop, reader.position(node), when, morphs, prefetch)


def _check_actions(reader: Reader, node: Node, name: str, entries: dict[str, Node], drop: bool, stop: bool) -> None:
    """Actions that contradict each other, or no action at all."""
    if drop and "forward" in entries:
        reader.problem(node, f"rule '{name}' both drops and forwards")
    if "morph" in entries and "forward" not in entries:
        reader.problem(entries["morph"], f"rule '{name}' morphs but forwards nothing",
                       "morphs change only the copies a rule forwards")
    if "once_per" in entries and "prefetch" not in entries:
        reader.problem(entries["once_per"], f"rule '{name}' has once_per but no prefetch",
                       "once_per applies to prefetch")
    if not (drop or stop) and "forward" not in entries and "prefetch" not in entries and "morph" not in entries:
        reader.problem(node, f"rule '{name}' does nothing", "give it 'forward: [destination]' or 'drop: true'")


def _destinations(reader: Reader, node: Node | None, rule: str, destinations: set[str]) -> tuple[str, ...]:
    targets: list[str] = []
    for item in reader.sequence(node, "forward") if node is not None else ():
        target = reader.text(item, "each entry of forward")
        if target is not None and target not in destinations:
            hint = closest(target, destinations) or _known(destinations)
            reader.problem(item, f"rule '{rule}' forwards to unknown destination '{target}'", hint)
        elif target in targets:
            reader.problem(item, f"rule '{rule}' forwards to '{target}' twice")
        elif target is not None:
            targets.append(target)
    return tuple(targets)


def _known(destinations: set[str]) -> str:
    return f"the destinations are: {', '.join(sorted(destinations))}" if destinations else "no destination is defined"


def _matches_everything(node: MappingNode) -> bool:
    """True if a rule's node has no `when:` or an empty one."""
    when = next((value for key, value in node.value if isinstance(key, ScalarNode) and key.value == "when"), None)
    return when is None or (isinstance(when, MappingNode) and not when.value)


def _check_names(reader: Reader, rules: list[Rule]) -> None:
    first: dict[str, Rule] = {}
    for rule in rules:
        if rule.name in first and rule.position is not None:
            hint = f"the first is at line {_line(first[rule.name])}; names tell rules apart in logs and decisions"
            reader.problems.append(Problem(rule.position, f"two rules are named '{rule.name}'", hint))
        first.setdefault(rule.name, rule)


def _line(rule: Rule) -> int:
    return rule.position.line if rule.position is not None else 0
