"""A rule's `prefetch:`: reading it, and filling it in from one instance as a `rules.decision.Prefetch`.

    prefetch: {from: pacs, to: WORKSTATION, match: {PatientID: '{PatientID}'}, studies: 3}
    once_per: study

`from` is a DICOM destination that is a Q/R SCP, `to` the AE title it knows
as the move destination, `match` the C-FIND keys (keywords) whose values may
name the instance's elements or facts in braces (`{PatientID}`, `{{` for a
brace), `studies` how many of the most recent other studies to move (3 when
not given). `once_per: study|series|patient` gives the prefetch a key (the
StudyInstanceUID, SeriesInstanceUID or PatientID) so that it fires once per
key. A prefetch whose template or key names a value the instance lacks does
not fire: a C-FIND with an empty PatientID would match every patient.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from enum import Enum

from pydicom.datadict import keyword_dict
from yaml.nodes import Node

from router.net.values import validate_ae_title
from rules.conditions import Instance, Subject, subject_of
from rules.decision import Prefetch
from rules.paths import VALUE_SEPARATOR, BadReference
from rules.source import Reader, closest

PREFETCH_KEYS = ("from", "to", "match", "studies")
DEFAULT_STUDIES = 3
FORMATTER = string.Formatter()


class OncePer(str, Enum):
    STUDY = "study"
    SERIES = "series"
    PATIENT = "patient"


ONCE_KEYS = {OncePer.STUDY: "StudyInstanceUID", OncePer.SERIES: "SeriesInstanceUID", OncePer.PATIENT: "PatientID"}
ONCE_SUBJECTS = {once: subject_of(keyword) for once, keyword in ONCE_KEYS.items()}


@dataclass(frozen=True)
class Template:
    """A text with `{Keyword}` fields: `parts` alternate literal text and the subject whose values follow it."""

    text: str
    parts: tuple[tuple[str, Subject | None], ...]

    def fill(self, instance: Instance) -> str | None:
        """The text with every field replaced by its values (backslash-separated); None if one has no value."""
        filled = []
        for literal, subject in self.parts:
            filled.append(literal)
            if subject is not None:
                values = instance.values(subject)
                if not values:
                    return None
                filled.append(VALUE_SEPARATOR.join(values))
        return "".join(filled)

    @property
    def subjects(self) -> list[Subject]:
        return [subject for _, subject in self.parts if subject is not None]


def parse_template(text: str) -> Template:
    """Resolve the fields of `text` once; ValueError (or BadReference, with a hint) if one cannot be."""
    parts = []
    for literal, field, spec, conversion in FORMATTER.parse(text):
        if field is not None and (spec or conversion or not field):
            raise ValueError("a field is just a keyword in braces, like {PatientID}")
        parts.append((literal, None if field is None else subject_of(field)))
    return Template(text, tuple(parts))


@dataclass(frozen=True)
class Unfilled:
    """Why a prefetch did not fire for an instance."""

    reason: str


@dataclass(frozen=True)
class PrefetchSpec:
    """A prefetch as written: its templates resolved, filled in per instance by `fill`."""

    source: str
    move_destination: str
    match: tuple[tuple[str, Template], ...]
    studies: int = DEFAULT_STUDIES
    once_per: OncePer | None = None

    @property
    def subjects(self) -> list[Subject]:
        once = [ONCE_SUBJECTS[self.once_per]] if self.once_per else []
        return once + [subject for _, template in self.match for subject in template.subjects]

    def fill(self, rule: str, instance: Instance) -> Prefetch | Unfilled:
        match = []
        for key, template in self.match:
            value = template.fill(instance)
            if value is None:
                return Unfilled(f"{key} '{template.text}' names a value the instance does not have")
            match.append((key, value))
        once_key = ""
        if self.once_per is not None:
            once_key = VALUE_SEPARATOR.join(instance.values(ONCE_SUBJECTS[self.once_per]))
            if not once_key:
                return Unfilled(f"once_per {self.once_per.value}: the instance has no {ONCE_KEYS[self.once_per]}")
        return Prefetch(rule, self.source, self.move_destination, tuple(match), self.studies, once_key)


def read_prefetch(reader: Reader, node: Node, once_per: OncePer | None, destinations: set[str],
                  folders: set[str]) -> PrefetchSpec | None:
    """The `prefetch:` of a rule; None (with the problems in `reader`) if it cannot be used."""
    entries = reader.mapping(node, "prefetch", PREFETCH_KEYS)
    missing = [key for key in ("from", "to", "match") if key not in entries]
    if missing:
        reader.problem(node, f"prefetch needs {', '.join(missing)}",
                       "e.g. {from: pacs, to: WORKSTATION, match: {PatientID: '{PatientID}'}, studies: 3}")
        return None
    source = _source(reader, entries["from"], destinations, folders)
    move_destination = _ae_title(reader, entries["to"])
    match = _match(reader, entries["match"])
    studies = reader.integer(entries["studies"], "prefetch.studies", 1) if "studies" in entries else DEFAULT_STUDIES
    if source is None or move_destination is None or match is None or studies is None:
        return None
    return PrefetchSpec(source, move_destination, match, studies, once_per)


def _source(reader: Reader, node: Node, destinations: set[str], folders: set[str]) -> str | None:
    name = reader.text(node, "prefetch.from")
    if name is None:
        return None
    if name not in destinations:
        reader.problem(node, f"prefetch from unknown destination '{name}'", closest(name, destinations))
        return None
    if name in folders:
        reader.problem(node, f"prefetch.from '{name}' is a folder, not a DICOM node",
                       "name a DICOM destination that answers C-FIND and C-MOVE")
        return None
    return name


def _ae_title(reader: Reader, node: Node) -> str | None:
    title = reader.text(node, "prefetch.to")
    try:
        return None if title is None else validate_ae_title(title)
    except ValueError as error:
        reader.problem(node, f"prefetch.to: {error}", "the AE title the Q/R node moves to")
        return None


def _match(reader: Reader, node: Node) -> tuple[tuple[str, Template], ...] | None:
    entries = reader.mapping(node, "prefetch.match")
    if not entries:
        reader.problem(node, "prefetch.match needs at least one C-FIND key", "e.g. {PatientID: '{PatientID}'}")
        return None
    key_nodes = {key.value: key for key, _ in node.value}  # type: ignore[attr-defined]
    match = []
    for key, value in entries.items():
        if key not in keyword_dict:
            reader.problem(key_nodes[key], f"prefetch.match: unknown DICOM keyword '{key}'", closest(key, keyword_dict))
            continue
        template = _template(reader, value)
        if template is not None:
            match.append((key, template))
    return tuple(match) if len(match) == len(entries) else None


def _template(reader: Reader, node: Node) -> Template | None:
    text = reader.text(node, "a prefetch.match value")
    if text is None:
        return None
    try:
        return parse_template(text)
    except BadReference as error:
        reader.problem(node, str(error), error.hint)
    except ValueError as error:  # string.Formatter's own, e.g. an unclosed brace
        reader.problem(node, f"prefetch.match: bad template '{text}': {error}")
    return None
