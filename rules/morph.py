"""Tag morphing: reading a rule's `morph:` list, and applying it to the copy a rule forwards.

A rule's morphs change only the copies it forwards; the worker applies them
to a copy of the spooled data set with `apply_morphs`, so the original never
changes. `set` creates or replaces an element (a new element takes its VR
from the data dictionary; a private one from pydicom's private dictionary
under its creator, else LO), `delete` removes one, `copy` copies a value from
one element to another, and `replace` rewrites each value with a regex. An
element a morph reads or rewrites that is missing is left alone. Morphs name
top-level elements, by keyword or tag; a morph that cannot work at runtime
(a text into a number element...) raises `MorphError` with its reason.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable

from pydicom import Dataset
from pydicom.datadict import private_dictionary_VR
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rules.decision import Morph, MorphKind
from rules.paths import (
    SEQUENCE_VR,
    SINGLE_VALUED_VRS,
    UNKNOWN_VR,
    VALUE_SEPARATOR,
    BadReference,
    dictionary_vr,
    parse_tag,
    texts_of,
)
from rules.source import NULL_TAG, Reader

INTEGER_VRS = {"US": (0, 2**16 - 1), "SS": (-(2**15), 2**15 - 1), "UL": (0, 2**32 - 1), "SL": (-(2**31), 2**31 - 1),
               "UV": (0, 2**64 - 1), "SV": (-(2**63), 2**63 - 1)}
FLOAT_VRS = frozenset(("FL", "FD"))
BYTES_VRS = frozenset(("OB", "OD", "OF", "OL", "OV", "OW", UNKNOWN_VR))
PRIVATE_VR = "LO"  # what a new private element is when no dictionary knows it
PRIVATE_CREATORS = range(0x10, 0x100)  # (gggg,0010)-(gggg,00FF) reserve the blocks of private groups
MORPHS = tuple(kind.value for kind in MorphKind)
COPY_KEYS = ("from", "to")
REPLACE_KEYS = ("regex", "with")


class MorphError(Exception):
    """A morph that cannot be applied to this data set; the message says which and why."""


# ---- applying -------------------------------------------------------------------------------------------
def apply_morphs(dataset: Dataset, morphs: Iterable[Morph]) -> None:
    """Change `dataset` (a copy: it is modified in place) by `morphs`, in order."""
    for morph in morphs:
        try:
            APPLY[morph.kind](dataset, morph)
        except (BadReference, ValueError, TypeError, OverflowError, re.error) as error:
            raise MorphError(f"{morph.kind.value} {morph.tag}: {error}") from None


def _set(dataset: Dataset, morph: Morph) -> None:
    tag = parse_tag(morph.tag)
    vr = vr_for(dataset, tag)
    dataset.add_new(tag, vr, element_value(vr, morph.value))


def _delete(dataset: Dataset, morph: Morph) -> None:
    tag = parse_tag(morph.tag)
    if tag in dataset:
        del dataset[tag]


def _copy(dataset: Dataset, morph: Morph) -> None:
    source, target = parse_tag(morph.source), parse_tag(morph.tag)
    if source not in dataset:
        return
    element = dataset[source]
    vr = vr_for(dataset, target)
    if vr == element.VR:
        dataset.add_new(target, vr, copy.deepcopy(element.value))
    else:
        dataset.add_new(target, vr, element_value(vr, VALUE_SEPARATOR.join(texts_of(element.value))))


def _replace(dataset: Dataset, morph: Morph) -> None:
    tag = parse_tag(morph.tag)
    if tag not in dataset:
        return
    vr = vr_for(dataset, tag)
    pattern = re.compile(morph.pattern)
    values = [pattern.sub(morph.value, text) for text in texts_of(dataset[tag].value)]
    dataset.add_new(tag, vr, element_value(vr, VALUE_SEPARATOR.join(values)))


APPLY = {MorphKind.SET: _set, MorphKind.DELETE: _delete, MorphKind.COPY: _copy, MorphKind.REPLACE: _replace}


def vr_for(dataset: Dataset, tag: int) -> str:
    """The VR an element written at `tag` takes: its present one, the dictionary's, a private creator's, else LO."""
    if tag in dataset and dataset[tag].VR != UNKNOWN_VR:
        return dataset[tag].VR
    vr = dictionary_vr(tag)
    if vr:
        return vr
    group, element = tag >> 16, tag & 0xFFFF
    creator_tag = (group << 16) | (element >> 8)
    if group % 2 == 0 or element in PRIVATE_CREATORS or creator_tag not in dataset:
        return PRIVATE_VR
    creator = texts_of(dataset[creator_tag].value)
    try:
        return private_dictionary_VR(tag, creator[0]).split(" or ")[0] if creator else PRIVATE_VR
    except KeyError:
        return PRIVATE_VR


def element_value(vr: str, text: str) -> object:
    """The value a text stands for in an element of `vr` (several values separated by backslashes)."""
    if vr == SEQUENCE_VR or vr in BYTES_VRS:
        raise ValueError(f"{vr} elements cannot be written from text")
    if text == "":
        return None if vr in INTEGER_VRS or vr in FLOAT_VRS else ""
    if vr in SINGLE_VALUED_VRS:
        return text
    values = [_one_value(vr, part) for part in text.split(VALUE_SEPARATOR)]
    return values[0] if len(values) == 1 else values


def _one_value(vr: str, text: str) -> object:
    if vr in INTEGER_VRS:
        low, high = INTEGER_VRS[vr]
        number = int(text)
        if not low <= number <= high:
            raise ValueError(f"{number} does not fit in {vr} ({low} to {high})")
        return number
    if vr in FLOAT_VRS:
        return float(text)
    if vr == "AT":
        return parse_tag(text)
    if vr == "IS":
        int(text)
    elif vr == "DS":
        float(text)
    return text


# ---- reading ---------------------------------------------------------------------------------------------
def read_morphs(reader: Reader, node: Node) -> tuple[Morph, ...]:
    """The morphs of a `morph:` list, each checked against the data dictionary; problems go to `reader`."""
    morphs: list[Morph] = []
    for item in reader.sequence(node, "morph"):
        entries = reader.mapping(item, "a morph", MORPHS)
        if isinstance(item, MappingNode) and len(item.value) > 1:
            reader.problem(item, "each morph does one thing", "write one '- set: ...' entry per change")
        for kind, value in entries.items():
            morphs.extend(READ[MorphKind(kind)](reader, value))
    return tuple(morphs)


def _read_set(reader: Reader, node: Node) -> list[Morph]:
    morphs = []
    for key, value in _keyed(reader, node, "set"):
        text = _set_text(reader, value)
        vr = _checked_tag(reader, key)
        if vr is not None and text is not None and _checked_value(reader, value, key.value, vr, text):
            morphs.append(Morph(MorphKind.SET, key.value, text))
    return morphs


def _set_text(reader: Reader, node: Node) -> str | None:
    """A set's value: a text, a list of texts (several values), or null/'' for an empty element."""
    if isinstance(node, ScalarNode):
        return "" if node.tag == NULL_TAG else node.value
    if isinstance(node, SequenceNode) and all(isinstance(item, ScalarNode) for item in node.value):
        return VALUE_SEPARATOR.join(item.value for item in node.value)
    reader.problem(node, "a value to set must be a text or a list of texts")
    return None


def _read_delete(reader: Reader, node: Node) -> list[Morph]:
    items = reader.sequence(node, "delete")
    return [Morph(MorphKind.DELETE, item.value) for item in items if _checked_tag(reader, item) is not None]


def _read_copy(reader: Reader, node: Node) -> list[Morph]:
    entries = reader.mapping(node, "copy", COPY_KEYS)
    missing = [key for key in COPY_KEYS if key not in entries]
    if missing and isinstance(node, MappingNode):
        reader.problem(node, f"copy needs {' and '.join(missing)}", "e.g. copy: {from: PatientID, to: OtherPatientIDs}")
        return []
    checked = [_checked_tag(reader, entries[key]) for key in COPY_KEYS if key in entries]
    if not entries or None in checked:
        return []
    return [Morph(MorphKind.COPY, entries["to"].value, source=entries["from"].value)]


def _read_replace(reader: Reader, node: Node) -> list[Morph]:
    morphs = []
    for key, value in _keyed(reader, node, "replace"):
        entries = reader.mapping(value, f"replace {key.value}", REPLACE_KEYS)
        if set(entries) != set(REPLACE_KEYS):
            if isinstance(value, MappingNode):
                reader.problem(value, f"replace {key.value} needs regex and with", "e.g. {regex: '^ACC', with: 'MH'}")
            continue
        pattern, replacement = reader.text(entries["regex"], "regex"), _set_text(reader, entries["with"])
        if _checked_tag(reader, key) is not None and pattern is not None and replacement is not None:
            if _checked_replacement(reader, entries["regex"], pattern, replacement):
                morphs.append(Morph(MorphKind.REPLACE, key.value, replacement, pattern=pattern))
    return morphs


READ = {MorphKind.SET: _read_set, MorphKind.DELETE: _read_delete, MorphKind.COPY: _read_copy,
        MorphKind.REPLACE: _read_replace}


def _keyed(reader: Reader, node: Node, what: str) -> list[tuple[ScalarNode, Node]]:
    """The (key node, value node) pairs of a mapping like `set: {Keyword: value}`."""
    if not isinstance(node, MappingNode) or not node.value:
        reader.problem(node, f"{what} must be a mapping of elements", f"e.g. {what}: {{InstitutionName: ...}}")
        return []
    reader.mapping(node, what)  # duplicates and non-text keys are problems
    return [(key, value) for key, value in node.value if isinstance(key, ScalarNode)]


def _checked_tag(reader: Reader, node: Node) -> str | None:
    """The dictionary VR of a morph's element ('' when private and unknown), or None with a problem."""
    text = reader.text(node, "an element to morph")
    if text is None:
        return None
    try:
        vr = dictionary_vr(parse_tag(text))
    except BadReference as error:
        reader.problem(node, str(error), error.hint)
        return None
    if vr == SEQUENCE_VR:
        reader.problem(node, f"{text} is a sequence: morphs change single elements",
                       "delete it, or morph another element")
        return None
    return vr


def _checked_value(reader: Reader, node: Node, tag: str, vr: str, text: str) -> bool:
    try:
        element_value(vr or PRIVATE_VR, text)
    except (BadReference, ValueError) as error:
        reader.problem(node, f"cannot set {tag} ({vr}) to '{text}': {error}")
        return False
    return True


def _checked_replacement(reader: Reader, node: Node, pattern: str, replacement: str) -> bool:
    """The regex compiles and its replacement names only groups it has."""
    try:
        re.compile(pattern + "|").sub(replacement, "", count=1)  # the added empty branch matches: expands `with`
    except re.error as error:
        reader.problem(node, f"bad regex or replacement '{pattern}' -> '{replacement}': {error}")
        return False
    return True
