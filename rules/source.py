"""Reading a YAML config with positions: every value keeps its file, line and column.

`load_document` parses a file into PyYAML's node tree (so nothing is lost
about where a value came from), and a `Reader` turns nodes into typed values
while collecting every problem it meets instead of stopping at the first.
Both the router's config (`router.config`) and the rules language use it, so
`router check` reports all problems of a file at once, each as
`file:line:column: what is wrong (hint)`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Iterable, TypeVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

NULL_TAG = "tag:yaml.org,2002:null"
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
BOOL_TAG = "tag:yaml.org,2002:bool"
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
SIZE_UNITS = {
    "": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)
MAX_PORT = 65535
E = TypeVar("E", bound=Enum)


@dataclass(frozen=True)
class Position:
    """Where a value is: 1-based line and column in a file."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file, and where."""

    position: Position
    message: str
    hint: str = ""

    def __str__(self) -> str:
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.position}: {self.message}{hint}"


class ConfigError(Exception):
    """A config file that cannot be used; `problems` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


def load_document(path: str | Path) -> Node:
    """The YAML node tree of the file at `path`; ConfigError if it cannot be read or parsed."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(Position(name, 1, 1), f"cannot read the file: {exc}")]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Position(name, mark.line + 1, mark.column + 1) if mark else Position(name, 1, 1)
        raise ConfigError([Problem(where, f"not valid YAML: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(Position(name, 1, 1), f"not valid YAML: {exc}")]) from None
    if node is None:
        node = MappingNode("tag:yaml.org,2002:map", [])
        node.start_mark = yaml.Mark(name, 0, 0, 0, None, None)
    return node


def closest(word: str, choices: Iterable[str]) -> str:
    """A hint naming the choice closest to a misspelt `word`, or ''."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else ""


class Reader:
    """Typed access to the nodes of one file; each bad value becomes a `Problem`, read as None."""

    def __init__(self, file: str | Path) -> None:
        self.file = str(file)
        self.problems: list[Problem] = []

    def position(self, node: Node) -> Position:
        mark = node.start_mark
        return Position(self.file, mark.line + 1, mark.column + 1)

    def problem(self, node: Node, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.position(node), message, hint))

    def raise_problems(self) -> None:
        """Raise ConfigError if any problem was found, in file order."""
        if self.problems:
            ordered = sorted(self.problems, key=lambda p: (p.position.line, p.position.column))
            raise ConfigError(ordered)

    # ---- containers -------------------------------------------------------
    def mapping(self, node: Node, what: str, allowed: Iterable[str] | None = None) -> dict[str, Node]:
        """The keys of a mapping; unknown keys (when `allowed` is given) and duplicates are problems."""
        if not isinstance(node, MappingNode):
            self.problem(node, f"{what} must be a mapping of keys to values")
            return {}
        known = list(allowed) if allowed is not None else None
        entries: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str):
                self.problem(key_node, f"a key in {what} must be text")
            elif key in entries:
                self.problem(key_node, f"'{key}' is given twice in {what}")
            elif known is not None and key not in known:
                self.problem(key_node, f"unknown key '{key}' in {what}", closest(key, known))
            else:
                entries[key] = value_node
        return entries

    def sequence(self, node: Node, what: str) -> list[Node]:
        """The items of a list; a single scalar is read as a list of one."""
        if isinstance(node, SequenceNode):
            return list(node.value)
        if isinstance(node, ScalarNode) and node.tag != NULL_TAG:
            return [node]
        if isinstance(node, ScalarNode):
            return []
        self.problem(node, f"{what} must be a list")
        return []

    # ---- scalars ----------------------------------------------------------
    def text(self, node: Node, what: str) -> str | None:
        if not isinstance(node, ScalarNode) or node.tag == NULL_TAG or node.value == "":
            self.problem(node, f"{what} must be a non-empty text value")
            return None
        return node.value

    def integer(self, node: Node, what: str, minimum: int = 0, maximum: int | None = None) -> int | None:
        value = int(node.value) if isinstance(node, ScalarNode) and node.tag == INT_TAG else None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            upper = f" and <= {maximum}" if maximum is not None else ""
            self.problem(node, f"{what} must be a whole number >= {minimum}{upper}")
            return None
        return value

    def boolean(self, node: Node, what: str) -> bool | None:
        if not isinstance(node, ScalarNode) or node.tag != BOOL_TAG:
            self.problem(node, f"{what} must be true or false")
            return None
        return node.value.lower() in ("true", "yes", "on", "y")

    def choice(self, node: Node, what: str, enum: type[E]) -> E | None:
        names = [member.value for member in enum]
        value = node.value if isinstance(node, ScalarNode) else None
        if not isinstance(value, str) or value.lower() not in names:
            self.problem(node, f"{what} must be one of {', '.join(names)}", closest(str(value), names))
            return None
        return enum(value.lower())

    def duration(self, node: Node, what: str) -> float | None:
        """Seconds, from a number or a text like '5s', '250ms', '10m', '2h'."""
        match = DURATION.match(node.value) if isinstance(node, ScalarNode) else None
        if match is None:
            self.problem(node, f"{what} must be a duration such as 30, 5s, 250ms, 10m or 2h")
            return None
        return float(match.group(1)) * DURATION_UNITS[match.group(2) or "s"]

    def size(self, node: Node, what: str) -> int | None:
        """Bytes, from a whole number or a text like '500MB', '10GB', '2GiB' (KB = 1000 bytes, KiB = 1024)."""
        match = SIZE.match(node.value) if isinstance(node, ScalarNode) else None
        value = int(float(match.group(1)) * SIZE_UNITS[(match.group(2) or "").lower()]) if match else 0
        if value < 1:
            self.problem(node, f"{what} must be a size such as 500MB, 10GB, 2GiB or a number of bytes")
            return None
        return value

    def address(self, node: Node, what: str) -> tuple[str, int] | None:
        """A 'host:port' pair (IPv6 hosts in brackets: '[::1]:104')."""
        value = node.value if isinstance(node, ScalarNode) else ""
        host, _, port = str(value).rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not host or not port.isdigit() or not 0 < int(port) <= MAX_PORT:
            self.problem(node, f"{what} must be 'host:port' with a port from 1 to {MAX_PORT}, not '{value}'")
            return None
        return host, int(port)

    def texts(self, node: Node, what: str) -> list[str]:
        """A list of non-empty texts (a single text is a list of one)."""
        values = (self.text(item, f"each entry of {what}") for item in self.sequence(node, what))
        return [value for value in values if value is not None]
