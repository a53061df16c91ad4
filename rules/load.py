"""The `rules:` section of a config file: read and check it into `Rule` values.

A rule names what it does with every instance it matches: `forward` to
destinations, or `drop` it; `stop: true` ends the evaluation after it. Every
destination a rule names must exist. Problems are collected, never raised one
by one, so `router check` shows them all.
"""

from __future__ import annotations

from dataclasses import dataclass

from yaml.nodes import MappingNode, Node

from rules.source import Position, Reader, closest

RULE_KEYS = ("name", "forward", "drop", "stop")


@dataclass(frozen=True)
class Rule:
    """One routing rule as written; `position` is where it starts in its file."""

    name: str
    forward: tuple[str, ...] = ()
    drop: bool = False
    stop: bool = False
    position: Position | None = None


def read_rules(reader: Reader, node: Node | None, destinations: set[str]) -> tuple[Rule, ...]:
    """The rules of a `rules:` list, in order; problems go to `reader`."""
    if node is None:
        return ()
    rules = []
    for index, item in enumerate(reader.sequence(node, "rules"), start=1):
        rule = _read_rule(reader, item, index, destinations)
        if rule is not None:
            rules.append(rule)
    return tuple(rules)


def _read_rule(reader: Reader, node: Node, index: int, destinations: set[str]) -> Rule | None:
    if not isinstance(node, MappingNode):
        reader.problem(node, f"rule {index} must be a mapping with a name and what to do")
        return None
    entries = reader.mapping(node, f"rule {index}", RULE_KEYS)
    name = (reader.text(entries["name"], "a rule's name") if "name" in entries else None) or f"rule {index}"
    forward = _destinations(reader, entries.get("forward"), name, destinations)
    drop = bool("drop" in entries and reader.boolean(entries["drop"], "drop"))
    stop = bool("stop" in entries and reader.boolean(entries["stop"], "stop"))
    if drop and forward:
        reader.problem(node, f"rule '{name}' both drops and forwards")
    if not drop and "forward" not in entries:
        reader.problem(node, f"rule '{name}' does nothing", "give it 'forward: [destination]' or 'drop: true'")
    return Rule(name, forward, drop, stop, reader.position(node))


def _destinations(reader: Reader, node: Node | None, rule: str, destinations: set[str]) -> tuple[str, ...]:
    targets = []
    for item in reader.sequence(node, "forward") if node is not None else ():
        target = reader.text(item, "each entry of forward")
        if target is not None and target not in destinations:
            hint = closest(target, destinations) or _known(destinations)
            reader.problem(item, f"rule '{rule}' forwards to unknown destination '{target}'", hint)
        elif target is not None:
            targets.append(target)
    return tuple(targets)


def _known(destinations: set[str]) -> str:
    return f"the destinations are: {', '.join(sorted(destinations))}" if destinations else "no destination is defined"
